"""The decision layer every study shares: the scores a claim reads, contrasts with a stated direction and margin,
their verdicts, and the cross-tab (pandas, numpy, scipy; the generic statistics are in ``stats.py``, the metrics'
names and labels in ``metrics.METRICS``). A study's own claims live in its module
(``biasprobe/studies/NAME.py``), which hands them to :func:`verdict_table`.

Inputs are the study runner's tidy tables:

* ``dip_summary``: one row per (arch, task, image, seed) DIP run: gain_db (= max psnr_gt - psnr of the corrupted
  input), peak_reached, gap_negative_step (NaN when censored: the gap never turned negative before the stop),
  gap_censored, stop_step, failed (too many backtracks), ...
* ``clf_summary``: one row per (arch, n_train, seed) classification run: final_test_acc, plateaued, ...
* ``dip_curves`` (optional): long (arch, task, image, seed, step, metric, value), for grid energy / boundary jump.

Scores and units
----------------
* Generative: per task, never averaged over tasks. A unit is one (image, seed) fit of that task; contrasts between
  architectures are paired on units both ran. ``gain_db`` is read as the peak only when the run's peak was reached
  (``peak_reached``: the best step lies >= patience steps before the stop); ``gap_time`` is the step at which the
  gap psnr_gt - psnr_obs turns negative, right-censored at the stop when it never does. Runs marked ``failed``
  (more backtracks than the run's ``max_backtrack_share``) are left out and listed.
* Predictive: final test accuracy at the fixed N (1000 if run), one unit per seed (the same subset and data order
  for every architecture); AUC over log N where several N ran.

Decisions
---------
A claim is a few :class:`Contrast` rows: a weighted sum of architectures' unit values (``A - B``, or
``r * skipnet - T`` for "far less"), a kind (greater / less / equivalent, ``stats.KINDS``) and a margin, stated in
its row (:func:`evaluate`). Images are the units of DIP contrasts: gains by a paired t over images
(``stats.t_interval``), gap times (right-censored) by the exact paired Gehan test (``stats.gehan_paired``) with the
Kaplan-Meier restricted-mean difference as the effect (``stats.rmst_difference``); seeds are the units of
predictive contrasts (paired t). The claim's form decides (:func:`_decide`): support needs every decisive row
supported at ``ALPHA`` on its own (intersection-union, no correction); refutation is Holm over all the decisive
rows (any refuted row refutes the claim). A row is ``inconclusive`` with a ``reason`` when its runs did not reach
their peak (``truncated``), when its accuracy contrast changes at twice the training budget
(``budget-sensitive``; the budget check replaces a plateau flag for contrasts), when it reads fewer units than
planned (``missing units``), when an architecture has no runs (``missing runs``) or when the data cannot decide
(``power``: the note gives about how many units would). Exploratory rows show estimate and interval only. The
opposite-ordering form of "the probes differ" is :func:`pair_rows`. A :class:`RhoClaim` is Spearman's rho across
architectures with a two-level percentile bootstrap interval (architectures, then units within each), decided only
with at least its ``min_archs`` architectures (``inconclusive (underpowered)`` below; ``not plateaued`` when an
architecture's classifiers were still rising).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from biasprobe.analysis import stats
from biasprobe.errors import BiasprobeError
from biasprobe.analysis.metrics import GENERATIVE, METRICS, PREDICTIVE, by_contrast, declared
from biasprobe.archs.registry import get_arch

VERDICTS = ("supported", "refuted", "inconclusive")
PAIR_VERDICTS = ("ordered oppositely", "ordered alike", "undecided")  # the rows of a claim's pair form
# every verdict cell: a claim's and its rows' words, a pair row's, or "" (exploratory rows get no word)
ROW_VERDICTS = VERDICTS + PAIR_VERDICTS + ("",)
UNIT_GEN = ["image", "seed"]
PRIMARY_TASK = "denoise"  # the seed study's task: the claims table reads it; other tasks get their own tables
ALPHA = 0.025  # one-sided level per family after Holm: one row alone = its 95% two-sided interval

VERDICT_COLUMNS = ["hypothesis", "task", "claim", "comparison", "metric", "kind", "margin", "decisive", "effect",
                   "ci_low", "ci_high", "n_units", "method", "p_support", "p_refute", "p_refute_holm", "verdict",
                   "reason", "note", "power_note", "rho", "rho_ci_low", "rho_ci_high"]

# a contrast's metric name -> the declared metric it reads (its ``contrast``, metrics.METRICS), with what evaluating
# it needs: the probe whose runs measure it, censoring, its guard
METRICS_BY_CONTRAST = by_contrast()


# ----------------------------------------------------------------------------------------------- helpers

def _require(df: pd.DataFrame | None, cols, name: str) -> None:
    if df is None:
        raise BiasprobeError(f"the {name} table is missing: run the study's probes first")
    missing = set(cols) - set(df.columns)
    if missing:
        raise BiasprobeError(f"the {name} table lacks column(s) {sorted(missing)}: regenerate it with this version")


def family_of(arch: str) -> str:
    """Registry family of ``arch`` ('cnn', 'vit', 'swin', 'hybrid', 'other'); for a name the registry does not
    know: 'hybrid' if it looks like one (``3c+x``, ``x+1c``), else 'other'."""
    try:
        return get_arch(arch).family
    except BiasprobeError:
        return "hybrid" if re.match(r"^(\d+c\+.+|.+\+\d+c)$", arch) else "other"


def nonempty(df: pd.DataFrame | None) -> pd.DataFrame | None:
    """None for a missing or empty table (a probe that was not run)."""
    return None if df is None or len(df) == 0 else df


def percentile_ci(samples: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples`` (NaN draws, e.g. undefined rho, are left out)."""
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(samples, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


# ------------------------------------------------------------------------------------------------ scores

def gen_run_table(dip_summary: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, task, image, seed) run: the declared DIP unit metrics (``metrics.declared(GENERATIVE, "unit")``) from
    their source columns, plus the run's ``peak_reached``, ``failed``, ``stop_step`` and the censoring of its gap
    time (a censored metric's NaN becomes the last step at which a crossing could still have started and been
    seen: the stop (or collapse) - gap_window + 1, flagged in its ``censored`` column). Tables made
    before these columns existed: the peak counts as reached when it lies >= 300 steps before the last step, the
    stop is the last step, nothing failed."""
    gen = declared(GENERATIVE, "unit")
    _require(dip_summary, ["arch", "task", "image", "seed"] + [m.source for m in gen], "dip_summary")
    d = dip_summary
    runs = d[["arch", "task", "image", "seed"]].copy()
    last = d["stop_step"].astype(float) if "stop_step" in d else d["iters"].astype(float) - 1 if "iters" in d \
        else pd.Series(np.inf, index=d.index)
    runs["stop_step"] = last
    runs["peak_reached"] = d["peak_reached"].astype(bool) if "peak_reached" in d else (
        last - d["max_psnr_gt_step"].astype(float) >= 300) if "max_psnr_gt_step" in d else True
    runs["failed"] = d["failed"].astype(bool) if "failed" in d else False
    for m in gen:
        values = d[m.source].astype(float)
        if m.censored:  # censored at the stop, or at a collapse, less the window a crossing needs to be seen
            runs[m.censored] = values.isna()
            end = d["gap_censor_step"].astype(float).fillna(last) if "gap_censor_step" in d else last
            window = d["gap_read_window"] if "gap_read_window" in d else d["gap_window"] if "gap_window" in d \
                else 1
            window = pd.Series(window, index=d.index).astype(float).fillna(1)
            values = values.fillna((end - window + 1).clip(lower=0))
        runs[m.name] = values
    return runs


def primary_task(dip_summary: pd.DataFrame | None) -> str | None:
    """The task the claims table reads: denoising when it ran, else the first task in sorted order."""
    if dip_summary is None or not len(dip_summary):
        return None
    tasks = sorted(pd.unique(dip_summary["task"]))
    return PRIMARY_TASK if PRIMARY_TASK in tasks else tasks[0]


def gen_scores(dip_summary: pd.DataFrame, task: str | None = None) -> pd.DataFrame:
    """One row per unit (arch, image, seed) of one task (default :func:`primary_task`), failed runs left out:
    gen_score (gain_db), gap_area, gap_negative_step (censored at the stop), gap_negative_censored (0/1),
    peak_reached."""
    runs = gen_run_table(dip_summary)
    task = task or primary_task(dip_summary)
    runs = runs[(runs.task == task) & ~runs.failed]
    cols = [c for m in declared(GENERATIVE, "unit") for c in (m.name, m.censored) if c]
    out = runs[["arch"] + UNIT_GEN + cols + ["peak_reached"]].copy()
    for m in declared(GENERATIVE, "unit"):
        if m.censored:
            out[m.censored] = out[m.censored].astype(float)
    return out.sort_values(["arch"] + UNIT_GEN).reset_index(drop=True)


def default_n_train(clf_summary: pd.DataFrame) -> int:
    """1000 if runs at N=1000 exist, else the middle of the sorted N values (the upper middle for an even count)."""
    ns = sorted(pd.unique(clf_summary["n_train"]))
    if not ns:
        raise BiasprobeError("the clf_summary table is empty: run the predictive probe first")
    return 1000 if 1000 in ns else int(ns[len(ns) // 2])


def seed_auc(n_train, acc) -> float:
    """trapz(acc, log N) / (log N_max - log N_min) for one seed's curve (the formula of
    ``biasprobe.probes.classify.measures.sample_efficiency_auc``); NaN with fewer than two N."""
    n = np.asarray(n_train, float)
    a = np.asarray(acc, float)
    keep = np.isfinite(a)
    n, a = n[keep], a[keep]
    if np.unique(n).size < 2:
        return float("nan")
    from biasprobe.probes.classify.measures import log_n_auc  # the one formula (imported here: predictive loads torch)

    order = np.argsort(n)
    return float(log_n_auc(a[order], np.log(n[order])))


def budgets(clf_summary: pd.DataFrame | None) -> list[int]:
    """The step budgets the classifier runs ran (``steps_run``), smallest first ([] without the column)."""
    if clf_summary is None or "steps_run" not in clf_summary or not len(clf_summary):
        return []
    return sorted(int(x) for x in pd.unique(clf_summary["steps_run"]))


def split_budgets(clf_summary: pd.DataFrame | None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(the runs at the study's budget, the runs at twice it: the budget check), by ``steps_run``."""
    b = budgets(clf_summary)
    if len(b) < 2:
        return clf_summary, None
    base = b[0]
    steps = clf_summary["steps_run"].astype(int)
    double = clf_summary[steps == 2 * base]
    return clf_summary[steps == base], (double if len(double) else None)


def pred_scores(clf_summary: pd.DataFrame, n_train: int | None = None) -> pd.DataFrame:
    """One row per unit (arch, seed): pred_acc = final_test_acc at ``n_train`` (default :func:`default_n_train`;
    NaN if that seed has no run there), auc = :func:`seed_auc` over all N of the seed, n_sizes, and ``plateaued``
    (the run at ``n_train`` says its accuracy had plateaued; True for tables without the flag)."""
    _require(clf_summary, ["arch", "n_train", "seed", "final_test_acc"], "clf_summary")
    n_fixed = default_n_train(clf_summary) if n_train is None else int(n_train)
    rows = []
    for (arch, seed), g in clf_summary.groupby(["arch", "seed"], sort=True):
        per_n = g.groupby("n_train")["final_test_acc"].mean()
        at_n = g[g.n_train == n_fixed]
        plateaued = bool(at_n["plateaued"].astype(bool).all()) if "plateaued" in g and len(at_n) else True
        rows.append(dict(arch=arch, seed=seed, n_train=n_fixed, plateaued=plateaued,
                         pred_acc=float(per_n.get(n_fixed, np.nan)),
                         auc=seed_auc(per_n.index.to_numpy(), per_n.to_numpy()), n_sizes=len(per_n)))
    return pd.DataFrame(rows, columns=["arch", "seed", "n_train", "pred_acc", "auc", "n_sizes", "plateaued"])


def rank_correlation(gen_units: pd.DataFrame, pred_units: pd.DataFrame, gen_col: str = "gen_score",
                     pred_col: str = "pred_acc", n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict:
    """Spearman rho across archs between the arch means of ``gen_col`` (units from :func:`gen_scores`) and of
    ``pred_col`` (units from :func:`pred_scores`), with a two-level percentile bootstrap interval: each draw
    resamples the architectures (with replacement), then each drawn architecture's units, so the interval is about
    the population of architectures the study's stand for, not only about these (a draw with fewer than 3
    distinct architectures, or constant ranks, gives no rho and is left out).
    Archs need units in both tables. Returns rho, ci_low, ci_high, n_archs, archs."""
    gen = {a: g[gen_col].dropna().to_numpy(float) for a, g in gen_units.groupby("arch", sort=True)}
    pred = {a: g[pred_col].dropna().to_numpy(float) for a, g in pred_units.groupby("arch", sort=True)}
    archs = [a for a in gen if a in pred and gen[a].size and pred[a].size]
    out = dict(rho=float("nan"), ci_low=float("nan"), ci_high=float("nan"), n_archs=len(archs), archs=archs)
    if len(archs) < 3:
        return out
    x = np.array([gen[a].mean() for a in archs])
    y = np.array([pred[a].mean() for a in archs])
    out["rho"] = float(sps.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    k = len(archs)
    pick = rng.integers(0, k, (n_boot, k))  # level 1: architectures

    def boot_means(d):  # level 2: the units of each (draw, slot)'s architecture, drawn afresh for that slot
        out = np.empty(pick.shape)
        for j, a in enumerate(archs):
            at = pick == j
            out[at] = d[a][rng.integers(0, d[a].size, (int(at.sum()), d[a].size))].mean(1)
        return out

    rx = sps.rankdata(boot_means(gen), axis=1)
    ry = sps.rankdata(boot_means(pred), axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    distinct = np.array([np.unique(row).size for row in pick]) >= 3
    with np.errstate(invalid="ignore", divide="ignore"):
        rhos = np.where((den > 0) & distinct, (rx * ry).sum(1) / np.where(den > 0, den, 1), np.nan)
    out["ci_low"], out["ci_high"] = percentile_ci(rhos, ci)
    return out


# ----------------------------------------------------------------------------------------------- cross tab

def last_logged(dip_curves: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """The last logged row of curve ``metric`` per run (arch, task, image, seed); empty if it was never logged."""
    c = dip_curves[dip_curves.metric == metric] if dip_curves is not None else pd.DataFrame()
    if c.empty:
        return c
    keys = [k for k in ("arch", "task", "image", "seed") if k in c.columns]
    return c.sort_values("step").groupby(keys, as_index=False).last()


def cross_tab(dip_summary: pd.DataFrame, clf_summary: pd.DataFrame, dip_curves: pd.DataFrame | None = None,
              n_train: int | None = None, period: int = 8, n_boot: int = 2000, ci: float = 0.95,
              seed: int = 0, families: dict[str, str] | None = None, task: str | None = None) -> pd.DataFrame:
    """One row per arch (union of both probes'): family, then each declared metric (``metrics.METRICS``, in
    order) as the mean over the arch's units, runs or last logged values (see ``metrics.Metric.read``), with a
    bootstrap CI where it declares one, n_train (the fixed N) before the first metric read at it, and the
    parameters of the generator (n_params_gen) and classifier (n_params_clf). Today: generative score + CI over
    (image, seed) units, gap_area, gap_negative_step (censored at iters) and its censored share; accuracy at
    ``n_train`` + CI over seeds, per-seed AUC + CI; shift consistency (circular, padded), ECE at ``n_train``; grid
    energy and boundary jump at ``period``. ``families`` maps arch -> family (default: :func:`family_of`)."""
    dip_summary, clf_summary, dip_curves = nonempty(dip_summary), nonempty(clf_summary), nonempty(dip_curves)
    units = {GENERATIVE: gen_scores(dip_summary, task) if dip_summary is not None else pd.DataFrame(columns=["arch"]),
             PREDICTIVE: pred_scores(clf_summary, n_train) if clf_summary is not None
             else pd.DataFrame(columns=["arch"])}
    runs = {GENERATIVE: dip_summary, PREDICTIVE: clf_summary}
    pred = units[PREDICTIVE]
    n_fixed = pred["n_train"].iloc[0] if len(pred) else np.nan
    archs = sorted(set(units[GENERATIVE]["arch"]) | set(pred["arch"]))
    last = {m.name: last_logged(dip_curves, m.column(period)) for m in declared(read="last")}
    last = {k: d.groupby("arch")["value"].mean() if len(d) else pd.Series(dtype=float) for k, d in last.items()}
    rows = []
    for arch in archs:
        row = dict(arch=arch, family=(families or {}).get(arch) or family_of(arch))
        for m in METRICS.values():
            if m.fixed_n and "n_train" not in row:
                row["n_train"] = n_fixed
            if m.read == "unit":
                u = units[m.probe]
                row.update(_unit_cells(m, u[u.arch == arch], ci))
            elif m.read == "runs":
                r = runs[m.probe]
                r = r[r.arch == arch] if r is not None else pd.DataFrame()
                if m.fixed_n and "n_train" in r:
                    r = r[r.n_train == n_fixed]
                row[m.name] = float(r[m.source].mean()) if m.source in r and len(r) else np.nan
            else:
                row[m.column(period)] = float(last[m.name].get(arch, np.nan))
        d = dip_summary[dip_summary.arch == arch] if dip_summary is not None else pd.DataFrame()
        row["n_params_gen"] = float(d["n_params"].iloc[0]) if "n_params" in d and len(d) else np.nan
        c = clf_summary[clf_summary.arch == arch] if clf_summary is not None else pd.DataFrame()
        row["n_params_clf"] = float(c["n_params"].iloc[0]) if "n_params" in c and len(c) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _unit_cells(m, units: pd.DataFrame, ci: float) -> dict:
    """The cross-tab cells of unit metric ``m`` from one arch's units: its mean, with a t interval
    (``stats.stratified_interval``, images as strata for DIP units, seeds for predictive ones) and unit count when
    declared, and its censored share."""
    if not m.ci:
        cells = {m.name: units[m.name].mean() if len(units) else np.nan}
    else:
        strata = units["image"] if "image" in units else np.zeros(len(units))
        b = stats.stratified_interval(units[m.name], strata, ci) if len(units) else dict(
            effect=np.nan, ci_low=np.nan, ci_high=np.nan, n_units=0)
        cells = {m.name: b["effect"], f"{m.ci}_ci_low": b["ci_low"], f"{m.ci}_ci_high": b["ci_high"]}
        if m.count:
            cells[m.count] = b["n_units"]
    if m.censored:
        cells[m.censored] = units[m.censored].mean() if len(units) else np.nan
    return cells


# ------------------------------------------------------------------------------------------------ contrasts

@dataclass(frozen=True)
class Contrast:
    """One testable row of a claim: sum over archs of weight * the arch's unit value of ``metric``, claimed to be
    ``kind`` (stats.KINDS) than ``margin``. ``metric``: gain_db, gap_time (censored) or pred_acc / auc.
    Exploratory rows (``decisive=False``) are reported but never decide."""

    hypothesis: str
    weights: tuple  # ((arch, weight), ...)
    metric: str
    kind: str
    margin: float = 0.0
    decisive: bool = True

    @property
    def archs(self) -> list[str]:
        return [a for a, _ in self.weights]

    @property
    def label(self) -> str:
        parts = []
        for i, (a, w) in enumerate(self.weights):
            sign = "-" if w < 0 else "+" if i else ""
            coef = "" if abs(w) == 1 else f"{abs(w):g}*"
            parts.append(f"{sign} {coef}{a}".strip() if i else f"{'-' if w < 0 else ''}{coef}{a}")
        return " ".join(parts)


def diff(hyp, a, b, metric, kind, margin=0.0, decisive=True) -> Contrast:
    """The contrast ``a - b`` of ``metric`` (see :class:`Contrast`)."""
    return Contrast(hyp, ((a, 1.0), (b, -1.0)), metric, kind, margin, decisive)


# ------------------------------------------------------------------------------------------------ verdicts

def _row_base(c: Contrast, task: str | None, claim: str = "") -> dict:
    return dict(hypothesis=c.hypothesis, task=task, claim=claim, comparison=c.label, metric=c.metric,
                kind=c.kind, margin=c.margin, decisive=c.decisive, effect=np.nan, ci_low=np.nan, ci_high=np.nan,
                n_units=0, method="", p_support=np.nan, p_refute=np.nan, p_refute_holm=np.nan,
                verdict="inconclusive", reason="", note="", power_note="")


def image_values(runs: pd.DataFrame, arch: str, metric: str) -> pd.DataFrame:
    """One row per image of ``arch`` (failed runs left out): for ``gain_db`` the mean over the image's seeds of
    gen_score and whether every one reached its peak; for ``gap_time`` the lowest seed's (seed 0's) gap time and its
    censoring (a time that may never happen cannot be averaged over seeds)."""
    m = METRICS_BY_CONTRAST[metric]
    g = runs[(runs.arch == arch) & ~runs.failed.astype(bool)]
    if m.censored:
        g = g.sort_values("seed").groupby("image", sort=True).first()
        return pd.DataFrame({"value": g[m.name].astype(float), "censored": g[m.censored].astype(bool), "seeds": 1})
    agg = g.groupby("image", sort=True).agg(value=(m.name, "mean"), peak=("peak_reached", "all"),
                                            seeds=("seed", "size"))
    return agg


def evaluate(c: Contrast, runs: pd.DataFrame | None, pred: pd.DataFrame | None, ci: float = 0.95,
             horizon: float | None = None, pred_double: pd.DataFrame | None = None,
             alpha: float = 0.025, planned: dict | None = None) -> dict:
    """One contrast's row: effect, interval, one-sided p-values (per comparison; the claim's rule is applied by
    :func:`_decide`), and the reason a verdict cannot be read when one applies. Images are the units of DIP
    contrasts (``runs``: :func:`gen_run_table` rows of one task): gains by a paired t over images, gap times by the
    exact paired Gehan test with the KM restricted-mean difference to ``horizon`` as the effect. Seeds are the units
    of predictive contrasts (``pred``: :func:`pred_scores` at the budget; ``pred_double``: the same seeds at twice
    the budget, the budget check). ``planned``: {"images": n, "seeds": m}, the units the plan expects: a row that
    reads fewer is inconclusive (missing units), never decided on a smaller sample without a word."""
    r = _row_base(c, None)
    metric = METRICS_BY_CONTRAST.get(c.metric)
    dip_metric = metric is not None and metric.probe == GENERATIVE
    censored = metric is not None and bool(metric.censored)
    guard = metric.guard if metric is not None else ""
    table = runs if dip_metric else pred
    have = set(table["arch"]) if table is not None else set()
    missing = [a for a in c.archs if a not in have]
    if missing:
        r.update(reason="missing runs", note=f"no {'DIP' if dip_metric else 'classification'} runs for "
                                             f"{', '.join(missing)}")
        return r
    notes, reason = [], ""
    if dip_metric:
        failed = runs[runs.arch.isin(c.archs) & runs.failed.astype(bool)]
        if len(failed):
            notes.append("failed runs left out: " + ", ".join(f"{x.arch}/{x.image}/s{x.seed}"
                                                             for x in failed.itertuples()))
        per = {a: image_values(runs, a, c.metric) for a in c.archs}
    else:
        per = {a: pred[pred.arch == a].set_index("seed") for a in c.archs}
    common = per[c.archs[0]].index
    for a in c.archs[1:]:
        common = common.intersection(per[a].index)
    if not len(common):
        r.update(reason="missing runs", note="no units run by all of " + ", ".join(c.archs))
        return r
    unit = "images" if dip_metric else "seeds"
    if censored:
        if len(c.weights) != 2 or c.margin != 0:
            raise BiasprobeError(f"{c.metric} contrasts compare two architectures at margin 0, not {c.label!r}")
        (a, _), (b, _) = c.weights
        A, B = per[a].loc[common], per[b].loc[common]
        kind = "less" if c.kind == "less" else "greater"
        g = stats.gehan_paired(A.value, A.censored, B.value, B.censored, kind)
        h = float(horizon) if horizon else float(max(A.value.max(), B.value.max()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.rmst_difference(A.value, A.censored, B.value, B.censored, h, ci)
        p_sup, p_ref = g["p_support"], g["p_refute"]
        r.update(effect=res["effect"], ci_low=res["ci_low"], ci_high=res["ci_high"], n_units=len(common),
                 method=f"exact paired Gehan over {len(common)} images; effect: {res['method']}")
        notes.append(f"pairs ordered for / against / not ordered: {g['n_for']} / {g['n_against']} / {g['n_tied']}; "
                     f"censored: {a} {int(A.censored.sum())}, {b} {int(B.censored.sum())} of {len(common)}")
        if g["n_for"] + g["n_against"] == 0:
            reason = "censored"
            notes.append("no pair ordered by the data: the test decides nothing")
        res = None
    else:
        values = sum(w * per[a].loc[common, "value" if dip_metric else c.metric].to_numpy(float)
                     for a, w in c.weights)
        res = stats.t_interval(values, ci)
        res["method"] = f"paired t over {res['n_units']} {unit}"
        res["sd"] = float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan
        p_sup, p_ref = stats.test_claim(res, c.kind, c.margin)
        r.update(effect=res["effect"], ci_low=res["ci_low"], ci_high=res["ci_high"], n_units=res["n_units"],
                 method=res["method"])
    r.update(p_support=p_sup, p_refute=p_ref)
    if guard == "peak":
        short = [f"{a}/{i}" for a in c.archs for i in common if not per[a].loc[i, "peak"]]
        if short:
            reason = "truncated"
            notes.append(f"peak not reached in {len(short)} unit(s): {_names(short)}")
    elif guard == "budget":
        want2 = (planned or {}).get("double_seeds")
        have2 = 0
        if pred_double is not None and len(pred_double):
            have2 = len(set.intersection(*(set(pred_double.seed[pred_double.arch == a]) for a in c.archs)))
            check = budget_check(c, pred, pred_double, alpha)
            if check:
                notes.append(check["note"])
                if check["sensitive"]:
                    reason = "budget-sensitive"
        if want2 and have2 < want2:  # the plan's budget check has not run (in full): nothing is decided without it
            reason = reason or "missing units"
            notes.append(f"budget check: {have2} of the {want2} planned seeds at 2x the budget")
    want = (planned or {}).get(unit)
    if want and _units_run(table, c.archs, "image" if dip_metric else "seed") < want:  # runs not made yet
        reason = reason or "missing units"
        notes.insert(0, f"{r['n_units']} of the {want} planned {unit}")
    if reason in ("", "missing units") and res is not None and np.isfinite(res.get("se", np.nan)):
        r["_res"] = res  # for the power line (also of a row still missing units: how many would decide it)
    r.update(reason=reason, note="; ".join(notes))
    return r


def _units_run(table: pd.DataFrame, archs, unit: str) -> int:
    """The units (images or seeds) at which every one of ``archs`` has a run, failed ones included: a planned unit
    is missing only while its run has not been made; a failed fit is made, left out and named."""
    sets = [set(table.loc[table.arch == a, unit]) for a in archs]
    return len(set.intersection(*sets)) if sets else 0


def budget_check(c: Contrast, pred: pd.DataFrame, pred_double: pd.DataFrame, alpha: float) -> dict:
    """The contrast on the seeds run at both budgets, at the budget and at twice it: ``sensitive`` when its sign or
    its decision (one-sided paired t at ``alpha``) differs between the two; {} when no seed ran both."""
    seeds = set(pred_double.seed)
    out = []
    for table in (pred[pred.seed.isin(seeds)], pred_double):
        per = {a: table[table.arch == a].set_index("seed") for a in c.archs}
        common = per[c.archs[0]].index
        for a in c.archs[1:]:
            common = common.intersection(per[a].index)
        if len(common) < 2:
            return {}
        v = sum(w * per[a].loc[common, c.metric].to_numpy(float) for a, w in c.weights)
        res = stats.t_interval(v)
        out.append((res["effect"], stats.verdict(*stats.test_claim(res, c.kind, c.margin), alpha), len(common)))
    (e1, d1, n), (e2, d2, _) = out
    sensitive = bool(np.sign(e1 - c.margin) != np.sign(e2 - c.margin) or d1 != d2)
    return dict(sensitive=sensitive, note=f"budget check on {n} seeds: {fmt_num(e1)} ({d1}) at the budget, "
                                          f"{fmt_num(e2)} ({d2}) at 2x" + (" - budget-sensitive" if sensitive else ""))


def fmt_num(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "nan"


def _names(names: list[str], show: int = 6) -> str:
    return ", ".join(names[:show]) + (f" and {len(names) - show} more" if len(names) > show else "")


def _decide(rows: list[dict], ci: float, alpha: float | None = None) -> None:
    """Set the verdicts of a claim's rows. Support of a conjunctive claim is an intersection-union test (Berger
    1982): each decisive row is tested at alpha on its own, no correction (``p_support``). Refutation (any row
    refuted refutes the claim) is Holm-corrected over all its decisive rows (``p_refute_holm``). Rows with a
    reason (truncated, missing runs, budget-sensitive, censored) stay inconclusive and enter the correction at p = 1;
    exploratory rows get no verdict word. An inconclusive row's note says about how many units would decide it
    (80% power, noncentral t, at the observed spread)."""
    alpha = ALPHA if alpha is None else alpha

    def testable(r):
        return not r["reason"] and (np.isfinite(r["p_support"]) or np.isfinite(r["p_refute"]))

    # the Holm family is every decisive row: one that cannot be tested (a reason, or no p) enters at p = 1, so a
    # claim is never refuted under a weaker correction because some of its rows are missing or truncated
    dec = [r for r in rows if r["decisive"]]
    fam = [r["p_refute"] if testable(r) and np.isfinite(r["p_refute"]) else 1.0 for r in dec]
    for r, p in zip(dec, stats.holm(fam)):
        if testable(r):
            r["p_refute_holm"] = float(p)
    for r in rows:
        r.setdefault("p_refute_holm", np.nan)
        res = r.pop("_res", None)
        if not r["decisive"]:
            r["verdict"], r["reason"] = "", "exploratory"
            continue
        if not testable(r):
            r["verdict"] = "inconclusive"
        else:
            r["verdict"] = ("supported" if r["p_support"] < alpha else
                            "refuted" if np.isfinite(r["p_refute_holm"]) and r["p_refute_holm"] < alpha
                            else "inconclusive")
            if r["verdict"] == "inconclusive":
                r["reason"] = "power"
        if r["verdict"] == "inconclusive" and r["reason"] in ("power", "missing units"):
            if res is not None:
                m = -abs(r["margin"]) if r["kind"] == "equivalent" else r["margin"]
                kind = "greater" if r["kind"] == "equivalent" else r["kind"]
                need = stats.n_for_power(res["effect"], res.get("sd", math.nan), m, kind, alpha)
                unit = res["method"].rsplit(" ", 1)[-1]
                why = (f"about {need:g} {unit} would give 80% power at this effect and spread" if np.isfinite(need)
                       else "the effect is not on the claimed side of the margin: no sample size supports it")
                r["power_note"] = why
                r["note"] = "; ".join(x for x in (r["note"], why) if x)
            elif r["metric"] == "gap_time":  # the exact Gehan test: n images all ordered give p = 2^-n
                need = math.ceil(math.log2(1 / alpha) + 1e-9)
                r["power_note"] = (f"the exact paired Gehan test needs at least {need} images ordered the claimed way "
                                   f"(p = 2^-n < {alpha:g}), more when some pairs go against")


def _overall(hyp: str, task, rows: list[dict], claim: str = "") -> dict:
    """A claim's overall row: supported when every decisive row is (intersection-union), refuted when one is
    (Holm), else inconclusive with the rows' reasons."""
    dec = [r for r in rows if r["decisive"] and not r.get("component")]
    v = [r["verdict"] for r in dec]
    verdict = ("refuted" if "refuted" in v else "supported" if dec and all(x == "supported" for x in v)
               else "inconclusive")
    reasons = sorted({r["reason"] for r in dec if r["verdict"] == "inconclusive" and r["reason"]})
    out = _row_base(Contrast(hyp, (), "", ""), task, claim)
    out.update(comparison="overall", metric="", kind="", margin=np.nan, decisive=True, verdict=verdict,
               reason=", ".join(reasons) if verdict == "inconclusive" else "",
               note=f"{len(dec)} decisive row(s): " + ", ".join(f"{r['comparison']} on {r['metric']}: {r['verdict']}"
                                                                for r in dec))
    return out


@dataclass(frozen=True)
class RhoClaim:
    """A claim on Spearman's rho across architectures between the generative gain and the predictive accuracy:
    rho ``kind`` ("less" or "greater") than ``threshold``, decided only with at least ``min_archs`` archs."""

    threshold: float
    min_archs: int
    kind: str = "less"
    exclude_truncated: bool = False  # leave out (and name) an architecture with a fit short of its peak; else the
    #   row is inconclusive (truncated)
    guard_plateau: bool = True  # an architecture whose classifiers were still rising makes the row "not plateaued";
    #   False: accuracy is read at the fixed budget and the still-rising ones are only named


def rho_rows(hyp: str, claim: str, rc: RhoClaim, dip_summary, clf_summary, task, n_train=None, n_boot=2000,
             ci=0.95, seed=0, decisive: bool = True, planned: dict | None = None) -> list[dict]:
    """The row of a :class:`RhoClaim` (rho with its percentile-bootstrap interval, :func:`rank_correlation`) and
    its overall row: supported when the interval lies on the claimed side of the threshold, refuted when on the
    other, else inconclusive (power); underpowered below ``min_archs`` archs; missing units while an architecture
    has fewer images or classifier seeds than ``planned`` ({"images": n, "seeds": m}: a study still running decides
    nothing); truncated / not plateaued when an arch's runs are."""
    c = _row_base(Contrast(hyp, (), "rho", rc.kind, rc.threshold), task, claim)
    c.update(comparison="spearman(gain_db, pred_acc) across archs", metric="rho", margin=rc.threshold,
             method="two-level percentile bootstrap (architectures, then units)", decisive=decisive)
    if dip_summary is None or clf_summary is None:
        c.update(reason="missing runs", note="needs both probes' tables")
    else:
        gen, pred = gen_scores(dip_summary, task), pred_scores(clf_summary, n_train)
        short = sorted(set(gen.arch[~gen.peak_reached.astype(bool)]) & set(pred.arch))
        left_out = []
        if rc.exclude_truncated and short:
            left_out, short = short, []
            gen = gen[~gen.arch.isin(left_out)]
        r = rank_correlation(gen, pred, n_boot=n_boot, ci=ci, seed=seed)
        c.update(rho=r["rho"], rho_ci_low=r["ci_low"], rho_ci_high=r["ci_high"], effect=r["rho"],
                 ci_low=r["ci_low"], ci_high=r["ci_high"], n_units=r["n_archs"],
                 note=f"archs: {_names(r['archs'], 12)}" + (
                     f"; left out (a fit short of its peak): {', '.join(left_out)}" if left_out else ""))
        flat = sorted(set(pred.arch[~pred.plateaued.astype(bool)]) & set(r["archs"]))
        if flat and not rc.guard_plateau:
            c["note"] += f"; classifiers still rising at the budget (read there, as planned): {_names(flat, 12)}"
            flat = []
        below, above = r["ci_high"] < rc.threshold, r["ci_low"] > rc.threshold
        want_images, want_seeds = (planned or {}).get("images"), (planned or {}).get("seeds")
        made = dip_summary[dip_summary.task == task]  # failed fits included: they are made
        scored = pred[pred.pred_acc.notna()]
        every = sorted((set(made.arch) | set(pred.arch)) - set(left_out))  # an arch with one probe only is short too
        short_units = [a for a in every if (want_images and _units_run(made, [a], "image") < want_images)
                       or (want_seeds and _units_run(scored, [a], "seed") < want_seeds)]
        if r["n_archs"] < rc.min_archs:
            c.update(reason="underpowered", note=c["note"] + f"; {r['n_archs']} archs < {rc.min_archs}",
                     power_note=f"needs at least {rc.min_archs} architectures (the plan's power calculation)")
        elif short_units:
            c.update(reason="missing units",
                     note=c["note"] + f"; {len(short_units)} architecture(s) short of the planned "
                                      f"{want_images or '?'} images and {want_seeds or '?'} classifier seeds: "
                                      f"{_names(short_units, 12)}")
        elif short or flat:
            c.update(reason="truncated" if short else "not plateaued",
                     note=c["note"] + f"; runs short of their peak: {', '.join(short) or 'none'}; classifiers "
                                      f"still rising: {', '.join(flat) or 'none'}")
        elif np.isfinite(r["ci_high"]):
            good, bad = (below, above) if rc.kind == "less" else (above, below)
            c["verdict"] = "supported" if good else "refuted" if bad else "inconclusive"
            if c["verdict"] == "inconclusive":
                c["reason"] = "power"
                need = stats.archs_for_rho_power(r["rho"], r["ci_low"], r["ci_high"], r["n_archs"], rc.threshold,
                                                 rc.kind, ci=ci)
                c["power_note"] = (
                    f"about {need:.0f} architectures would give 80% power at this rho and spread (its interval "
                    f"read on Fisher's z scale, narrowing as 1/sqrt(n - 3))" if np.isfinite(need) else
                    f"rho is not on the claimed side of {rc.threshold:g}: no number of architectures supports it"
                    if need == math.inf else "")
                c["note"] = "; ".join(x for x in (c["note"], c["power_note"]) if x)
    return [c, _overall(hyp, task, [c], claim)]


def verdict_table(contrasts: list[Contrast], texts: dict[str, str], dip_summary: pd.DataFrame | None,
                  clf_summary: pd.DataFrame | None, task: str | None = None, n_train: int | None = None,
                  rho: dict[str, RhoClaim] | None = None, n_boot: int = 2000, ci: float = 0.95,
                  seed: int = 0, horizon: float | None = None, pairs: dict[str, dict] | None = None,
                  alpha: float | None = None, dip_curves: pd.DataFrame | None = None,
                  gap_window: int | None = None, planned: dict | None = None) -> pd.DataFrame:
    """A study's verdicts on one DIP task (default :func:`primary_task`): for each claim in ``texts`` (its text),
    in order, the rows of its ``contrasts`` (:func:`evaluate`, decided by :func:`_decide`), or for a claim in
    ``pairs`` its opposite-ordering rows (:func:`pair_rows`), then its rho row when it has one in ``rho``
    (:func:`rho_rows`: decisive when the claim has no pair form or its pair spec says ``"decides": "rho"``; the
    pair form is then exploratory), then its ``overall`` row. ``gap_window``:
    the gap crossing the analysis reads (:func:`with_gap_window`). Columns ``VERDICT_COLUMNS``."""
    alpha = ALPHA if alpha is None else alpha
    dip_summary, clf_summary = nonempty(dip_summary), nonempty(clf_summary)
    task = task or primary_task(dip_summary)
    runs = None
    if dip_summary is not None:
        dip_summary = with_gap_window(dip_summary, dip_curves, gap_window)
        runs = gen_run_table(dip_summary)
        runs = runs[runs.task == task]
    clf_base, clf_double = split_budgets(clf_summary)
    pred = pred_scores(clf_base, n_train) if clf_base is not None else None
    pred2 = pred_scores(clf_double, n_train) if clf_double is not None else None
    out: list[dict] = []
    for hyp, text in texts.items():
        rows = [evaluate(c, runs, pred, ci, horizon, pred2, alpha, planned) for c in contrasts if c.hypothesis == hyp]
        for r in rows:
            r.update(task=task, claim=text)
        _decide(rows, ci, alpha)
        if pairs and hyp in pairs:
            rows += pair_rows(hyp, text, pairs[hyp], runs, pred, task, ci, alpha, pred2, planned)
        by_rho = bool(pairs and hyp in pairs and pairs[hyp].get("decides") == "rho")
        if by_rho:  # the pair form beside a decisive rho: its rows are shown, its summary decides nothing
            for r in rows:
                if r["comparison"] == "some pair ordered oppositely":
                    r.update(decisive=False, verdict="", reason="exploratory")
        if rho and hyp in rho:
            rrow = rho_rows(hyp, text, rho[hyp], dip_summary, clf_base, task, n_train, n_boot, ci, seed,
                            decisive=by_rho or not (pairs and hyp in pairs), planned=planned)[0]
            if not rrow["decisive"]:  # the population form beside a decisive pair form: estimate and interval
                rrow.update(verdict="", reason=rrow["reason"] or "exploratory")
            rows.append(rrow)
        out += rows + [_overall(hyp, task, rows, text)]
    df = pd.DataFrame(out)
    for col in VERDICT_COLUMNS:
        if col not in df:
            df[col] = np.nan
    for col in ("note", "reason", "power_note", "verdict"):
        df[col] = df[col].fillna("")
    return df[VERDICT_COLUMNS].reset_index(drop=True)


def mark_dead(dip_summary: pd.DataFrame | None, dip_curves: pd.DataFrame | None, images: pd.DataFrame | None,
              margin_db: float | None) -> pd.DataFrame | None:
    """Mark the dead fits: a fit whose best logged psnr_obs never beat, by ``margin_db``, the best constant image
    (each channel the observation's mean) fitted nothing but a colour (e.g. every ReLU of a narrow conv stack
    off), so neither its peak nor its gap time says anything about a prior. Adds ``const_psnr_obs``,
    ``max_psnr_obs`` and ``dead``, and marks dead fits ``failed`` (left out of every contrast, listed by name).
    ``margin_db`` None: the table unchanged. Fits whose curves or observation are not stored stay unmarked."""
    if dip_summary is None or margin_db is None or dip_curves is None or images is None or not len(images):
        return dip_summary
    key = ["arch", "task", "image", "seed"]
    obs = dip_curves[dip_curves.metric == "psnr_obs"].groupby(key).value.max().rename("max_psnr_obs")
    const = {}
    for r in images[images.kind == "observed"].to_dict("records"):
        x = np.frombuffer(r["data"], dtype=np.uint8).reshape(  # as report.decode_image (which imports this module)
            int(r["height"]), int(r["width"]), int(r["channels"])).astype(float) / 255.0
        mse = float(((x - x.mean(axis=(0, 1))) ** 2).mean())
        const[tuple(r[k] for k in key)] = 10 * math.log10(1.0 / mse) if mse > 0 else math.inf
    d = dip_summary.copy()
    ids = list(zip(*(d[k] for k in key)))
    d["max_psnr_obs"] = [obs.get(i, np.nan) for i in ids]
    d["const_psnr_obs"] = [const.get(i, np.nan) for i in ids]
    d["dead"] = (d.max_psnr_obs < d.const_psnr_obs + float(margin_db)).fillna(False).astype(bool)
    d["failed"] = d["failed"].astype(bool) | d["dead"] if "failed" in d else d["dead"]
    return d


def with_gap_window(dip_summary: pd.DataFrame, dip_curves: pd.DataFrame | None, window: int | None) -> pd.DataFrame:
    """The summary with each run's gap crossing read as the analysis plan says: sustained for ``window`` steps.
    A run whose own ``gap_window`` is that window keeps its crossing (found on every step); another run's is
    found again on its logged curve (``records.sustained_crossing`` over the log steps), so a one-step dip between
    log steps is never a crossing. None: as the runs recorded it."""
    if not window or dip_curves is None or not len(dip_curves):
        return dip_summary
    from biasprobe.probes.dip.records import sustained_crossing

    d = dip_summary.copy()
    own = d["gap_window"].fillna(1).astype(int) if "gap_window" in d else pd.Series(1, index=d.index)
    d["gap_read_window"] = int(window)
    redo = own != int(window)
    if not redo.any():
        return d
    gap = dip_curves[dip_curves.metric == "gap"]
    by = {k: g.sort_values("step") for k, g in gap.groupby(["arch", "task", "image", "seed"])}
    for i in d.index[redo]:
        g = by.get((d.at[i, "arch"], d.at[i, "task"], d.at[i, "image"], d.at[i, "seed"]))
        if g is None:
            continue
        t = sustained_crossing(g.step.to_numpy(), g.value.to_numpy(), int(window))
        d.at[i, "gap_negative_step"] = t
        d.at[i, "gap_censored"] = bool(np.isnan(t))
    return d


def pair_rows(hyp: str, claim: str, spec: dict, runs, pred, task, ci: float, alpha: float, pred2=None,
              planned: dict | None = None) -> list[dict]:
    """The opposite-ordering form of "the two probes differ": for every pair of architectures run by both probes
    and each direction, the generative contrast A - B > 0 on the gain and the predictive A - B < 0 on accuracy,
    both at alpha (intersection-union within the pair: its p is the larger of the two); Holm over all pairs and
    directions. A pair row is supported when its Holm-adjusted p < alpha (the claim then holds); refuted when both
    probes decide the pair the *same* way at alpha (a pair ordered alike); the claim is refuted only when every
    pair is."""
    archs = sorted(set(runs.arch) & set(pred.arch)) if runs is not None and pred is not None else []
    rows = []
    for i, a in enumerate(archs):
        for b in archs[i + 1:]:
            gen = evaluate(diff(hyp, a, b, "gain_db", "greater"), runs, pred, ci, planned=planned)
            prd = evaluate(diff(hyp, a, b, "pred_acc", "greater"), runs, pred, ci, pred_double=pred2, alpha=alpha,
                           planned=planned)
            r = _row_base(Contrast(hyp, ((a, 1.0), (b, -1.0)), "gain_db vs pred_acc", "opposite"), task, claim)
            reasons = sorted({x["reason"] for x in (gen, prd) if x["reason"]})
            # direction 1: a > b generatively, a < b predictively; direction 2: the reverse
            p1 = max(gen["p_support"], prd["p_refute"])
            p2 = max(gen["p_refute"], prd["p_support"])
            alike = min(max(gen["p_support"], prd["p_support"]), max(gen["p_refute"], prd["p_refute"]))
            r.update(comparison=f"{a} vs {b}", effect=gen["effect"], ci_low=gen["ci_low"], ci_high=gen["ci_high"],
                     n_units=gen["n_units"], method="IUT in the pair (gain: paired t over images; accuracy: "
                                                   "paired t over seeds); Holm over pairs",
                     p_support=np.nan, _p=(p1, p2), _power=_pair_power(gen, prd, alpha),
                     p_refute=float(alike), reason=", ".join(reasons),
                     note=f"gain {fmt_num(gen['effect'])} dB [{fmt_num(gen['ci_low'])}, {fmt_num(gen['ci_high'])}]"
                          f"; accuracy {fmt_num(prd['effect'])} [{fmt_num(prd['ci_low'])}, "
                          f"{fmt_num(prd['ci_high'])}]" + (f"; {prd['note']}" if prd["note"] else ""))
            rows.append(r)
    # Holm over every pair and both directions; a pair that cannot be tested (a reason) enters at p = 1
    fam = [p if not r["reason"] and np.isfinite(p) else 1.0 for r in rows for p in r["_p"]]
    adj = stats.holm(fam)
    for k, r in enumerate(rows):
        if not r["reason"]:
            r["p_support"] = float(np.min(adj[2 * k: 2 * k + 2]))
    for r in rows:
        r.pop("_p", None)
        power = r.pop("_power", "")
        r["verdict"] = ("supported" if r["p_support"] < alpha else "refuted" if r["p_refute"] < alpha
                        else "inconclusive") if not r["reason"] and np.isfinite(r["p_support"]) else "inconclusive"
        r["reason"] = r["reason"] or ("power" if r["verdict"] == "inconclusive" else "")
        r["power_note"] = power if r["verdict"] == "inconclusive" else ""
    # the claim's decisive row: some pair supported -> supported; every pair refuted -> refuted
    c = _row_base(Contrast(hyp, (), "opposite pairs", "any"), task, claim)
    v = [r["verdict"] for r in rows]
    c.update(comparison="some pair ordered oppositely", metric="pairs", n_units=len(rows),
             method="union over pairs (Holm); refuted only when every pair is ordered alike",
             verdict="supported" if "supported" in v else "refuted" if rows and all(x == "refuted" for x in v)
             else "inconclusive",
             note=f"{v.count('supported')} pair(s) ordered oppositely, {v.count('refuted')} alike, "
                  f"{v.count('inconclusive')} undecided of {len(rows)}")
    if c["verdict"] == "inconclusive":
        # why the undecided pairs are undecided (missing units, truncated, ...); power when they were all tested
        why = sorted({x for r in rows if r["verdict"] == "inconclusive" for x in r["reason"].split(", ") if x})
        c["reason"] = (", ".join(why) if why else "power") if rows else "missing runs"
        c["power_note"] = "; ".join(f"{r['comparison']}: {r['power_note']}" for r in rows
                                    if r["verdict"] == "inconclusive" and r["power_note"])
    for r in rows:
        r["component"] = True  # shown per pair; the claim's overall reads the summary row
        r["verdict"] = dict(zip(VERDICTS, PAIR_VERDICTS)).get(r["verdict"], "undecided")
    return rows + [c]


def _pair_power(gen: dict, prd: dict, alpha: float) -> str:
    """Why a pair is undecided and what would decide it: for each probe whose contrast is not decided at alpha, the
    units giving it 80% power at its observed effect and spread (in the direction of its estimate), or its reason;
    and whether the estimates point to an opposite ordering at all (else more units would order the pair alike)."""
    parts = []
    for name, x in (("gain", gen), ("accuracy", prd)):
        res = x.get("_res")
        if x["reason"] and (x["reason"] != "missing units" or res is None):
            parts.append(f"{name} {x['reason']}")  # e.g. budget-sensitive: decided at the budget, not at 2x
            continue
        if x["p_support"] < alpha or x["p_refute"] < alpha or res is None:
            continue  # decided
        need = stats.n_for_power(res["effect"], res.get("sd", math.nan), 0.0,
                                 "greater" if res["effect"] > 0 else "less", alpha)
        unit = res["method"].rsplit(" ", 1)[-1]
        parts.append(f"{name} {fmt_num(res['effect'])}: " + (f"about {need:g} {unit} for 80% power" if np.isfinite(need)
                                                           else "no sample size decides it at this estimate"))
    if not parts:
        return ""
    sign = np.sign(gen["effect"]) * np.sign(prd["effect"])
    if not np.isfinite(sign):
        return "; ".join(parts)
    return ("estimates point opposite" if sign < 0 else "estimates point alike (more units would order it alike, "
            "not oppositely)" if sign > 0 else "an estimate is zero") + "; " + "; ".join(parts)


def tasks_in_order(dip_summary: pd.DataFrame | None) -> list[str | None]:
    """The DIP tasks that ran, :func:`primary_task` first ([None] without DIP runs)."""
    dip_summary = nonempty(dip_summary)
    if dip_summary is None:
        return [None]
    first = primary_task(dip_summary)
    return [first] + sorted(set(dip_summary["task"]) - {first})


def sensitivity(verdicts_at_best_lr: pd.DataFrame, verdicts_at_second_lr: pd.DataFrame) -> pd.DataFrame:
    """Per hypothesis: overall verdict at the best and at the second-best learning rate, and ``robust`` if they
    agree, ``sensitive`` if not (or if a hypothesis is in only one table)."""
    a, b = overall(verdicts_at_best_lr), overall(verdicts_at_second_lr)
    rows = []
    for h in sorted(set(a.index) | set(b.index)):
        va, vb = a.get(h, "missing"), b.get(h, "missing")
        rows.append(dict(hypothesis=h, verdict_best_lr=va, verdict_second_lr=vb,
                         status="robust" if va == vb and va != "missing" else "sensitive"))
    return pd.DataFrame(rows, columns=["hypothesis", "verdict_best_lr", "verdict_second_lr", "status"])


def overall(verdict_table: pd.DataFrame) -> pd.Series:
    """hypothesis -> overall verdict (of the table's first task when it holds several)."""
    o = verdict_table[verdict_table.comparison == "overall"]
    if "task" in o and o["task"].notna().any():
        o = o[o.task == o.task.dropna().iloc[0]]
    return o.set_index("hypothesis")["verdict"]


# ------------------------------------------------------------------------------------------------ analyses

RUN_COLUMNS = ["arch", "task", "image", "seed", "lr", "iters", "patience", "steps_run", "stop_step", "max_psnr_gt", "max_psnr_gt_step",
               "peak_reached", "peak_status", "collapsed", "collapse_step", "gain_db", "gap_negative_step", "gap_censored",
               "es_step", "backtracks", "failed", "dead", "dead_stop",
               "sec_per_step"]


def run_table(dip_summary: pd.DataFrame | None) -> pd.DataFrame:
    """Each DIP run's stop, peak step, gap-crossing step (NaN: censored at its stop) and status, for the report."""
    if dip_summary is None:
        return pd.DataFrame(columns=RUN_COLUMNS)
    cols = [c for c in RUN_COLUMNS if c in dip_summary]
    return dip_summary[cols].sort_values(["task", "arch", "image", "seed"]).reset_index(drop=True)


