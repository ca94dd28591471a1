"""Per-architecture learning-rate calibration for both probes, so that a verdict measures bias, not a badly tuned
optimiser.

Why: one learning rate for every architecture measures the optimiser as much as the prior. (With the original
study's ViT generator, Adam at DIP's lr 0.01 stays below the noisy input's PSNR on F16 while lr 1e-4 peaks ~3 dB
above it; the CNN skip-net does well at 0.01.)

Protocol, for each architecture and probe::

    for lr in grid (log-spaced, e.g. 1e-4 3e-4 1e-3 3e-3 1e-2)    [x weight decay in wd_grid, classify only]
        score(lr) = mean over seeds of the probe's own score on *calibration* data
    chosen lr   = argmax_lr score(lr)          second lr = argmax over the other lrs (for the sensitivity check)

- generative probe (``dip``): score = max over iterations of psnr_gt (``DIPResult.summary.max_psnr_gt``) of the fit
  to the corrupted calibration image, by default skimage's ``chelsea``, an image the studies do not evaluate on
  (configurable through ``base["image"]``: keep it out of the study's images). Seeds of one lr run as one batch.
- predictive probe (``classify``): score = ``final_val_acc``, accuracy at the end of training on ``val_size``
  images carved from the training pool outside the subset (``ClassifyConfig(eval_split='val')``, forced here), so no
  test image informs the choice. The final (not best-epoch) accuracy is what evaluation reports, and it does not
  reward picking an epoch on the validation set. A run whose loss becomes non-finite scores NaN (diverged) and
  ranks last.

Ties go to the smaller learning rate. Every calibration run is a run of the sweep engine (``biasprobe.studies.sweep``):
its config (probe, arch, lr, weight decay, seeds, base fields) names it, so calibration resumes and no run is
computed twice. The device is not part of that key (``device=`` argument), and neither are the defaults of
``DIPConfig`` / ``ClassifyConfig`` that ``base`` leaves unset.

Results: ``calibrate`` -> long table (one row per arch, probe, lr, weight decay, seed); ``choose`` -> one row per
(arch, probe); ``save_choices`` / ``load_choices`` (CSV); ``lookup_lr`` for ``--lr calibrated``.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from biasprobe.errors import BiasprobeError
from biasprobe.probes import PROBES, get_probe

DEFAULT_CHOICES = Path("runs/calibration/choices.csv")
LR_GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]

# Presets: grid, seeds and base config per probe, shipped as JSON beside the study presets
# (``biasprobe/studies/presets/calibration/lr-NAME.json``). ``base`` holds DIPConfig / ClassifyConfig fields used by
# every calibration run.


def preset(name: str, probe: str) -> dict:
    """Calibration preset ``name``'s part for ``probe``: grid, seeds, base (and wd_grid for some classify presets)."""
    from biasprobe.studies import presets

    get_probe(probe)
    return presets.calibration(name)[probe]


# ----------------------------------------------------------------------------------------------------------------
# One calibration run (module-level, picklable: the sweep's pool / Slurm executors import it by name)


def _probe_config(config: dict, device: str):
    """The probe and its config (DIPConfig, ClassifyConfig, ...) of a stored calibration config."""
    probe = get_probe(config["probe"])
    return probe, probe.make_config({k: v for k, v in config.items() if k != "probe"}, device)


def run_one(config: dict, device: str = "auto") -> dict[str, pd.DataFrame]:
    """Run one calibration config; tables ``scores`` (one row per seed) and ``curves`` (DIP: psnr_gt per log step;
    classify: the epochs table). ``score`` is the probe's ``criterion``."""
    from biasprobe.runinfo import resolve_device

    probe, cfg = _probe_config(config, device)
    dev = str(resolve_device(device))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    tables = probe.calibration_run(cfg)
    scores = tables["scores"]
    scores.insert(0, "arch", config["arch"])
    scores.insert(1, "probe", config["probe"])
    scores.insert(2, "lr", float(config["lr"]))
    scores.insert(3, "weight_decay", float(config.get("weight_decay", math.nan)))
    scores["cpu_seconds"] = time.process_time() - cpu0  # all threads of this process
    scores["wall_seconds"] = time.perf_counter() - wall0
    scores["device"] = dev
    return {"scores": scores, "curves": tables["curves"]}


# ----------------------------------------------------------------------------------------------------------------
# The sweep


def calibration_configs(archs: list[str], probe: str, grid: list[float], base: dict, seeds=(0,),
                        wd_grid: list[float] | None = None, arch_kwargs: dict[str, dict] | None = None) -> list[dict]:
    """The sweep's run configs, checked (one-line BiasprobeError on a bad arch, field or value). DIP: one config
    per (arch, lr) with all seeds as one batch; classify: one per (arch, lr, weight decay, seed). ``arch_kwargs``:
    per-architecture constructor kwargs, replacing ``base["arch_kwargs"]`` for the archs it names."""
    probe = get_probe(probe)
    if not archs:
        raise BiasprobeError("give at least one architecture to calibrate (--arch)")
    grid = [float(x) for x in grid]
    if not grid or any(not (x > 0 and math.isfinite(x)) for x in grid):
        raise BiasprobeError(f"the learning-rate grid must be positive numbers, got {grid}")
    if len(set(grid)) != len(grid):
        raise BiasprobeError(f"the learning-rate grid repeats a value: {grid}")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise BiasprobeError(f"give distinct calibration seeds, got {seeds}")
    base = dict(base or {})
    cls = probe.config_type
    allowed = probe.fields() - {"arch", "lr", "seed", "seeds", "device"}
    for key in base:
        if key not in allowed:
            raise BiasprobeError(f"calibration base field {key!r} is not a {cls.__name__} field (or is set by "
                                 f"calibration): use one of {', '.join(sorted(allowed))}")
    base = probe.calibration_base(base)
    decays = _weight_decays(probe, base, wd_grid)
    runs_of_seeds = [dict(seeds=seeds)] if probe.seeds_batched else [dict(seed=s) for s in seeds]
    configs = [dict(probe=probe.name, **base, arch=a, lr=lr, **wd, **s)
               for a in archs for lr in grid for wd in decays for s in runs_of_seeds]
    for config in configs:
        if arch_kwargs and config["arch"] in arch_kwargs:
            config["arch_kwargs"] = dict(arch_kwargs[config["arch"]])
    seen = set()
    for config in configs:  # fail before any run: arch names, field values
        if config["arch"] in seen:
            continue
        seen.add(config["arch"])
        probe.check(_probe_config(config, "cpu")[1])
    return configs


def _weight_decays(probe, base: dict, wd_grid: list[float] | None) -> list[dict]:
    """The weight-decay settings to grid ([{}] for a probe that does not tune it); pops ``base``'s weight_decay,
    which is the one setting when there is no ``wd_grid`` (default: the config type's)."""
    if not probe.weight_decay:
        if wd_grid:
            tuned = " or ".join(p.name for p in PROBES.values() if p.weight_decay)
            raise BiasprobeError(f"a weight-decay grid applies to the {tuned} probe only, not {probe.name}")
        return [{}]
    wds = [float(w) for w in wd_grid] if wd_grid else [float(base.get("weight_decay", probe.config_type.weight_decay))]
    base.pop("weight_decay", None)
    if any(not (w >= 0) for w in wds):
        raise BiasprobeError(f"weight decays must be >= 0, got {wds}")
    return [dict(weight_decay=w) for w in wds]


def calibrate(archs: list[str], probe: str, grid: list[float], base: dict, store: str | Path, seeds=(0,),
              executor: str = "local", jobs: int = 1, progress: bool = True, wd_grid: list[float] | None = None,
              device: str = "auto", threads_per_job: int | None = None,
              arch_kwargs: dict[str, dict] | None = None, compute: bool = True, donors=()) -> pd.DataFrame:
    """Run (or resume) the calibration sweep into the result store at ``store``; return the long table of this
    calibration: arch, probe, lr, weight_decay (NaN for dip), seed, score, diverged, cpu_seconds, wall_seconds,
    device, run_id, seconds (as stored). All architectures run as one sweep, so a pool's workers stay busy.
    Runs already in the store are not repeated. A run that fails raises one BiasprobeError after the sweep
    (finished runs are kept; rerun to retry the failed ones). ``compute=False`` runs nothing: the table is read
    from the store, and a calibration not finished there is one BiasprobeError. ``donors``: earlier stores whose
    runs are taken over first (``reuse.sweep_reusing``)."""
    from biasprobe.studies.reuse import sweep_reusing
    from biasprobe.studies.sweep import ResultStore

    configs = calibration_configs(archs, probe, grid, base, seeds, wd_grid, arch_kwargs)
    store = ResultStore(store)
    if compute:
        fn = functools.partial(run_one, device=device)
        index = sweep_reusing(configs, fn, store, donors, executor=executor, jobs=jobs,
                              threads_per_job=threads_per_job, progress=progress, desc=f"calibrate {probe}")
    else:
        from biasprobe.studies.sweep import run_id

        ids = [run_id(c) for c in configs]
        index = store.index()
        index = index[index.run_id.isin(ids)]
        if int((index.status == "done").sum()) < len(set(ids)):
            raise BiasprobeError(f"the {probe} calibration has {int((index.status == 'done').sum())} of its "
                                 f"{len(set(ids))} runs in {store.root}: run the study (it resumes) to finish it "
                                 f"before a report can be drawn")
    failed = index[index.status == "failed"]
    if len(failed):
        first = str(failed.error.iloc[0]).splitlines()[0] if failed.error.iloc[0] else "?"
        raise BiasprobeError(f"{len(failed)} of {len(index)} calibration runs failed (first: {first}); see "
                             f"{store.failed_dir}/*.json, fix and rerun (finished runs are kept)")
    table = store.load("scores", run_ids=list(index.run_id))
    seconds = index.set_index("run_id")["seconds"]
    table["seconds"] = table.run_id.map(seconds)
    cols = ["arch", "probe", "lr", "weight_decay", "seed", "score"]
    table = table[cols + [c for c in table.columns if c not in cols]]
    return table.sort_values(["arch", "lr", "weight_decay", "seed"]).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------------
# The choice


def curves(table: pd.DataFrame, peak_by: float | None = None) -> pd.DataFrame:
    """Mean score over seeds per (arch, probe, lr, weight_decay): the calibration curve. ``peak_by``: a DIP fit
    counts as peaked only when its best step is at most this (a peak near the cap leaves no room on other images)."""
    key = ["arch", "probe", "lr", "weight_decay"]
    t = table.assign(weight_decay=table.weight_decay.fillna(-1.0))  # NaN (dip) would drop out of groupby
    # whether every seed's score is a peak (a DIP fit still rising at its cap scores a lower bound); unknown: yes
    t["peaked"] = t["peak_reached"].map(lambda x: True if pd.isna(x) else bool(x)) if "peak_reached" in t else True
    if peak_by is not None and "max_psnr_gt_step" in t:
        t["peaked"] = t["peaked"] & (t["max_psnr_gt_step"].astype(float) <= float(peak_by))
    out = t.groupby(key, sort=True).agg(score=("score", "mean"), n_seeds=("seed", "nunique"),
                                        seeds=("seed", lambda s: " ".join(str(int(x)) for x in sorted(set(s)))),
                                        peaked=("peaked", "all"))
    out = out.reset_index()
    out["weight_decay"] = out.weight_decay.where(out.weight_decay >= 0)
    # a seed that diverged makes the mean NaN: that setting ranks last
    return out


def choose(table: pd.DataFrame, peak_by: float | None = None) -> pd.DataFrame:
    """One row per (arch, probe): the lr (and weight decay) with the highest mean score among the settings whose
    fits reached their peak (a score read from a fit still rising at the cap is a lower bound, so such a setting is
    chosen only when none peaked), and the second-best lr (the best setting among the *other* learning rates, by
    the same rule), for the sensitivity check. Ties go to the smaller lr. Columns: arch, probe, lr, weight_decay,
    score, second_lr, second_weight_decay, second_score, at_edge (the chosen lr is the grid's smallest or largest:
    widen the grid), grid, wd_grid, seeds, criterion, n_runs, peaked (the chosen setting's fits all peaked).
    ``peak_by``: see :func:`curves`."""
    need = {"arch", "probe", "lr", "weight_decay", "seed", "score"}
    if not need <= set(table.columns):
        raise BiasprobeError(f"a calibration table needs columns {sorted(need)}, got {sorted(table.columns)}")
    rows = []
    for (arch, probe), c in curves(table, peak_by).groupby(["arch", "probe"], sort=True):
        ranked = c.assign(_s=c.score.fillna(-np.inf)).sort_values(["peaked", "_s", "lr"],
                                                                   ascending=[False, False, True], kind="stable")
        best = ranked.iloc[0]
        others = ranked[ranked.lr != best.lr]
        second = others.iloc[0] if len(others) else None
        lrs = sorted(c.lr.unique())
        wds = sorted(w for w in c.weight_decay.unique() if not pd.isna(w))
        rows.append(dict(
            arch=arch, probe=probe, lr=float(best.lr), weight_decay=best.weight_decay, score=best.score,
            second_lr=float(second.lr) if second is not None else math.nan,
            second_weight_decay=second.weight_decay if second is not None else math.nan,
            second_score=second.score if second is not None else math.nan,
            at_edge=bool(len(lrs) > 1 and best.lr in (lrs[0], lrs[-1])),
            grid=" ".join(f"{x:g}" for x in lrs), wd_grid=" ".join(f"{x:g}" for x in wds),
            seeds=best.seeds, criterion=PROBES[probe].criterion if probe in PROBES else "score",
            n_runs=int(((table.arch == arch) & (table.probe == probe)).sum()), peaked=bool(best.peaked),
        ))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# Stored choices and lookup


CHOICE_COLUMNS = ["arch", "probe", "lr", "weight_decay", "score", "second_lr", "second_weight_decay",
                  "second_score", "at_edge", "grid", "wd_grid", "seeds", "criterion", "n_runs", "peaked"]


def save_choices(df: pd.DataFrame, path: str | Path, merge: bool = True) -> pd.DataFrame:
    """Write the choices CSV atomically. ``merge``: keep rows of an existing file for other (arch, probe) pairs,
    replacing those calibrated again. Returns what was written."""
    from biasprobe.runinfo import write_atomic

    path = Path(path)
    if merge and path.exists():
        old = load_choices(path)
        keep = ~old.set_index(["arch", "probe"]).index.isin(df.set_index(["arch", "probe"]).index)
        df = pd.concat([old[keep], df], ignore_index=True)
    df = df.sort_values(["probe", "arch"]).reset_index(drop=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, df.to_csv(index=False))
    return df


def load_choices(path: str | Path = DEFAULT_CHOICES) -> pd.DataFrame:
    """Read a choices CSV (``df.attrs['path']`` remembers the file for error messages)."""
    path = Path(path)
    if not path.is_file():
        raise BiasprobeError(f"no calibration file {path}; run `biasprobe calibrate --arch ARCH ... --probe "
                             f"dip|classify --out {path.parent}` first, or give --lr")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BiasprobeError(f"{path} is not a calibration CSV ({str(e).splitlines()[0]})") from e
    missing = {"arch", "probe", "lr", "second_lr"} - set(df.columns)
    if missing:
        raise BiasprobeError(f"{path} is not a calibration choices file: it lacks columns {sorted(missing)}")
    df.attrs["path"] = str(path)
    return df


def lookup(choices: pd.DataFrame, arch: str, probe: str, rank: int = 1) -> dict:
    """{'lr', 'weight_decay'} calibrated for (arch, probe): rank 1 = the chosen setting, 2 = the second-best lr."""
    get_probe(probe)
    if rank not in (1, 2):
        raise BiasprobeError(f"rank must be 1 (chosen lr) or 2 (second-best lr), got {rank}")
    where = choices.attrs.get("path", "the calibration table")
    row = choices[(choices.arch == arch) & (choices.probe == probe)]
    if row.empty:
        raise BiasprobeError(f"no calibrated lr for {arch}/{probe} in {where}; run `biasprobe calibrate --arch "
                             f"{arch} --probe {probe}`")
    row = row.iloc[-1]
    lr, wd = (row.lr, row.get("weight_decay")) if rank == 1 else (row.second_lr, row.get("second_weight_decay"))
    if pd.isna(lr):
        raise BiasprobeError(f"no second-best lr for {arch}/{probe} in {where}: its grid had one value; "
                             f"calibrate on a grid of two or more")
    return dict(lr=float(lr), weight_decay=None if wd is None or pd.isna(wd) else float(wd))


def lookup_lr(choices: pd.DataFrame, arch: str, probe: str, rank: int = 1) -> float:
    """The calibrated learning rate of (arch, probe); BiasprobeError (one line) if there is none."""
    return lookup(choices, arch, probe, rank)["lr"]


# ----------------------------------------------------------------------------------------------------------------
# Figure


def plot_curves(table: pd.DataFrame, path: str | Path, choices: pd.DataFrame | None = None) -> Path:
    """Score vs learning rate (log axis), one line per architecture (mean over seeds, seeds as points, one line
    per weight decay where several), the chosen lr marked with a star; one panel per probe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    choices = choose(table) if choices is None else choices
    probes = sorted(table.probe.unique())
    fig, axes = plt.subplots(1, len(probes), figsize=(5.5 * len(probes), 4), squeeze=False)
    for ax, probe in zip(axes[0], probes):
        t = table[table.probe == probe]
        c = curves(t)
        several_wd = c.weight_decay.nunique() > 1
        sns.lineplot(c, x="lr", y="score", hue="arch", style="weight_decay" if several_wd else None,
                     marker="o", ax=ax)
        sns.scatterplot(t, x="lr", y="score", hue="arch", ax=ax, legend=False, alpha=0.35, s=14)
        ch = choices[choices.probe == probe]
        # the lineplot's hue order is first appearance; keep the stars' colours in step with it
        palette = dict(zip(c.arch.unique(), sns.color_palette(n_colors=c.arch.nunique())))
        for _, r in ch.iterrows():
            ax.scatter([r.lr], [r.score], marker="*", s=180, color=palette.get(r.arch, "k"), edgecolor="k",
                       zorder=5)
        ax.set_xscale("log")
        ax.set(xlabel="learning rate", ylabel=PROBES[probe].score_label if probe in PROBES else "score",
               title=f"{probe} calibration (star: chosen)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_choices(choices: pd.DataFrame, file=sys.stdout) -> None:
    cols = ["arch", "probe", "lr", "weight_decay", "score", "second_lr", "second_score", "at_edge", "peaked", "seeds"]
    print(choices[[c for c in cols if c in choices]].to_string(index=False, float_format=lambda v: f"{v:.4g}"),
          file=file)
