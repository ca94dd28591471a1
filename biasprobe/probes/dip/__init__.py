"""The generative probe: Deep Image Prior (Ulyanov, Vedaldi, Lempitsky 2018) for any registered generator,
several seeds at once. One module per concern, in the order a run goes through them:

- ``images``, ``tasks``: the images (built-in names, files, the standard sets studies draw from) and the
  corruptions a generator is fitted to (denoise, inpaint, sr, ..., any deepinv operator);
- ``config``: the named settings (``dip``, ``study``), :class:`DIPConfig` and its checks, :class:`DIPResult`;
- ``prepare``: the image (resized, cropped to the architecture's multiple; a mask file with it), the task's
  observation of every seed, the fixed input z and the nets, each from its own random stream (``seeding.py``);
- ``engine``: the seed batch (:class:`SeedBatch`), the divergence guard (:class:`Guard`), seed batching and
  seed groups on threads;
- ``loop``: :func:`run_dip`, the loop itself, readable top to bottom, and what a log step records;
- ``quality``: PSNR, SSIM and the ES-WMV early-stopping rule a log step measures;
- ``records``: the stop rule, the per-seed summary and the run directory (unique to its config) written and read
  back;
- ``plan``, ``probe``: the probe's part of a study preset and its grid of runs; the probe object studies call.

The names below are imported on first use (``from biasprobe.probes.dip import run_dip``), so that importing the
package imports no torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SETTINGS": "config", "DIPConfig": "config", "DIPResult": "config",
    "Guard": "engine", "SeedBatch": "engine", "auto_batching": "engine", "seed_groups": "engine",
    "run_dip": "loop",
    "build_nets": "prepare", "make_input": "prepare", "observe": "prepare", "prepare_image": "prepare",
    "check_new": "records", "load_run": "records", "run_dir": "records", "save_result": "records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(attr: str):
    if attr in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[attr]}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
