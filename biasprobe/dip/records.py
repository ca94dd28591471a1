"""A DIP run's records: the per-seed summary (peak, gap crossing, ES-WMV step) and the run directory
(config.json, curves.parquet, summary.json, images) that is written and read back."""

from __future__ import annotations

import copy
import io
import math
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.integrate import trapezoid

from biasprobe import images as imagelib
from biasprobe import metrics
from biasprobe.dip.config import DIPConfig, DIPResult
from biasprobe.errors import BiasprobeError


def hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)


def stop_state(hist_psnr_gt: np.ndarray, hist_gap: np.ndarray, patience: int) -> pd.DataFrame:
    """Where each seed stands after the steps recorded so far (arrays (T, K), one row per step, per-step values).

    * ``best_step``: the step of the highest psnr_gt (the first one on ties);
    * ``gap_negative_step``: the first step at which the gap psnr_gt - psnr_obs is below zero after having been
      >= 0 (the net starts fitting the corruption); 0 if it was never >= 0; NaN while it has stayed >= 0 (the
      crossing is not observed: censored at the last step);
    * ``peak_reached``: the best step lies at least ``patience`` steps before the last step;
    * ``done``: the peak is reached and the gap crossing lies at least ``patience`` steps back too, so both have
      been observed: the ``stop="peak"`` rule stops a seed batch when every seed is done.
    """
    last = hist_psnr_gt.shape[0] - 1
    rows = []
    for k in range(hist_psnr_gt.shape[1]):
        h, gap = hist_psnr_gt[:, k], hist_gap[:, k]
        best = int(np.nanargmax(h)) if np.isfinite(h).any() else -1
        pos = gap >= 0
        if not pos.any():
            neg = 0.0
        else:
            after = np.flatnonzero((gap < 0) & (np.arange(gap.size) > np.argmax(pos)))
            neg = float(after[0]) if after.size else math.nan
        reached = best >= 0 and last - best >= patience
        crossed = math.isfinite(neg) and last - neg >= patience
        rows.append(dict(best_step=best, gap_negative_step=neg, peak_reached=bool(reached),
                         done=bool(reached and crossed)))
    return pd.DataFrame(rows)


def summarise(cfg, curves, hist_psnr_gt, hist_var, base_psnr, backtracks, seconds, peak_mb, n_params, hw,
              hist_gap=None):
    """One row per seed; ``base_psnr``: the corrupted input's PSNR per seed (None without ground truth). The
    histories (``hist_*``, (steps run, K)) hold one row per step run, so ``steps_run`` is their length."""
    steps_run = hist_var.shape[0]
    state = stop_state(hist_psnr_gt, hist_gap, cfg.patience) if base_psnr is not None else None
    out = []
    for k, seed in enumerate(cfg.seeds):
        c = curves[curves.seed == seed].pivot(index="step", columns="metric", values="value")
        row = dict(arch=cfg.arch, task=cfg.task, image=cfg.image, seed=seed, setting=cfg.setting,
                   height=hw[0], width=hw[1], iters=cfg.iters, lr=cfg.lr, n_params=n_params, stop=cfg.stop,
                   patience=cfg.patience, steps_run=steps_run, stop_step=steps_run - 1,
                   sec_per_step=seconds / steps_run, peak_mem_mb=peak_mb, backtracks=int(backtracks[k]),
                   backtrack_share=float(backtracks[k]) / steps_run,
                   failed=bool(backtracks[k] > cfg.max_backtrack_share * steps_run),
                   final_psnr_obs=float(c["psnr_obs"].iloc[-1]))
        es = metrics.es_wmv_step(hist_var[:, k], cfg.es_patience) if cfg.es_window > 0 else -1
        row["es_step"] = es
        if base_psnr is not None:
            h = hist_psnr_gt[:, k]
            st = state.iloc[k]
            best = int(st.best_step)
            gap = c["gap"]
            row.update(
                baseline_psnr=float(base_psnr[k]),
                max_psnr_gt=float(h[best]),
                max_psnr_gt_step=best,
                peak_reached=bool(st.peak_reached),
                gain_db=float(h[best] - base_psnr[k]),
                final_psnr_gt=float(c["psnr_gt"].iloc[-1]),
                final_psnr_gt_ema=float(c["psnr_gt_ema"].iloc[-1]),
                max_psnr_gt_ema=float(c["psnr_gt_ema"].max()),
                final_gap=float(gap.iloc[-1]),
                gap_negative_step=float(st.gap_negative_step),  # per step; NaN: censored at stop_step
                gap_censored=bool(np.isnan(st.gap_negative_step)),
                gap_area=float(trapezoid(gap.clip(lower=0).to_numpy(), gap.index.to_numpy()))
                if len(gap) > 1 else 0.0,
                es_psnr_gt=float(h[es]) if es >= 0 else math.nan,
                es_gap_to_peak_db=float(h[best] - h[es]) if es >= 0 else math.nan,
            )
        out.append(row)
    return pd.DataFrame(out)


def folder_name(name: str) -> str:
    """A run name as a folder name on any OS: '+' -> 'p', any other character outside [A-Za-z0-9._-] -> '_'
    (timm:NAME, NAME[key=value])."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("+", "p"))


def run_dir(cfg: DIPConfig, seed: int, out_root) -> Path:
    """Seed ``seed``'s run directory: ``ARCH-TASK-IMAGE-sSEED-HASH``, HASH = 10 hex digits of the whole config of
    that seed (device left out: it does not change what was asked). Two runs that differ in anything (lr,
    iterations, size, setting, ...) never share a directory."""
    from biasprobe.sweep import run_id

    single = asdict(cfg)
    single["seeds"] = [seed]
    single.pop("device")
    name = f"{cfg.arch}-{cfg.task}-{Path(str(cfg.image)).stem}-s{seed}-{run_id(single)[:10]}"
    return Path(out_root) / folder_name(name)


def check_new(cfg: DIPConfig, out_root) -> list[Path]:
    """The run directories a run of ``cfg`` (resolved) will write; BiasprobeError if one exists already (nothing a
    user ran is overwritten). Call it before fitting, so no fit is lost to it."""
    dirs = [run_dir(cfg, seed, out_root) for seed in cfg.seeds]
    for d in dirs:
        if d.exists():
            raise BiasprobeError(f"{d} exists: this config and seed ran already; remove that folder or use "
                                 "another --out")
    return dirs


def save_result(result: DIPResult, out_root) -> list[Path]:
    """Write one directory per seed (:func:`run_dir`): config.json, curves.parquet, summary.json, images.npz and
    PNGs (snapshots, best step, PSNR-vs-iteration plot). Each directory is written under a temporary name and
    renamed into place when complete. Returns the directories."""
    import os
    import shutil
    import tempfile

    from biasprobe import plots
    from biasprobe.runinfo import write_atomic, write_json, write_parquet

    cfg = result.config
    dirs = check_new(cfg, out_root)
    for seed, d in zip(cfg.seeds, dirs):
        single = copy.deepcopy(cfg)
        single.seeds = [seed]
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=d.parent, prefix=f".tmp-{d.name}-"))
        try:
            write_json(tmp / "config.json", {"config": asdict(single), "seed": seed, **result.meta})
            curves = result.curves[result.curves.seed == seed]
            write_parquet(tmp / "curves.parquet", curves)
            write_json(tmp / "summary.json", result.summary[result.summary.seed == seed].iloc[0].to_dict())
            imgs = result.images[seed]
            buf = io.BytesIO()
            np.savez_compressed(buf, **{k: v for k, v in imgs.items() if k != "snapshots"})
            write_atomic(tmp / "images.npz", buf.getvalue())
            for key in ("clean", "observed", "best", "final", "ema"):
                if key in imgs:
                    imagelib.save_png(imgs[key], tmp / f"{key}.png")
            for step, arr in imgs["snapshots"].items():
                imagelib.save_png(arr, tmp / f"step{step:05d}.png")
            plots.psnr_curves(curves, tmp / "psnr.png",
                              title=f"{cfg.arch} {cfg.task} {Path(str(cfg.image)).stem} seed {seed}")
            os.rename(tmp, d)  # fails if d appeared meanwhile: never overwrite
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dirs


def load_run(path) -> dict:
    """A run directory written by :func:`save_result`, read back: ``config`` (a DIPConfig), ``seed``, ``meta``
    (provenance), ``curves`` and ``summary`` (a dict)."""
    import json

    d = Path(path)
    if not (d / "config.json").is_file():
        raise BiasprobeError(f"{d} is not a DIP run directory (no config.json)")
    meta = json.loads((d / "config.json").read_text())
    return {"config": DIPConfig(**meta.pop("config")), "seed": meta.pop("seed"), "meta": meta,
            "curves": pd.read_parquet(d / "curves.parquet"),
            "summary": json.loads((d / "summary.json").read_text())}
