"""What a DIP run fits: the image (loaded, resized, cropped to the architecture's multiple), the task's
observation, the fixed input z and the randomly initialised nets, each drawn from its own stream of the seed."""

from __future__ import annotations

import threading

import torch

from biasprobe.probes.dip import images as imagelib
from biasprobe import seeding
from biasprobe.probes.dip import tasks
from biasprobe.probes.dip.config import DIPConfig
from biasprobe.errors import BiasprobeError
from biasprobe.archs.factory import check_size, create_generator
from biasprobe.archs.registry import get_arch


def prepare_image(cfg: DIPConfig) -> tuple[torch.Tensor, dict]:
    """Load, resize and centre-crop the image to the architecture's size multiple: (1, C, H, W), and the task
    parameters ready for :func:`observe`. A mask file or name is loaded here and goes through the same resize and
    crop as its image; a mask whose native size differs from the image's is refused (it was made for another
    image) unless the task parameter ``resize_mask`` is true."""
    img = imagelib.load_image(cfg.image)
    native = tuple(img.shape[-2:])
    if cfg.size:
        img = imagelib.resize_short_side(img, cfg.size)
    spec = get_arch(cfg.arch)
    h, w = img.shape[-2:]
    minimum = spec.min_size(**cfg.arch_kwargs)
    if min(h, w) < minimum:
        raise BiasprobeError(f"image {h}x{w} is too small for {cfg.arch}: it needs at least {minimum}x{minimum} "
                             f"pixels (use a larger image or --size)")
    multiple = spec.size_multiple((h, w), **cfg.arch_kwargs)
    img = imagelib.crop_to_multiple(img, multiple)
    check_size(cfg.arch, img.shape[-2:], **cfg.arch_kwargs)
    params = dict(cfg.task_params)
    if cfg.task == "inpaint" and isinstance(params.get("mask"), str) and params["mask"] not in ("random", "block",
                                                                                                "text"):
        resize = _flag(params.pop("resize_mask", False), "resize_mask")
        params["mask"] = imagelib.load_mask(params["mask"], img.shape[-2:], size=cfg.size, multiple=multiple,
                                            native=None if resize else native)
    return (img[None] if img.dim() == 3 else img), params


def _flag(v, key: str) -> bool:
    if isinstance(v, bool):
        return v
    if str(v).lower() in ("1", "true", "yes"):
        return True
    if str(v).lower() in ("0", "false", "no"):
        return False
    raise BiasprobeError(f"task parameter {key}={v!r} must be true or false")


def observe(cfg: DIPConfig, clean: torch.Tensor, params: dict) -> tasks.Observation:
    """The task's observations of ``clean`` for every seed of the config, as one batch (each seed's corruption
    from its own stream)."""
    return tasks.stack_observations([tasks.make_task(cfg.task, clean, seed, **params) for seed in cfg.seeds])


def make_input(kind: str, depth: int, hw: tuple[int, int], seed: int) -> torch.Tensor:
    """DIP's get_noise: U(0, 1) * 0.1 noise of ``depth`` channels, or a 2-channel [0, 1] meshgrid; (1, D, H, W).
    The noise comes from the run's ``input`` stream (seeding.py), independent of the init and the observation."""
    h, w = hw
    if kind == "meshgrid":
        ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        return torch.stack([xs, ys])[None]
    return torch.rand(1, depth, h, w, generator=seeding.generator(seed, "input")) * 0.1


BUILD_LOCK = threading.Lock()  # nets are initialised from the global generator: one seed group at a time


def build_nets(cfg: DIPConfig, hw, out_chans: int) -> list[torch.nn.Module]:
    """One generator per seed, initialised from that seed's ``init`` stream."""
    nets = []
    for seed in cfg.seeds:
        with BUILD_LOCK, seeding.manual_seed(seed, "init"):
            net = create_generator(cfg.arch, in_chans=cfg.input_depth, out_chans=out_chans, img_size=hw,
                                   **cfg.arch_kwargs)
        if cfg.train_mode:
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    # training-mode BN uses batch statistics only; running averages would be dead state
                    m.track_running_stats = False
                    m.running_mean = m.running_var = m.num_batches_tracked = None
        net.train(cfg.train_mode)
        nets.append(net)
    return nets
