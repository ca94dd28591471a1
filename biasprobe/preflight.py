"""Checks before any compute: everything a command or a study can check about its input and its outputs is checked
first, each failure a one-line :class:`BiasprobeError` (the CLI prints it and exits 2).

* :func:`check_writable`: a folder a command will write into (it, or the nearest folder above it that exists, takes
  a file: a probe file is created and removed there);
* :func:`check_study`: a preset's contents: architectures exist, their kwargs build each generator/classifier (on
  PyTorch's meta device: shapes only, no memory, no time), images and masks load at the plan's size, each DIP run's
  memory estimate fits (:func:`check_dip_memory`), the report and store folders are writable;
* :func:`check_dip_memory`: refuses a DIP fit whose estimated memory for one seed exceeds the device's memory,
  with the estimate in the message (what ``--size 100000`` asks for);
* :func:`check_seed`, :func:`check_finite`: seeds in 0..2^63-1, finite numbers for float flags.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from biasprobe.errors import BiasprobeError

MAX_SEED = 2**63 - 1


# ---------------------------------------------------------------------------------------------------- outputs
def check_writable(path, flag: str = "--out") -> Path:
    """``path`` as a folder this process can write into (created later if missing): a one-line BiasprobeError if
    it, or a folder above it, is a file, or if the nearest existing folder cannot take a new file."""
    path = Path(path)
    existing = None
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == path else f": {p}"
                raise BiasprobeError(f"{flag} {path}{where} is a file, not a folder")
            existing = p
            break
    existing = existing or Path(".")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".biasprobe-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        what = e.strerror or type(e).__name__
        where = "" if existing == path else f" (in {existing}, the nearest folder that exists)"
        raise BiasprobeError(f"{flag} {path} is not writable{where}: {what}") from None
    return path


# ---------------------------------------------------------------------------------------------------- numbers
def check_seed(seed, flag: str = "--seed") -> int:
    """A seed in 0..2^63-1 (what the random streams and the parquet tables hold), else a one-line error."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BiasprobeError(f"{flag} {seed!r} is out of range: seeds are whole numbers from 0 to 2^63-1")
    return seed


def check_finite(value, flag: str):
    """``value`` (None passes) as a finite number, else a one-line error naming ``flag``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        for v in value:
            check_finite(v, flag)
        return value
    if isinstance(value, (int, float)) and not math.isfinite(value):
        raise BiasprobeError(f"{flag} must be a finite number, got {value}")
    return value


# ---------------------------------------------------------------------------------------------------- memory
def device_memory_bytes(device) -> tuple[int | None, str]:
    """(bytes of memory on ``device``, in words) or (None, ...) when it cannot tell: the GPU's total memory, or the
    machine's (or its cgroup's, when smaller) for the CPU."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return int(props.total_memory), f"{props.total_memory / 2**30:.0f} GiB on {props.name}"
    total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit() and (total is None or int(limit) < total):
            total = int(limit)
    except OSError:
        pass
    if total is None:
        return None, "unknown"
    return total, f"{total / 2**30:.0f} GiB of RAM"


def _forward_bytes(net, x) -> int:
    """Bytes of every tensor the forward pass of ``net`` on the meta tensor ``x`` produces (shapes only): an upper
    bound on what it keeps for the backward pass."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    Count.total += t.numel() * t.element_size()
            return out

    with Count():
        net(x)
    return Count.total


def dip_memory_estimate(cfg) -> dict:
    """What one seed of the DIP fit ``cfg`` (resolved) needs at least, in bytes: the image tensors (clean,
    observed, mask, output, EMA, best: 3 channels each; the input: input_depth channels), the net's weights with
    their gradients and two Adam moments (16 bytes a weight), and its forward activations (measured on the meta
    device, shapes only). The size is taken square (the short side); a larger long side only needs more."""
    import torch

    from biasprobe.archs.factory import create_generator

    side = int(cfg.size) if cfg.size else None
    if side is None:
        return {"bytes": 0, "parts": {}}
    px = side * side
    images = 4 * px * (6 * 3 + cfg.input_depth)
    parts = {"images": images}
    if images > 2**40:  # a terabyte of pixels alone: no need to build the net
        return {"bytes": images, "parts": parts}
    with torch.device("meta"):
        net = create_generator(cfg.arch, in_chans=cfg.input_depth, out_chans=3, img_size=(side, side),
                               **cfg.arch_kwargs)
        n_params = sum(p.numel() for p in net.parameters())
        parts["weights, gradients and Adam moments"] = 16 * n_params
        if parts["weights, gradients and Adam moments"] < 2**40:
            parts["activations"] = _forward_bytes(net, torch.empty(1, cfg.input_depth, side, side))
    return {"bytes": sum(parts.values()), "parts": parts}


def check_dip_memory(cfg, device: str | None = None) -> None:
    """Refuse (one line, with the estimate) a DIP fit whose estimated memory for one seed exceeds the memory of
    the device it would run on."""
    from biasprobe.runinfo import resolve_device

    dev = resolve_device(device or cfg.device)
    total, where = device_memory_bytes(dev)
    if total is None:
        return
    est = dip_memory_estimate(cfg)
    if est["bytes"] > total:
        parts = ", ".join(f"{k} {v / 2**30:.3g} GiB" for k, v in est["parts"].items())
        raise BiasprobeError(f"{cfg.arch} at size {cfg.size} needs about {est['bytes'] / 2**30:.3g} GiB for one seed "
                             f"({parts}), more than the {where}: use a smaller --size (or dip.size)")


# ---------------------------------------------------------------------------------------------------- studies
def _build_on_meta(kind: str, arch: str, kw: dict, **size) -> None:
    """Build a generator or classifier on the meta device (no memory, no init cost): bad kwargs fail here."""
    import torch

    from biasprobe.archs.factory import create_classifier, create_generator

    build = create_generator if kind == "generator" else create_classifier
    try:
        with torch.device("meta"):
            build(arch, **kw, **size)
    except BiasprobeError:
        raise
    except Exception as e:  # the builder's own complaint about a keyword (TypeError, ValueError, AssertionError...)
        text = (str(e).strip().splitlines() or [""])[0]
        raise BiasprobeError(f"{arch}: its {kind} does not build with arch_kwargs {kw} ({type(e).__name__}: "
                             f"{text})") from None


def check_study(p, out=None, store=None) -> None:
    """Check a study preset's contents (see the module docstring) before its first run; ``out``/``store``: the
    report and store folders, checked writable."""
    from biasprobe.probes.classify.train import ClassifyConfig
    from biasprobe.probes.dip import DIPConfig
    from biasprobe.archs.factory import check_arch_kwargs
    from biasprobe.archs.registry import get_arch
    from biasprobe.probes.classify.plan import classify_configs
    from biasprobe.probes.dip.plan import dip_configs

    if out is not None:
        check_writable(out, "--out")
    if store is not None:
        check_writable(store, "--store")
    for arch in dict.fromkeys(p.archs + list(p.dip.extra_archs)):
        get_arch(arch)  # an unknown name: one line listing the known ones
    fake_lrs = {a: 1e-3 for a in p.archs + list(p.dip.extra_archs)}  # calibration has not run yet
    built, images = set(), set()
    for run in dip_configs(p, fake_lrs):
        for seed in run["config"].get("seeds", []):
            check_seed(seed, "dip.seeds")
        cfg = DIPConfig(**run["config"]).resolved()
        key = (cfg.arch, repr(cfg.arch_kwargs), cfg.size, cfg.input_depth)
        if key not in built:
            built.add(key)
            check_arch_kwargs(cfg.arch, **cfg.arch_kwargs)
            check_dip_memory(cfg, p.device)
            if cfg.size:
                _build_on_meta("generator", cfg.arch, cfg.arch_kwargs, in_chans=cfg.input_depth, out_chans=3,
                               img_size=(cfg.size, cfg.size))
        key = (cfg.arch, repr(cfg.arch_kwargs), cfg.image, cfg.task, repr(cfg.task_params), cfg.size)
        if key not in images:
            images.add(key)
            _check_image(cfg)
    for run in classify_configs(p, fake_lrs):
        c = run["config"]
        check_seed(c.get("seed", 0), "classify.seeds")
        key = (c["arch"], repr(c.get("arch_kwargs", {})))
        if key not in built:
            built.add(key)
            cfg = ClassifyConfig(**c)
            cfg.validate()
            _build_on_meta("classifier", cfg.arch, dict(cfg.arch_kwargs), img_size=(32, 32))


def _check_image(cfg) -> None:
    """The image and the task's mask load at the run's size, and the task can be built on them."""
    from biasprobe.probes.dip import tasks
    from biasprobe.probes.dip import prepare_image

    try:
        clean, params = prepare_image(cfg)
        tasks.make_task(cfg.task, clean, cfg.seeds[0], **params)
    except BiasprobeError as e:
        raise BiasprobeError(f"image {cfg.image!r} ({cfg.task}): {e}") from None
    except Exception as e:  # a file that is not an image, a mask that is not one, ...
        text = (str(e).strip().splitlines() or [""])[0]
        raise BiasprobeError(f"image {cfg.image!r} ({cfg.task} {cfg.task_params}) cannot be loaded: "
                             f"{type(e).__name__}: {text}") from None
