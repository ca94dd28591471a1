"""What every run records about itself, and small shared helpers: device choice, seeding, atomic writes."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from biasprobe.errors import BiasprobeError

_PACKAGES = ("biasprobe", "torch", "torchvision", "timm", "numpy", "scipy", "pandas", "scikit-image", "deepinv",
             "captum")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BiasprobeError("--device cuda asked for, but torch sees no CUDA GPU here; use --device cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise BiasprobeError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        # "-dirty": tracked files differ from the commit, outside reports/ (what studies write is not code)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)reports"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return found


def provenance(device: torch.device | str) -> dict:
    """Versions, device, host CPU/GPU name, torch threads and git commit, for config.json."""
    device = torch.device(device)
    info = {
        "versions": versions(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
    return info


def run_provenance() -> dict:
    """What a stored run records of where and from what it was made, taken when it starts (a study that runs for
    hours may see the checkout move on): started_at (UTC), git_commit, versions, the CPU's name and core count, and
    the CUDA device's name where one is visible."""
    from datetime import datetime, timezone

    return {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_commit": git_commit(),
            "versions": versions(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _cpuinfo(field: str) -> str | None:
    """The first ``field : value`` of /proc/cpuinfo (Linux), or None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name: step times differ several-fold between the CPUs a '2-core machine' may be (a float32
    matmul ran at 360 GFLOP/s on one, 64 on another), so a time means little without it."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """Whether the CPU has bfloat16 instructions (avx512_bf16 or amx_bf16 among its flags); True where it cannot
    tell. Without them bf16 autocast is emulated: a skip-net DIP step took 32 s instead of 0.8 s in float32 on such
    a CPU (an AMD EPYC)."""
    flags = _cpuinfo("flags")
    return flags is None or bool(set(flags.split()) & {"avx512_bf16", "amx_bf16"})


def umask() -> int:
    """The process's file-mode creation mask (read once: setting it to read it is not thread-safe)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write via a temporary file in the same folder, then rename: readers never see half a file. The file gets
    the mode a plain ``open`` would give it (0666 less the umask; the temporary file is created 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj) -> None:
    """Atomic JSON write; NaN and infinities are written as null (bare NaN is not JSON)."""
    write_atomic(path, json.dumps(_finite(obj), indent=2, sort_keys=True, default=_jsonable,
                                  allow_nan=False) + "\n")


def _finite(x):
    """``x`` with every non-finite float (NaN, inf, numpy's too) replaced by None, containers walked."""
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return _finite(x.tolist())
    return x


def write_parquet(path: str | Path, df) -> None:
    """Atomic Parquet write (pyarrow)."""
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    write_atomic(path, buf.getvalue())


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (Path, torch.device)):
        return str(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")
