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

from biasprobe.probes.dip import images as imagelib
from biasprobe.probes.dip import quality as metrics
from biasprobe.probes.dip.config import DIPConfig, DIPResult
from biasprobe.errors import BiasprobeError


def hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)


def sustained_crossing(steps, gap, window: int = 1) -> float:
    """The step at which the gap psnr_gt - psnr_obs turns negative *and stays so*: the first step ``t``, after the
    gap has first been >= 0, such that every recorded step in ``[t, t + window - 1]`` has a gap below zero (and the
    record reaches ``t + window - 1``). ``steps``: the recorded steps (every step, or the log steps of a curve);
    ``window``: in steps (1: the first negative step). 0 when the gap was never >= 0 (the net never resisted the
    corruption); NaN when no such step was recorded (censored at the last recorded step)."""
    steps, gap = np.asarray(steps, float), np.asarray(gap, float)
    pos = np.flatnonzero(gap >= 0)
    if not pos.size:
        return 0.0
    neg = gap < 0
    end = np.searchsorted(steps, steps + window - 1, side="right")  # recorded steps [i, end) lie in the window
    c = np.concatenate([[0], np.cumsum(neg)])
    ok = neg & (np.arange(gap.size) > pos[0]) & (steps + window - 1 <= steps[-1]) & (c[end] - c[:-1] == end - np.arange(gap.size))
    hit = np.flatnonzero(ok)
    return float(steps[hit[0]]) if hit.size else math.nan


def collapse_step(psnr_obs, patience: int, collapse_db: float) -> float:
    """The first step from which psnr_obs (one value per step) stays more than ``collapse_db`` below its running
    best for ``patience`` steps: the fit has collapsed (a net whose loss jumps and stays up, or freezes, after a
    divergence); NaN when it never does (or ``collapse_db`` is 0)."""
    p = np.asarray(psnr_obs, float)
    if collapse_db <= 0 or p.size < patience:
        return math.nan
    best = np.fmax.accumulate(np.where(np.isfinite(p), p, -np.inf))
    low = ~(p >= best - collapse_db)  # NaN counts as low
    c = np.concatenate([[0], np.cumsum(low)])
    full = np.flatnonzero(c[patience:] - c[:-patience] == patience)
    return float(full[0]) if full.size else math.nan


def stop_state(hist_psnr_gt: np.ndarray, hist_gap: np.ndarray, patience: int, gap_window: int = 1,
               stop_on_gap: bool = True, collapse_db: float = 0.0) -> pd.DataFrame:
    """Where each seed stands after the steps recorded so far (arrays (T, K), one row per step, per-step values).

    * ``collapse_step``: :func:`collapse_step` of psnr_obs = psnr_gt - gap (NaN: no collapse; never with
      ``collapse_db`` 0); the steps from it on are not read below;
    * ``best_step``: the step of the highest psnr_gt before any collapse (the first one on ties);
    * ``gap_negative_step``: :func:`sustained_crossing` over ``gap_window`` steps, before any collapse (0 if the gap
      was never >= 0; NaN while not observed: censored at the last step, or at the collapse);
    * ``peak_status``: ``reached`` (the best step lies at least ``patience`` steps before the last step, or before
      the collapse), ``cut by divergence`` (a collapse came sooner), ``not reached`` (the fit is still within
      ``patience`` of its best); ``peak_reached`` is ``peak_status == "reached"``;
    * ``done``: the ``stop="peak"`` rule's word for the seed: it collapsed, or its peak is reached and (when
      ``stop_on_gap``) its gap crossing lies at least ``patience`` steps back too. A seed batch stops when every
      seed is done.
    """
    last = hist_psnr_gt.shape[0] - 1
    rows = []
    for k in range(hist_psnr_gt.shape[1]):
        h, gap = hist_psnr_gt[:, k], hist_gap[:, k]
        cut = collapse_step(h - gap, patience, collapse_db)
        end = int(cut) if math.isfinite(cut) else last + 1  # steps [0, end) are read
        hh = h[:end]
        best = int(np.nanargmax(hh)) if np.isfinite(hh).any() else -1
        neg = sustained_crossing(np.arange(end), gap[:end], gap_window) if end else math.nan
        if math.isfinite(cut):
            status = "reached" if best >= 0 and cut - best >= patience else "cut by divergence"
        else:
            status = "reached" if best >= 0 and last - best >= patience else "not reached"
        crossed = math.isfinite(neg) and last - neg >= patience
        done = math.isfinite(cut) or (status == "reached" and (crossed or not stop_on_gap))
        rows.append(dict(best_step=best, gap_negative_step=neg, peak_reached=status == "reached",
                         peak_status=status, collapse_step=cut, done=bool(done)))
    return pd.DataFrame(rows)


class StopRule:
    """:func:`stop_state`, kept incrementally: fed the per-step psnr_gt and gap of the steps since its last update
    (once per log step: only those rows cross to the host), it holds per seed the running best, the gap-crossing
    state and the collapse check, so a log step costs its new steps, not the whole history. Its :meth:`state`
    equals ``stop_state`` over everything fed so far (a test checks it on random histories at every step).

    A collapse is only known ``patience`` steps after it starts, so the steps of a current low-psnr_obs streak are
    held back: they count toward the best and the crossing in :meth:`state` (as ``stop_state`` counts them while no
    collapse is known), and are dropped for good once the streak reaches ``patience`` (they lie after the cut)."""

    def __init__(self, k: int, patience: int, gap_window: int = 1, stop_on_gap: bool = True,
                 collapse_db: float = 0.0):
        self.patience, self.window, self.stop_on_gap, self.collapse_db = patience, gap_window, stop_on_gap, collapse_db
        self.steps = 0
        # per seed: committed (best, best_step, first_pos, run_start, run_len, cross); collapse check; held steps
        self.st = [(-math.inf, -1, None, None, 0, math.nan) for _ in range(k)]
        self.obs_best = [-math.inf] * k
        self.held: list[list[tuple[int, float, float]]] = [[] for _ in range(k)]
        self.cut = [math.nan] * k

    def _step(self, st: tuple, t: int, gt: float, gap: float) -> tuple:
        best, best_step, first_pos, run_start, run_len, cross = st
        if gt > best:  # NaN never is
            best, best_step = gt, t
        if first_pos is None and gap >= 0:
            first_pos = t
        if first_pos is not None and gap < 0:
            run_start = t if run_start is None else run_start
            run_len += 1
            if run_len >= self.window and math.isnan(cross):
                cross = float(run_start)
        else:
            run_start, run_len = None, 0
        return best, best_step, first_pos, run_start, run_len, cross

    def update(self, psnr_gt: np.ndarray, gap: np.ndarray) -> None:
        """Feed the steps since the last update: arrays (n, K), one row per step, in order."""
        for row_gt, row_gap in zip(np.asarray(psnr_gt, float), np.asarray(gap, float)):
            t = self.steps
            for k, (gt, g) in enumerate(zip(row_gt, row_gap)):
                if not math.isnan(self.cut[k]):
                    continue  # collapsed: nothing after the cut is read
                if self.collapse_db <= 0:
                    self.st[k] = self._step(self.st[k], t, gt, g)
                    continue
                obs = gt - g
                if obs > self.obs_best[k]:
                    self.obs_best[k] = obs
                if obs >= self.obs_best[k] - self.collapse_db:  # not low: the held steps were not a collapse
                    for step in self.held[k] + [(t, gt, g)]:
                        self.st[k] = self._step(self.st[k], *step)
                    self.held[k] = []
                else:
                    self.held[k].append((t, gt, g))
                    if len(self.held[k]) >= self.patience:
                        self.cut[k], self.held[k] = float(self.held[k][0][0]), []
            self.steps += 1

    def state(self) -> pd.DataFrame:
        """The columns of :func:`stop_state` for the steps fed so far."""
        last = self.steps - 1
        rows = []
        for k, st in enumerate(self.st):
            for step in self.held[k]:
                st = self._step(st, *step)
            best, best_step, first_pos, _, _, cross = st
            cut = self.cut[k]
            neg = math.nan if cut == 0 else 0.0 if first_pos is None else cross
            if math.isfinite(cut):
                status = "reached" if best_step >= 0 and cut - best_step >= self.patience else "cut by divergence"
            else:
                status = "reached" if best_step >= 0 and last - best_step >= self.patience else "not reached"
            crossed = math.isfinite(neg) and last - neg >= self.patience
            done = math.isfinite(cut) or (status == "reached" and (crossed or not self.stop_on_gap))
            rows.append(dict(best_step=best_step, gap_negative_step=neg, peak_reached=status == "reached",
                             peak_status=status, collapse_step=cut, done=bool(done)))
        return pd.DataFrame(rows)


def summarise(cfg, curves, hist_psnr_gt, hist_var, base_psnr, backtracks, seconds, peak_mb, n_params, hw,
              hist_gap=None, dead_stop=None):
    """One row per seed; ``base_psnr``: the corrupted input's PSNR per seed (None without ground truth). The
    histories (``hist_*``, (steps run, K)) hold one row per step run, so ``steps_run`` is their length.
    ``dead_stop``: per seed, whether the loop's dead check (``dead_after``) stopped it; such a seed fitted a colour,
    so it has no peak: its ``peak_status`` is "dead" (``peak_reached`` false) and it is marked ``failed``."""
    steps_run = hist_var.shape[0]
    state = stop_state(hist_psnr_gt, hist_gap, cfg.patience, cfg.gap_window, cfg.stop_on_gap,
                       cfg.collapse_db) if base_psnr is not None else None
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
        row["dead_stop"] = bool(dead_stop[k]) if dead_stop is not None else False
        row["failed"] = row["failed"] or row["dead_stop"]
        if base_psnr is not None:
            h = hist_psnr_gt[:, k]
            st = state.iloc[k]
            best = int(st.best_step)
            gap = c["gap"]
            row.update(
                baseline_psnr=float(base_psnr[k]),
                max_psnr_gt=float(h[best]),
                max_psnr_gt_step=best,
                peak_reached=bool(st.peak_reached) and not row["dead_stop"],
                peak_status="dead" if row["dead_stop"] else str(st.peak_status),
                collapsed=bool(np.isfinite(st.collapse_step)),
                collapse_step=float(st.collapse_step),
                gap_window=int(cfg.gap_window),
                gain_db=float(h[best] - base_psnr[k]),
                final_psnr_gt=float(c["psnr_gt"].iloc[-1]),
                final_psnr_gt_ema=float(c["psnr_gt_ema"].iloc[-1]),
                max_psnr_gt_ema=float(c["psnr_gt_ema"].max()),
                final_gap=float(gap.iloc[-1]),
                gap_negative_step=float(st.gap_negative_step),  # per step; NaN: censored at stop_step
                gap_censored=bool(np.isnan(st.gap_negative_step)),
                gap_censor_step=float(st.collapse_step if np.isfinite(st.collapse_step) else steps_run - 1),
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
    from biasprobe.studies.sweep import run_id

    single = cfg.identity()
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

    from biasprobe.analysis import plots
    from biasprobe.runinfo import write_atomic, write_json, write_parquet

    cfg = result.config
    dirs = check_new(cfg, out_root)
    for seed, d in zip(cfg.seeds, dirs):
        single = copy.deepcopy(cfg)
        single.seeds = [seed]
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=d.parent, prefix=f".tmp-{d.name}-"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700: a run folder gets the mode the user's umask gives
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


def load_run(path, where: str | None = None) -> dict:
    """A DIP run directory (written by :func:`save_result`, or one like it), read back and checked: ``config`` (a
    DIPConfig; None when config.json has none), ``seed``, ``meta`` (provenance: config.json's other fields),
    ``curves`` (step, metric, value, ...), ``summary`` (a dict; {} when absent) and ``images`` (images.npz's arrays
    as float64; {} when absent). The one reader of a run folder: a folder that is not one, or a damaged file, is a
    one-line BiasprobeError starting with ``where`` (default: the folder)."""
    import json

    d = Path(path)
    where = where or str(d)
    if not d.is_dir():
        raise BiasprobeError(f"{where}: no such directory (give a run dir written by `biasprobe dip`)")
    if not (d / "curves.parquet").is_file():
        raise BiasprobeError(f"{where}: no curves.parquet; is the run finished? (rerun `biasprobe dip`)")
    try:
        curves = pd.read_parquet(d / "curves.parquet")
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise BiasprobeError(f"{where}: cannot read curves.parquet ({exc}); rerun `biasprobe dip`") from exc
    missing = {"step", "metric", "value"} - set(curves.columns)
    if missing:
        raise BiasprobeError(f"{where}: curves.parquet lacks columns {sorted(missing)}; rerun `biasprobe dip`")
    images = {}
    if (d / "images.npz").is_file():
        try:
            with np.load(d / "images.npz") as npz:
                images = {k: np.asarray(npz[k], dtype=np.float64) for k in npz.files}
        except Exception as exc:
            raise BiasprobeError(f"{where}: cannot read images.npz ({exc}); rerun `biasprobe dip`") from exc
    meta, summary = {}, {}
    for name in ("config.json", "summary.json"):
        if (d / name).is_file():
            try:
                data = json.loads((d / name).read_text())
            except json.JSONDecodeError as exc:
                raise BiasprobeError(f"{where}: {name} is not valid JSON ({exc})") from exc
            if isinstance(data, dict):
                meta, summary = (data, summary) if name == "config.json" else (meta, data)
    config = meta.pop("config", None)
    return {"config": DIPConfig(**config) if isinstance(config, dict) else None, "seed": meta.pop("seed", None),
            "meta": meta, "curves": curves, "summary": summary, "images": images}
