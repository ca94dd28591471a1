"""Scores, cross-tab and computed verdicts of the generative-vs-predictive study (pandas, numpy, scipy); the
metrics' names, labels and sources come from their declarations (``metrics.METRICS``).

Inputs are the study runner's tidy tables (see ``report.py`` for the full list):

* ``dip_summary``: one row per (arch, task, image, seed) DIP run: gain_db (= max psnr_gt - psnr of the corrupted
  input), gap_area, gap_negative_step, iters, n_params, ...
* ``clf_summary``: one row per (arch, n_train, seed) classification run: final_test_acc, ece,
  shift_consistency_circular, n_params, ...
* ``dip_curves`` (optional): long (arch, task, image, seed, step, metric, value), for grid energy / boundary jump.

Scores
------
* generative score of a unit (arch, image, seed) = gain_db averaged over tasks (dB). Also gap_area (dB*steps,
  area of the positive part of psnr_gt - psnr_obs) and gap_negative_step, the first step where the gap turns
  negative. A run whose gap never turns negative has gap_negative_step NaN; it is *censored* at the run length:
  we use ``iters`` for it (a lower bound of the true step), and report the censored share.
* predictive score of a unit (arch, seed) = final_test_acc at a fixed N (default 1000 if run, else the middle N),
  and the sample-efficiency AUC of that seed's accuracy-vs-N curve: trapz(acc, log N) / (log N_max - log N_min),
  the formula of :func:`biasprobe.predictive.sample_efficiency_auc` (which averages seeds first; here each seed
  gets its own AUC so seeds can be resampled and paired).

Bootstrap (percentile intervals, Efron & Tibshirani 1993, ch. 13)
----------------------------------------------------------------
* an arch's mean: resample its units with replacement;
* a paired difference A - B: units present for both. Generative: the difference is taken per (task, image, seed)
  on the tasks both ran, averaged over tasks to one difference per (image, seed) unit; the units are resampled.
  Predictive: one difference per seed, seeds resampled;
* Spearman's rho across archs between the generative and predictive scores: each resample draws, within every
  arch, its units with replacement, recomputes the arch means, then rho (ties ranked by their average).
All draws come from ``numpy.random.default_rng(seed)``: same inputs and seed, same intervals.

Verdicts
--------
Each row is a signed comparison with a predicted direction:

* predicted ``> 0``: supported if the CI lies entirely above 0, refuted if entirely below, else inconclusive;
* predicted ``<= 0`` ("B is no better than A"): refuted if the CI lies entirely above 0, supported if entirely
  below 0 (B measurably worse), inconclusive if it contains 0 — absence of a difference is never "supported".

A row whose archs have no runs is kept with NaN numbers, verdict inconclusive and a ``note``; the overall row of a
hypothesis is computed from the rows that were evaluated and says in its note which were skipped.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats

from biasprobe.errors import BiasprobeError
from biasprobe.metrics import METRICS, declared
from biasprobe.probes import PROBES
from biasprobe.registry import get_arch

VERDICTS = ("supported", "refuted", "inconclusive")
TRANSFORMERS = ("vit", "swin")
UNIT_GEN = ["image", "seed"]
VERDICT_COLUMNS = ["hypothesis", "claim", "comparison", "metric", "predicted", "effect", "ci_low", "ci_high",
                   "n_units", "verdict", "note", "rho", "rho_ci_low", "rho_ci_high"]

CLAIMS = {
    "a": "transformers (vit, swin) have far less generative bias than the CNN skipnet: skipnet - T > 0 on the "
         "generative score",
    "b": "swin's generative bias is no better than vit's: swin - vit <= 0 on the generative score ('no better' is "
         "only supported when swin is measurably worse; a CI containing 0 is inconclusive)",
    "c": "generative and predictive biases differ: Spearman rho across archs between the generative score and the "
         "predictive accuracy is below {thr} (effect = {thr} - rho > 0; rankings agree at most moderately)",
    "d": "swin has better predictive bias than vit (swin - vit > 0 on accuracy and AUC) but no better generative "
         "bias (the (b) row must not be refuted)",
    "e": "conv layers after a transformer (T+1c, T+3c) raise its generative score and keep the gap positive "
         "longer, conv layers before it (3c+T) do not raise it ('does not raise' only supported when measurably "
         "lower); the reverse for predictive accuracy",
}


def conv_variants(t: str) -> list[str]:
    """Transformer ``t`` and its conv-placement hybrids: t, 3c+t (convs before), t+1c, t+3c (convs after)."""
    return [t, f"3c+{t}", f"{t}+1c", f"{t}+3c"]


CONV_PLACEMENT_ARCHS = tuple(a for t in TRANSFORMERS for a in conv_variants(t))


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


def bootstrap_mean(values, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict:
    """Mean of ``values`` with a percentile bootstrap CI over the values (units). One value: the CI is the point."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return dict(effect=float("nan"), ci_low=float("nan"), ci_high=float("nan"), n_units=0)
    rng = np.random.default_rng(seed)
    boot = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)
    lo, hi = percentile_ci(boot, ci)
    return dict(effect=float(v.mean()), ci_low=lo, ci_high=hi, n_units=int(v.size))


# ------------------------------------------------------------------------------------------------ scores

def gen_run_table(dip_summary: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, task, image, seed) run: the declared DIP unit metrics (``metrics.declared("dip", "unit")``:
    gen_score = gain_db, gap_area, gap_negative_step) from their source columns; a censored metric's NaN (the
    gap never turned negative) becomes the run's iters, flagged in its ``censored`` column."""
    gen = declared("dip", "unit")
    _require(dip_summary, ["arch", "task", "image", "seed"] + [m.source for m in gen], "dip_summary")
    runs = dip_summary[["arch", "task", "image", "seed"]].copy()
    for m in gen:
        values = dip_summary[m.source].astype(float)
        if m.censored:
            runs[m.censored] = values.isna()
            if "iters" in dip_summary:
                values = values.fillna(dip_summary["iters"].astype(float))
        runs[m.name] = values
    return runs


def gen_scores(dip_summary: pd.DataFrame) -> pd.DataFrame:
    """One row per unit (arch, image, seed): gen_score (gain_db averaged over tasks), gap_area, gap_negative_step
    (censored at iters when the gap never turns negative), gap_negative_censored (share of tasks censored),
    n_tasks."""
    runs = gen_run_table(dip_summary)
    g = runs.groupby(["arch"] + UNIT_GEN, sort=True)
    out = g[[c for m in declared("dip", "unit") for c in (m.name, m.censored) if c]].mean()
    out["n_tasks"] = g.size()
    return out.reset_index()


def default_n_train(clf_summary: pd.DataFrame) -> int:
    """1000 if runs at N=1000 exist, else the middle of the sorted N values (the upper middle for an even count)."""
    ns = sorted(pd.unique(clf_summary["n_train"]))
    if not ns:
        raise BiasprobeError("the clf_summary table is empty: run the predictive probe first")
    return 1000 if 1000 in ns else int(ns[len(ns) // 2])


def seed_auc(n_train, acc) -> float:
    """trapz(acc, log N) / (log N_max - log N_min) for one seed's curve (the formula of
    ``biasprobe.predictive.sample_efficiency_auc``); NaN with fewer than two N."""
    n = np.asarray(n_train, float)
    a = np.asarray(acc, float)
    keep = np.isfinite(a)
    n, a = n[keep], a[keep]
    if np.unique(n).size < 2:
        return float("nan")
    from biasprobe.predictive import log_n_auc  # the one formula (imported here: predictive loads torch)

    order = np.argsort(n)
    return float(log_n_auc(a[order], np.log(n[order])))


def pred_scores(clf_summary: pd.DataFrame, n_train: int | None = None) -> pd.DataFrame:
    """One row per unit (arch, seed): pred_acc = final_test_acc at ``n_train`` (default :func:`default_n_train`;
    NaN if that seed has no run there), auc = :func:`seed_auc` over all N of the seed, n_sizes."""
    _require(clf_summary, ["arch", "n_train", "seed", "final_test_acc"], "clf_summary")
    n_fixed = default_n_train(clf_summary) if n_train is None else int(n_train)
    rows = []
    for (arch, seed), g in clf_summary.groupby(["arch", "seed"], sort=True):
        per_n = g.groupby("n_train")["final_test_acc"].mean()
        rows.append(dict(arch=arch, seed=seed, n_train=n_fixed,
                         pred_acc=float(per_n.get(n_fixed, np.nan)),
                         auc=seed_auc(per_n.index.to_numpy(), per_n.to_numpy()), n_sizes=len(per_n)))
    return pd.DataFrame(rows, columns=["arch", "seed", "n_train", "pred_acc", "auc", "n_sizes"])


# -------------------------------------------------------------------------------------- paired effects

def paired_units(a: str, b: str, metric: str, dip_summary: pd.DataFrame | None = None,
                 clf_summary: pd.DataFrame | None = None, n_train: int | None = None) -> pd.Series:
    """Per-unit paired differences a - b of ``metric``.

    Generative metrics (gen_score, gap_area, gap_negative_step): per (task, image, seed) present for both, then
    averaged over tasks per (image, seed). Predictive metrics (pred_acc, auc): per seed present for both."""
    m = _unit_metric(metric)
    if m.probe == "dip":
        runs = gen_run_table(dip_summary)
        keys = ["task"] + UNIT_GEN
        left = runs[runs.arch == a].groupby(keys)[metric].mean()
        right = runs[runs.arch == b].groupby(keys)[metric].mean()
        diff = (left - right).dropna()
        if diff.empty:
            return diff
        return diff.groupby(level=UNIT_GEN).mean()
    units = pred_scores(clf_summary, n_train).set_index(["arch", "seed"])[metric]
    left = units.xs(a, level="arch") if a in units.index.get_level_values(0) else pd.Series(dtype=float)
    right = units.xs(b, level="arch") if b in units.index.get_level_values(0) else pd.Series(dtype=float)
    return (left - right).dropna()


def _unit_metric(metric: str):
    """The declared metric ``metric`` if it has per-unit values (a paired comparison can use it)."""
    units = {m.name: m for m in declared(read="unit")}
    if metric not in units:
        raise BiasprobeError(f"unknown metric {metric!r}: use one of {sorted(units)}")
    return units[metric]


def paired_effect(a: str, b: str, metric: str, dip_summary=None, clf_summary=None, n_train=None,
                  n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict:
    """Mean paired difference a - b of ``metric`` with a bootstrap CI over units (see :func:`paired_units`)."""
    return bootstrap_mean(paired_units(a, b, metric, dip_summary, clf_summary, n_train), n_boot, ci, seed)


def rank_correlation(gen_units: pd.DataFrame, pred_units: pd.DataFrame, gen_col: str = "gen_score",
                     pred_col: str = "pred_acc", n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict:
    """Spearman rho across archs between the arch means of ``gen_col`` (units from :func:`gen_scores`) and of
    ``pred_col`` (units from :func:`pred_scores`), with a bootstrap CI resampling units within each arch.
    Archs need units in both tables. Returns rho, ci_low, ci_high, n_archs, archs."""
    gen = {a: g[gen_col].dropna().to_numpy(float) for a, g in gen_units.groupby("arch", sort=True)}
    pred = {a: g[pred_col].dropna().to_numpy(float) for a, g in pred_units.groupby("arch", sort=True)}
    archs = [a for a in gen if a in pred and gen[a].size and pred[a].size]
    out = dict(rho=float("nan"), ci_low=float("nan"), ci_high=float("nan"), n_archs=len(archs), archs=archs)
    if len(archs) < 3:
        return out
    x = np.array([gen[a].mean() for a in archs])
    y = np.array([pred[a].mean() for a in archs])
    out["rho"] = float(stats.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)

    def boot_means(d):
        return np.stack([d[a][rng.integers(0, d[a].size, (n_boot, d[a].size))].mean(1) for a in archs], axis=1)

    rx = stats.rankdata(boot_means(gen), axis=1)
    ry = stats.rankdata(boot_means(pred), axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rhos = np.where(den > 0, (rx * ry).sum(1) / np.where(den > 0, den, 1), np.nan)
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
              seed: int = 0, families: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per arch (union of both probes'): family, then each declared metric (``metrics.METRICS``, in
    order) as the mean over the arch's units, runs or last logged values (see ``metrics.Metric.read``), with a
    bootstrap CI where it declares one, n_train (the fixed N) before the first metric read at it, and the
    parameters of the generator (n_params_gen) and classifier (n_params_clf). Today: generative score + CI over
    (image, seed) units, gap_area, gap_negative_step (censored at iters) and its censored share; accuracy at
    ``n_train`` + CI over seeds, per-seed AUC + CI; shift consistency (circular, padded), ECE at ``n_train``; grid
    energy and boundary jump at ``period``. ``families`` maps arch -> family (default: :func:`family_of`)."""
    dip_summary, clf_summary, dip_curves = nonempty(dip_summary), nonempty(clf_summary), nonempty(dip_curves)
    units = {"dip": gen_scores(dip_summary) if dip_summary is not None else pd.DataFrame(columns=["arch"]),
             "classify": pred_scores(clf_summary, n_train) if clf_summary is not None
             else pd.DataFrame(columns=["arch"])}
    runs = {"dip": dip_summary, "classify": clf_summary}
    pred = units["classify"]
    n_fixed = pred["n_train"].iloc[0] if len(pred) else np.nan
    archs = sorted(set(units["dip"]["arch"]) | set(pred["arch"]))
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
                row.update(_unit_cells(m, u[u.arch == arch], n_boot, ci, seed))
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


def _unit_cells(m, units: pd.DataFrame, n_boot: int, ci: float, seed: int) -> dict:
    """The cross-tab cells of unit metric ``m`` from one arch's units: its mean, with CI and unit count when
    declared, and its censored share."""
    if not m.ci:
        cells = {m.name: units[m.name].mean() if len(units) else np.nan}
    else:
        b = bootstrap_mean(units[m.name] if len(units) else [], n_boot, ci, seed)
        cells = {m.name: b["effect"], f"{m.ci}_ci_low": b["ci_low"], f"{m.ci}_ci_high": b["ci_high"]}
        if m.count:
            cells[m.count] = b["n_units"]
    if m.censored:
        cells[m.censored] = units[m.censored].mean() if len(units) else np.nan
    return cells


# ------------------------------------------------------------------------------------------------ verdicts

def decide(ci_low: float, ci_high: float, predicted: str) -> str:
    """Verdict of one comparison from its CI (see module docstring). ``predicted``: '> 0' or '<= 0'."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "inconclusive"
    above, below = ci_low > 0, ci_high < 0
    if predicted == "> 0":
        return "supported" if above else "refuted" if below else "inconclusive"
    if predicted == "<= 0":
        return "refuted" if above else "supported" if below else "inconclusive"
    raise ValueError(f"predicted must be '> 0' or '<= 0', got {predicted!r}")


def _combine_all(rows: list[dict]) -> str:
    """Overall verdict for (a)/(e): refuted if any row is, supported if all are, else inconclusive."""
    v = [r["verdict"] for r in rows]
    if "refuted" in v:
        return "refuted"
    return "supported" if v and all(x == "supported" for x in v) else "inconclusive"


class _Study:
    """Holds the tables and bootstrap settings so each comparison is one call."""

    def __init__(self, dip_summary, clf_summary, n_train, n_boot, ci, seed):
        self.dip, self.clf, self.n_train = dip_summary, clf_summary, n_train
        self.n_boot, self.ci, self.seed = n_boot, ci, seed
        self.archs = {"dip": set(dip_summary["arch"]) if dip_summary is not None else set(),
                      "classify": set(clf_summary["arch"]) if clf_summary is not None else set()}

    def row(self, hyp: str, a: str, b: str, metric: str, predicted: str) -> dict:
        probe = _unit_metric(metric).probe
        have = self.archs[probe]
        r = dict(hypothesis=hyp, claim=CLAIMS[hyp], comparison=f"{a} - {b}", metric=metric, predicted=predicted,
                 effect=np.nan, ci_low=np.nan, ci_high=np.nan, n_units=0, verdict="inconclusive", note="")
        missing = [x for x in (a, b) if x not in have]
        if missing:
            r.update(note=f"skipped: no {PROBES[probe].label} runs for {', '.join(missing)}", skipped=True,
                     missing=missing)
            return r
        m = paired_effect(a, b, metric, self.dip, self.clf, self.n_train, self.n_boot, self.ci, self.seed)
        r.update(m)
        if m["n_units"] == 0:
            r.update(note=f"skipped: no units run by both {a} and {b}", skipped=True)
            return r
        r["verdict"] = decide(m["ci_low"], m["ci_high"], predicted)
        notes = ["one unit: the CI is the point"] if m["n_units"] == 1 else []
        censored = METRICS[metric].censored
        if censored:
            runs = gen_run_table(self.dip)
            cens = runs[runs.arch.isin([a, b])][censored].mean()
            if cens > 0:
                notes.append(f"gap never turned negative in {cens:.0%} of the runs: censored at iters")
        r["note"] = "; ".join(notes)
        return r


def _overall(hyp: str, rows: list[dict], rule) -> dict:
    """The overall row: ``rule`` applied to the evaluated rows; n_units is left empty (rows mix unit kinds)."""
    evaluated = [r for r in rows if not r.get("skipped")]
    verdict = rule(evaluated) if evaluated else "inconclusive"
    note = f"{len(evaluated)} of {len(rows)} comparisons evaluated"
    missing = sorted({a for r in rows for a in r.get("missing", [])})
    if missing:
        note += f"; no runs for {', '.join(missing)}"
    return dict(hypothesis=hyp, claim=CLAIMS[hyp], comparison="overall", metric="", predicted="",
                effect=np.nan, ci_low=np.nan, ci_high=np.nan, n_units=np.nan, verdict=verdict, note=note,
                skipped=False)


def verdicts(dip_summary: pd.DataFrame, clf_summary: pd.DataFrame, n_train: int | None = None,
             n_boot: int = 2000, ci: float = 0.95, seed: int = 0, rho_threshold: float = 0.5) -> pd.DataFrame:
    """Rows for hypotheses (a)-(e) plus one ``overall`` row each (columns ``VERDICT_COLUMNS``); see the module
    docstring for the rules and ``CLAIMS`` for the exact claims."""
    dip_summary, clf_summary = nonempty(dip_summary), nonempty(clf_summary)
    st = _Study(dip_summary, clf_summary, n_train, n_boot, ci, seed)
    out: list[dict] = []

    # (a) skipnet - T > 0 on the generative score
    rows = [st.row("a", "skipnet", t, "gen_score", "> 0") for t in TRANSFORMERS]
    out += rows + [_overall("a", rows, _combine_all)]

    # (b) swin - vit <= 0 on the generative score
    b_row = st.row("b", "swin", "vit", "gen_score", "<= 0")
    out += [b_row, _overall("b", [b_row], _combine_all)]

    # (c) effect = threshold - rho > 0
    claim_c = CLAIMS["c"].format(thr=rho_threshold)
    c = dict(hypothesis="c", claim=claim_c, comparison="spearman(gen_score, pred_acc) across archs",
             metric="rho_threshold - rho", predicted="> 0", effect=np.nan, ci_low=np.nan, ci_high=np.nan,
             n_units=0, verdict="inconclusive", note="", skipped=False)
    if dip_summary is not None and clf_summary is not None:
        rc = rank_correlation(gen_scores(dip_summary), pred_scores(clf_summary, n_train), n_boot=n_boot, ci=ci,
                              seed=seed)
        c.update(rho=rc["rho"], rho_ci_low=rc["ci_low"], rho_ci_high=rc["ci_high"], n_units=rc["n_archs"])
        if rc["n_archs"] < 4:
            c["note"] = f"needs >= 4 archs run by both probes, got {rc['n_archs']}"
            c["skipped"] = True
        else:
            c.update(effect=rho_threshold - rc["rho"], ci_low=rho_threshold - rc["ci_high"],
                     ci_high=rho_threshold - rc["ci_low"])
            c["verdict"] = decide(c["ci_low"], c["ci_high"], "> 0")
            c["note"] = f"archs: {', '.join(rc['archs'])}"
    else:
        c["note"] = "needs both probes' tables"
        c["skipped"] = True
    overall_c = _overall("c", [c], _combine_all)
    overall_c["claim"] = claim_c
    c_rows = [c, overall_c]
    for r in c_rows:
        r["claim"] = claim_c
    out += c_rows

    # (d) swin - vit > 0 on accuracy and AUC; the (b) row not refuted
    d_pred = [st.row("d", "swin", "vit", m, "> 0") for m in ("pred_acc", "auc")]
    d_gen = dict(b_row, hypothesis="d", claim=CLAIMS["d"])

    def rule_d(evaluated):
        pred = [r for r in evaluated if r["metric"] != "gen_score"]
        gen = [r for r in evaluated if r["metric"] == "gen_score"]
        if any(r["verdict"] == "refuted" for r in evaluated):
            return "refuted"
        if pred and len(pred) == len(d_pred) and all(r["verdict"] == "supported" for r in pred) and gen:
            return "supported"
        return "inconclusive"

    rows = d_pred + [d_gen]
    out += rows + [_overall("d", rows, rule_d)]

    # (e) conv placement, for each transformer present in either probe
    rows = []
    for t in TRANSFORMERS:
        if t not in st.archs["dip"] | st.archs["classify"]:
            continue
        _, before, after1, after3 = conv_variants(t)
        rows += [st.row("e", after1, t, "gen_score", "> 0"), st.row("e", after3, t, "gen_score", "> 0"),
                 st.row("e", after1, t, "gap_negative_step", "> 0"),
                 st.row("e", after3, t, "gap_negative_step", "> 0"),
                 st.row("e", before, t, "gen_score", "<= 0"),
                 st.row("e", before, t, "pred_acc", "> 0"), st.row("e", after3, t, "pred_acc", "<= 0"),
                 st.row("e", after1, t, "pred_acc", "<= 0")]
    overall_e = _overall("e", rows, _combine_all)
    if not rows:
        overall_e["note"] = "no runs for vit or swin"
    out += rows + [overall_e]

    df = pd.DataFrame(out)
    for col in VERDICT_COLUMNS:
        if col not in df:
            df[col] = np.nan
    df["note"] = df["note"].fillna("")
    return df[VERDICT_COLUMNS].reset_index(drop=True)


def overall(verdict_table: pd.DataFrame) -> pd.Series:
    """hypothesis -> overall verdict."""
    o = verdict_table[verdict_table.comparison == "overall"]
    return o.set_index("hypothesis")["verdict"]


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


# ------------------------------------------------------------------------------------------------ analyses

def analyse(tables: dict, n_boot: int = 2000, ci: float = 0.95, seed: int = 0, n_train: int | None = None,
            period: int = 8, rho_threshold: float = 0.5) -> dict:
    """The generative-vs-predictive study's analysis of the runner's tables (dip_summary, clf_summary,
    dip_curves; ``second``: the same tables at each arch's second-best lr): ``cross_tab``, ``verdicts`` and,
    when ``second`` has runs, ``verdicts_second_lr`` and ``sensitivity``; ``options``: the settings used."""
    options = dict(n_boot=int(n_boot), ci=float(ci), seed=int(seed), n_train=n_train, period=int(period),
                   rho_threshold=float(rho_threshold))
    boot = dict(n_boot=options["n_boot"], ci=options["ci"], seed=options["seed"])
    dip, clf = nonempty(tables.get("dip_summary")), nonempty(tables.get("clf_summary"))
    out = {"options": options,
           "cross_tab": cross_tab(dip, clf, nonempty(tables.get("dip_curves")), n_train=n_train,
                                  period=options["period"], **boot),
           "verdicts": verdicts(dip, clf, n_train=n_train, rho_threshold=options["rho_threshold"], **boot)}
    second = tables.get("second")
    if isinstance(second, dict):
        dip2, clf2 = nonempty(second.get("dip_summary")), nonempty(second.get("clf_summary"))
        if dip2 is not None or clf2 is not None:
            out["verdicts_second_lr"] = verdicts(dip2, clf2, n_train=n_train,
                                                 rho_threshold=options["rho_threshold"], **boot)
            out["sensitivity"] = sensitivity(out["verdicts"], out["verdicts_second_lr"])
    return out


def conv_placement_table(dip_summary: pd.DataFrame | None, transformers=TRANSFORMERS) -> pd.DataFrame:
    """The conv-placement study's analysis: max psnr_gt per (transformer, variant, task), mean and sd over images
    and seeds, gain, step of the max; for each transformer T run with at least one of its hybrids
    (:func:`conv_variants`)."""
    dip_summary = nonempty(dip_summary)
    rows = []
    for t in transformers if dip_summary is not None else ():
        variants = [v for v in conv_variants(t) if v in set(dip_summary.arch)]
        if len(variants) < 2:  # T alone, or one hybrid alone: nothing to compare
            continue
        for variant in variants:
            d = dip_summary[dip_summary.arch == variant]
            for task, g in d.groupby("task", sort=True):
                rows.append(dict(transformer=t, arch=variant, task=task, max_psnr_gt=g.max_psnr_gt.mean(),
                                 max_psnr_gt_sd=g.max_psnr_gt.std(ddof=1) if len(g) > 1 else np.nan,
                                 gain_db=g.gain_db.mean(), max_psnr_gt_step=g.max_psnr_gt_step.mean(), n_runs=len(g)))
    return pd.DataFrame(rows, columns=["transformer", "arch", "task", "max_psnr_gt", "max_psnr_gt_sd", "gain_db",
                                       "max_psnr_gt_step", "n_runs"])
