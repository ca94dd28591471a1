"""The main study: generative (DIP) vs predictive (small-data CIFAR-10) inductive bias on the same architectures,
and the seed study's five claims (a)-(e) as testable contrasts.

Grid: the preset's architectures through both probes. Claims (``CLAIMS``, contrasts in :func:`claims`, margins
below), decided per DIP task by ``verdicts.verdict_table`` (denoising, the seed's task, is the primary one; tasks
are never averaged). Report: the claims table first, per-task tables, the cross-tab, each DIP run's peak and gap
crossing, the classifiers' plateau check, readings, figures, provenance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biasprobe.analysis import report as R
from biasprobe.analysis import verdicts as V
from biasprobe.errors import BiasprobeError
from biasprobe.runinfo import write_atomic
from biasprobe.analysis.verdicts import Contrast, RhoClaim, diff


TRANSFORMERS = ("vit", "swin")

# The stated margins (see each claim's text)
FAR_LESS_RATIO = 0.5  # (a) "far less": a transformer's gain is below this share of skipnet's
NO_BETTER_DB = 1.0  # (b), (d), (e): "no better" / "does not add" = less than this many dB above the other
RHO_THRESHOLD = 0.5  # (c): rankings "differ" when rho < this
MIN_ARCHS_RHO = 10  # (c): below this many architectures rho's interval cannot decide (about +-0.6 at 9)
RHO = {"c": RhoClaim(RHO_THRESHOLD, MIN_ARCHS_RHO, "less")}

CLAIMS = {
    "a": f"transformers have far less generative bias than the CNN skipnet: a transformer's gain over the noisy "
         f"input is below {FAR_LESS_RATIO:g} x skipnet's ({FAR_LESS_RATIO:g}*skipnet - T > 0 dB)",
    "b": f"swin's generative bias is no better than vit's: swin - vit < {NO_BETTER_DB:g} dB on the gain "
         f"(non-superiority; a tie can be supported)",
    "c": f"generative and predictive biases differ: Spearman rho across archs between the generative gain and "
         f"the predictive accuracy is below {RHO_THRESHOLD:g} (decided with >= {MIN_ARCHS_RHO} archs)",
    "d": f"swin has more predictive bias than vit (swin - vit > 0 on accuracy) but not more generative bias "
         f"(swin - vit < {NO_BETTER_DB:g} dB on the gain)",
    "e": f"conv layers after a transformer add generative bias, before it they do not: T+kc - kc+T > 0 and "
         f"T+kc - T > 0 on the gain and on how long the gap stays positive (censored times); kc+T - T < "
         f"{NO_BETTER_DB:g} dB on the gain",
}

FIGURES = [
    ("km_gap.png", "Kaplan-Meier: share of images whose gap psnr_gt - psnr_obs is still positive, by step"),
    ("gen_vs_pred.png", "Generative score vs predictive accuracy per architecture"),
    ("psnr_curves.png", "PSNR vs iteration (psnr_gt and psnr_obs) per architecture"),
    ("gap_curves.png", "Gap psnr_gt - psnr_obs vs iteration"),
    ("fbc_heatmaps.png", "Frequency-band correspondence with the clean image"),
    ("grid_energy.png", "Grid energy and boundary jump of the final output"),
    ("reconstructions.png", "Reconstructions at each architecture's best step"),
    ("accuracy_vs_n.png", "Test accuracy vs training-set size"),
    ("clf_curves.png", "Classifier accuracy vs optimisation step (plateau check)"),
    ("calibration.png", "Learning-rate calibration"),
]


def prepare(preset):
    """Both probes on the preset's architectures, as the preset says."""
    return preset


def conv_after_claims(t: str, archs, hyp: str = "e", suffix: str = "") -> list[Contrast]:
    """Claim (e)'s contrasts around transformer ``t`` for the hybrids in ``archs``: T+kc - T and T+kc - kc+T > 0 on
    the gain and the gap time, kc+T - T < NO_BETTER_DB on the gain, and the predictive "reverse pattern" as
    exploratory rows. ``suffix`` is appended to every hybrid's name (the zoo's ``[decoder=...]`` variants use the
    base name with it)."""
    out = []
    for k in (1, 3):
        after, before = f"{t}+{k}c", f"{k}c+{t}"
        if after in archs:
            out += [diff(hyp, after, t, "gain_db", "greater"), diff(hyp, after, t, "gap_time", "greater")]
        if after in archs and before in archs:
            out += [diff(hyp, after, before, "gain_db", "greater"), diff(hyp, after, before, "gap_time", "greater")]
        if before in archs:
            out += [diff(hyp, before, t, "gain_db", "less", NO_BETTER_DB)]
            out += [diff(hyp, before, t, "pred_acc", "greater", decisive=False)]  # never decides (e)
        if after in archs:
            out += [diff(hyp, after, t, "pred_acc", "less", decisive=False)]
    return out


def claims(archs) -> list[Contrast]:
    """The claims' contrasts that these architectures allow (a contrast needs all its archs; rows whose archs did
    not run are kept by :func:`verdicts` as 'missing runs')."""
    out = [Contrast("a", (("skipnet", FAR_LESS_RATIO), (t, -1.0)), "gain_db", "greater") for t in TRANSFORMERS]
    out += [diff("b", "swin", "vit", "gain_db", "less", NO_BETTER_DB)]
    out += [diff("d", "swin", "vit", "pred_acc", "greater"), diff("d", "swin", "vit", "gain_db", "less", NO_BETTER_DB),
            diff("d", "swin", "vit", "auc", "greater", decisive=False)]
    for t in TRANSFORMERS:
        if t in archs:
            out += conv_after_claims(t, archs)
    return out


def parse_contrast(hyp: str, row: list) -> Contrast:
    """A plan row ``[expression, metric, kind, margin(, "exploratory")]`` as a :class:`Contrast`; the expression is
    terms joined by " - " or " + " (spaces around the sign: names hold '+'), each ``[w*]arch``."""
    if not isinstance(row, list) or not 4 <= len(row) <= 5:
        raise BiasprobeError(f"plan claim ({hyp}): a row is [expression, metric, kind, margin(, \"exploratory\")], "
                             f"got {row!r}")
    expr, metric, kind, margin = row[:4]
    weights, sign = [], 1.0
    for tok in str(expr).split():
        if tok in "+-":
            sign = -1.0 if tok == "-" else 1.0
            continue
        w, _, arch = tok.rpartition("*") if "*" in tok else ("1", "", tok)
        weights.append((arch, sign * float(w)))
    if metric not in V.METRICS_BY_CONTRAST or kind not in ("greater", "less", "equivalent") or not weights:
        raise BiasprobeError(f"plan claim ({hyp}): cannot read row {row!r} (metrics: "
                             f"{', '.join(V.METRICS_BY_CONTRAST)}; kinds: greater, less, equivalent)")
    return Contrast(hyp, tuple(weights), metric, kind, float(margin), decisive=len(row) < 5)


def plan_claims(analysis: dict | None, archs) -> dict:
    """The claims to test: from the preset's analysis plan when it states them (texts, contrasts, rho and pair
    forms, alpha, horizon, gap window), else this module's own (``CLAIMS``, :func:`claims`)."""
    if not analysis or "claims" not in analysis:
        return dict(texts=CLAIMS, contrasts=claims(archs), rho=RHO, pairs=None, alpha=V.ALPHA, horizon=None,
                    gap_window=None, planned=None)
    texts, contrasts, rho, pairs = {}, [], {}, {}
    for hyp, spec in analysis["claims"].items():
        texts[hyp] = spec["text"]
        contrasts += [parse_contrast(hyp, row) for row in spec.get("rows", [])]
        if "rho" in spec:
            r = spec["rho"]
            rho[hyp] = RhoClaim(float(r["threshold"]), int(r["min_archs"]), r.get("kind", "less"),
                                bool(r.get("exclude_truncated", False)), bool(r.get("guard_plateau", True)))
        if spec.get("form") == "opposite_pair":
            pairs[hyp] = spec
    return dict(texts=texts, contrasts=contrasts, rho=rho, pairs=pairs, alpha=float(analysis.get("alpha", V.ALPHA)),
                horizon=analysis.get("horizon"), gap_window=analysis.get("gap_window"),
                planned=analysis.get("planned_units"))


def verdicts(dip_summary: pd.DataFrame | None, clf_summary: pd.DataFrame | None, n_train: int | None = None,
             n_boot: int = 2000, ci: float = 0.95, seed: int = 0, task: str | None = None,
             analysis: dict | None = None, dip_curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """The claims' rows for one DIP task (default ``verdicts.primary_task``) plus one ``overall`` row per
    hypothesis (columns ``verdicts.VERDICT_COLUMNS``); the claims of the preset's analysis plan when it has them."""
    archs = set()
    for df in (V.nonempty(dip_summary), V.nonempty(clf_summary)):
        if df is not None:
            archs |= set(df["arch"])
    pc = plan_claims(analysis, archs)
    return V.verdict_table(pc["contrasts"], pc["texts"], dip_summary, clf_summary, task=task, n_train=n_train,
                           rho=pc["rho"], n_boot=n_boot, ci=ci, seed=seed, horizon=pc["horizon"], pairs=pc["pairs"],
                           alpha=pc["alpha"], dip_curves=dip_curves, gap_window=pc["gap_window"],
                           planned=pc["planned"])


def verdicts_by_task(dip_summary, clf_summary, n_train=None, n_boot=2000, ci=0.95, seed=0, analysis=None,
                     dip_curves=None) -> pd.DataFrame:
    """:func:`verdicts` for every DIP task that ran (the primary task first)."""
    return pd.concat([verdicts(dip_summary, clf_summary, n_train, n_boot, ci, seed, task=t, analysis=analysis,
                               dip_curves=dip_curves)
                      for t in V.tasks_in_order(dip_summary)], ignore_index=True)


def _units(preset, dip: pd.DataFrame) -> pd.Series:
    """Which rows of a DIP table are the plan's units (its seeds on each image), not replicate seeds."""
    images = preset.dip.image_names()
    return pd.Series([preset.dip.is_unit(im, int(sd), images) for im, sd in zip(dip.image, dip.seed)],
                     index=dip.index, dtype=bool)


def analyse(tables: dict, preset=None, n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
            n_train: int | None = None, period: int = 8) -> dict:
    """The study's analysis of the runner's tables (dip_summary, clf_summary, dip_curves; ``second``: the same
    tables at each arch's second-best lr): ``cross_tab`` (primary task), ``verdicts`` (primary task),
    ``verdicts_by_task`` (every task), ``runs`` (each DIP run's stop, peak and gap crossing), and, when ``second``
    has runs, ``verdicts_second_lr`` and ``sensitivity``; ``options``: the settings used."""
    options = dict(n_boot=int(n_boot), ci=float(ci), seed=int(seed), n_train=n_train, period=int(period),
                   alpha=V.ALPHA, far_less_ratio=FAR_LESS_RATIO, no_better_db=NO_BETTER_DB,
                   rho_threshold=RHO_THRESHOLD, min_archs_rho=MIN_ARCHS_RHO)
    boot = dict(n_boot=options["n_boot"], ci=options["ci"], seed=options["seed"])
    dip, clf = V.nonempty(tables.get("dip_summary")), V.nonempty(tables.get("clf_summary"))
    curves = V.nonempty(tables.get("dip_curves"))
    dip = V.mark_dead(dip, curves, V.nonempty(tables.get("images")),
                      (getattr(preset, "analysis", None) or {}).get("dead_margin_db"))
    spread, dip_all = None, dip
    if dip is not None and preset is not None and getattr(preset.dip, "replicate", None):
        # the plan's units are its seeds; the replicate seeds only estimate the seed-to-seed spread
        spread = seed_spread(dip)
        dip = V.nonempty(dip[_units(preset, dip)])
    task = V.primary_task(dip)
    options["primary_task"] = task
    plan = getattr(preset, "analysis", None) or None
    if plan:
        plan = dict(plan, planned_units=planned_units(preset))
        options.update(alpha=float(plan.get("alpha", V.ALPHA)), plan=True, horizon=plan.get("horizon"),
                       plan_seeds=len(preset.dip.seeds) if preset is not None else 1,
                       gap_window=plan.get("gap_window")
                       or (getattr(preset.dip, "extra", None) or {}).get("gap_window"))
    by_task = verdicts_by_task(dip, clf, n_train=n_train, analysis=plan, dip_curves=curves, **boot)
    clf_base = V.split_budgets(clf)[0]
    out = {"options": options, "seed_spread": spread,
           "cross_tab": V.cross_tab(V.with_gap_window(dip, curves, options.get("gap_window")) if dip is not None
                                    else None, clf_base, curves, n_train=n_train,
                                    period=options["period"], task=task, **boot),
           "verdicts": by_task[by_task.task == task].reset_index(drop=True) if task else by_task,
           "verdicts_by_task": by_task,
           "runs": V.run_table(dip_all),
           "dip_summary": dip}  # the plan's units, dead fits marked failed: what the verdicts and the KM figure read
    if preset is not None and getattr(preset.dip, "replicate", None) and len(out["runs"]):
        out["runs"]["replicate"] = ~_units(preset, out["runs"])
    second = tables.get("second")
    if isinstance(second, dict):
        dip2, clf2 = V.nonempty(second.get("dip_summary")), V.nonempty(second.get("clf_summary"))
        if dip2 is not None or clf2 is not None:
            out["verdicts_second_lr"] = verdicts(dip2, clf2, n_train=n_train, task=task, **boot)
            out["sensitivity"] = V.sensitivity(out["verdicts"], out["verdicts_second_lr"])
    return out


def seed_spread(dip: pd.DataFrame) -> pd.DataFrame:
    """Per architecture, from the images fitted with several seeds: the seed-to-seed SD of the gain (pooled over
    those images) and the SD between images of the per-image gain (all images, lowest seed), so a reader sees
    which of the two the intervals are made of."""
    rows = []
    for arch, g in dip.groupby("arch", sort=True):
        multi = g.groupby("image").filter(lambda x: len(x) > 1)
        within = (multi.groupby("image").gain_db.var(ddof=1).mean() ** 0.5) if len(multi) else np.nan
        first = g.sort_values("seed").groupby("image").first().gain_db
        rows.append(dict(arch=arch, images_with_seeds=int(multi.image.nunique()), seed_sd_db=within,
                         image_sd_db=float(first.std(ddof=1)) if len(first) > 1 else np.nan))
    return pd.DataFrame(rows)


def power_md(verd: pd.DataFrame, meta: dict | None = None) -> list[str]:
    """The plan's power calculation (:func:`report.planned_power_md`), then one power line per inconclusive decisive
    row that has one: how many units (images, seeds) would give 80% power at its observed effect and spread
    (noncentral t), or why none would."""
    planned = R.planned_power_md(meta or {})
    if "power_note" not in verd:
        return planned
    rows = verd[(verd.verdict == "inconclusive") & verd.decisive.astype(bool)
                & verd.power_note.fillna("").astype(bool)]
    if not len(rows):
        return planned
    md = planned + ["## Power of the undecided rows", "",
          "For each decisive row not decided: the units that would give it 80% power (one-sided, alpha as planned) "
          "at the effect and spread observed so far, a planning guide, not a result.", ""]
    md += [f"- ({r.hypothesis}) {r.comparison} on {r.metric} ({r.reason}): {r.power_note}." for r in rows.itertuples()]
    return md + [""]


def planned_units(preset) -> dict:
    """The units the plan expects a row to read: its images (DIP), its classifier seeds and the seeds of its
    budget check (run again at twice the steps)."""
    out = {"images": len(preset.dip.image_names())}
    if preset.classify is not None:
        out["seeds"] = len(preset.classify.seeds)
        if preset.classify.double_seeds:
            out["double_seeds"] = len(preset.classify.double_seeds)
    return out


def plan_info(meta: dict, tables: dict) -> dict | None:
    """What the report's first lines say of the plan: its file and sha256, the images, how many of the study's
    stored runs were made under it (the store's plan log, ``study.plan_of_runs``), and the missing units."""
    preset = meta.get("preset")
    if not isinstance(preset, dict) or not preset.get("plan_sha256") or not preset.get("analysis"):
        return None
    from biasprobe.studies.runner import StudyPreset, _build, plan_of_runs

    d = dict(preset)
    for k in ("plan_file", "plan_sha256"):
        d.pop(k, None)
    p = _build(StudyPreset, d, "preset")
    names = p.dip.image_names()
    frames = [x for x in (tables.get("dip_summary"), tables.get("clf_summary")) if isinstance(x, pd.DataFrame)]
    with_ids = [f[["run_id"]] for f in frames if "run_id" in f]
    ids = pd.concat(with_ids).drop_duplicates() if with_ids else None
    under = other = unlogged = 0
    other_by, reused = {}, 0
    if ids is not None and len(ids) and meta.get("store"):
        from biasprobe.studies.sweep import ResultStore

        idx = ResultStore(Path(meta["store"]) / "results").index()
        idx = idx[idx.run_id.isin(ids.run_id)]
        made = plan_of_runs(Path(meta["store"]), idx.finished_at)
        under = int((made == preset["plan_sha256"]).sum())
        unlogged = int((made == "").sum())
        other = len(made) - under - unlogged
        other_by = _other_plans(Path(meta["store"]), made[(made != preset["plan_sha256"]) & (made != "")])
    costs = tables.get("run_costs")  # runner.run_costs: which of the study's runs were taken over from a donor store
    if isinstance(costs, pd.DataFrame) and "taken_over" in costs:
        reused = int(costs[costs.part == "study"].taken_over.astype(bool).sum())
    dip = tables.get("dip_summary")
    have = set()
    if isinstance(dip, pd.DataFrame) and len(dip):
        have = set(map(tuple, dip[_units(p, dip)][["arch", "image"]].to_numpy()))
    gens = list(p.archs) + [a for a in (getattr(p.dip, "extra_archs", None) or []) if a not in p.archs]
    missing = [f"{a}/{im}" for im in names for a in gens if (a, im) not in have]
    shown = ", ".join(names) if len(names) <= 6 else ", ".join(names[:6]) + f" and {len(names) - 6} more"
    draw = p.dip.images.get("draw") if isinstance(p.dip.images, dict) else None
    how = (f"drawn at random from {' + '.join(draw.get('sets', []))} with seed {draw['seed']}: " if draw
           else "named in the plan: ")
    return dict(file=preset.get("plan_file"), sha256=preset["plan_sha256"], n_images=len(names),
                images=how + shown, runs_under=under, runs_other=other, runs_unlogged=unlogged,
                runs_other_by=other_by, runs_reused=reused,
                missing_units=(f"{len(missing)} of {len(names) * len(gens)} (generator, image) units: "
                               + V._names(missing, 8)) if missing else "")


def _other_plans(store_dir: Path, shas: pd.Series) -> dict[str, int]:
    """{"plan file (sha256 prefix)": runs} for runs made under plans other than the report's (the store's plan log
    names each sha's file)."""
    from biasprobe.studies.runner import PLAN_LOG

    log = store_dir / PLAN_LOG
    files = pd.read_csv(log).drop_duplicates("plan_sha256").set_index("plan_sha256").plan_file if log.is_file() \
        else pd.Series(dtype=str)
    return {f"{files.get(sha, '?')} (sha256 {sha[:8]}…)": int(n) for sha, n in shas.value_counts().items()}


def fig_km_gap(dip_summary, path, horizon=None, task=None, dip_curves=None, gap_window=None, panel_of=None):
    """Kaplan-Meier curves (lifelines) per architecture: the share of images (seed 0) whose gap is still positive
    (not yet sustainedly negative) at each step, censored marks where a fit stopped before crossing.
    ``panel_of``: arch -> panel title (e.g. its decoder), one panel each; default one panel."""
    if dip_summary is None or not len(dip_summary):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lifelines import KaplanMeierFitter

    d = V.with_gap_window(dip_summary, dip_curves, gap_window)
    runs = V.gen_run_table(d)
    runs = runs[runs.task == (task or V.primary_task(d))]
    archs = sorted(runs.arch.unique())
    panel = {a: (panel_of(a) if panel_of else "") for a in archs}
    titles = sorted(set(panel.values()))
    fig, axes = plt.subplots(1, len(titles), figsize=(6.5 * len(titles), 4), squeeze=False, sharey=True)
    for ax, title in zip(axes[0], titles):
        for arch in (a for a in archs if panel[a] == title):
            u = V.image_values(runs, arch, "gap_time")
            lost = runs[runs.arch == arch].image.nunique() - len(u)  # images whose every fit failed
            why = f"{lost} image{'s' if lost > 1 else ''} left out: every fit failed" if lost else ""
            if not len(u):
                if lost:  # no curve to draw: the legend still names the generator and why
                    ax.plot([], [], " ", label=f"{arch}: no curve ({why})")
                continue
            t = u.value.to_numpy(float)
            e = ~u.censored.to_numpy(bool)
            if horizon:
                e &= t <= horizon
                t = np.minimum(t, horizon)
            label, style = f"{arch} ({int(e.sum())}/{len(t)} crossed{'; ' + why if why else ''}", "-"
            mine = d[(d.arch == arch) & (d.task == runs.task.iloc[0])]
            if not e.any() and {"stop_step", "iters"} <= set(mine) and (mine.stop_step < mine.iters - 1).all():
                # fits that stop after their peak, before the cap: the flat line says nothing about the gap
                label, style = label + f"; every fit stopped by step {int(mine.stop_step.max())}, before the cap", ":"
            KaplanMeierFitter(label=label + ")").fit(t, e).plot_survival_function(
                ax=ax, ci_show=False, show_censors=True, linestyle=style)
        ax.set_xlabel("step")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
        if title:
            ax.set_title(title)
    axes[0][0].set_ylabel("share of images with gap still positive")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def cross_tab_intro(opt: dict, ci: float) -> str:
    """What the cross-tab's columns are, as the analysis read them (plan or not, one seed or several per image)."""
    head = f"One row per architecture, {opt.get('primary_task') or 'DIP'} task. Generative score: max psnr_gt gain "
    if not opt.get("plan"):
        return head + (f"over the corrupted input, mean over (image, seed) units; predictive: final test accuracy at "
                       f"fixed N, mean over seeds. Brackets: {ci:.0%} t intervals (images as strata). gap<0 step: "
                       f"first step where psnr_gt < psnr_obs; a run where it never happens counts at its stop (share "
                       f"censored in brackets). Full table: `cross_tab.csv`.")
    several = opt.get("plan_seeds", 1) > 1
    return head + (f"over the corrupted input, mean over images ("
                   + ("of each image's mean over its seeds" if several else "the plan's seed")
                   + f"); predictive: final test accuracy at fixed N, mean over seeds. Brackets: {ci:.0%} t "
                   + ("intervals with images as strata" if several else "intervals over images")
                   + f" (seeds for accuracy). gap<0 step: the crossing the analysis reads (the gap below zero for "
                   f"{opt.get('gap_window')} steps), mean over the fits; a fit where it never happens counts at the "
                   f"last step it could have been seen (share censored in brackets). Full table: `cross_tab.csv`.")


def write_report(out_dir, tables: dict, analysis: dict, meta: dict) -> Path:
    """Write report.md, cross_tab.{csv,md}, verdicts.csv, verdicts_by_task.csv, dip_runs.csv,
    verdicts_second_lr.csv and sensitivity.csv (when in ``analysis``) and the figures into ``out_dir``; returns
    the path of report.md. ``tables``: the runner's tables; ``meta``: see ``report.provenance``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    opt = analysis["options"]
    t = {k: V.nonempty(v) if isinstance(v, pd.DataFrame) else v for k, v in tables.items()}
    curves, clf = t.get("dip_curves"), t.get("clf_summary")
    cross, verd, sens = analysis["cross_tab"], analysis["verdicts"], analysis.get("sensitivity")
    ci, period = opt["ci"], opt["period"]
    compact = R.compact_cross_tab(cross, period)
    write_atomic(out / "cross_tab.csv", cross.to_csv(index=False))
    write_atomic(out / "cross_tab.md", R.markdown_table(compact))
    write_atomic(out / "verdicts.csv", verd.to_csv(index=False))
    if analysis.get("verdicts_second_lr") is not None:
        write_atomic(out / "verdicts_second_lr.csv", analysis["verdicts_second_lr"].to_csv(index=False))
    if sens is not None:
        write_atomic(out / "sensitivity.csv", sens.to_csv(index=False))

    drawn = {
        "gen_vs_pred.png": R.fig_gen_vs_pred(cross, out / "gen_vs_pred.png", ci),
        "psnr_curves.png": R.fig_psnr_grid(curves, out / "psnr_curves.png"),
        "gap_curves.png": R.fig_gap_curves(curves, out / "gap_curves.png"),
        "fbc_heatmaps.png": R.fig_fbc_heatmaps(curves, out / "fbc_heatmaps.png", meta.get("fbc_task")),
        "grid_energy.png": R.fig_grid_energy(curves, out / "grid_energy.png", period),
        "reconstructions.png": R.fig_reconstructions(t.get("images"), out / "reconstructions.png"),
        "accuracy_vs_n.png": R.fig_accuracy_vs_n(clf, out / "accuracy_vs_n.png", ci, seed=opt["seed"])
        if clf is not None and clf.n_train.nunique() > 1 else None,
        "clf_curves.png": R.fig_clf_curves(t.get("clf_epochs"), out / "clf_curves.png", opt.get("n_train") or 1000),
        "calibration.png": R.fig_calibration(t.get("calibration"), out / "calibration.png", t.get("choices")),
    }

    runs = analysis.get("runs")
    drawn["km_gap.png"] = fig_km_gap(analysis.get("dip_summary", t.get("dip_summary")), out / "km_gap.png", opt.get("horizon"),
                                     opt.get("primary_task"), t.get("dip_curves"), opt.get("gap_window"))
    md = [f"# {meta.get('title', 'Generative vs predictive inductive bias')}", ""]
    md += R.plan_lines(plan_info(meta, t))
    md += R.header(meta, runs)
    md += ["## Claims", "",
           R.claims_intro(opt, ci) + " Full table: `verdicts.csv`"
           + (" (every task: `verdicts_by_task.csv`)." if analysis.get("verdicts_by_task") is not None else ".")
           + R.calibrated_note(t.get("choices")), "", R.verdict_md(verd, ci)]
    by_task = analysis.get("verdicts_by_task")
    if by_task is not None and by_task.task.nunique() > 1:
        write_atomic(out / "verdicts_by_task.csv", by_task.to_csv(index=False))
        md += ["## Verdicts on the other tasks", "",
               "Each task on its own (never averaged into the primary task's scores).", ""]
        for task, g in by_task[by_task.task != opt.get("primary_task")].groupby("task", sort=True):
            md += [f"### {task}", "", R.verdict_md(g, ci)]
    md += ["## Cross-tab", "", cross_tab_intro(opt, ci), "", R.markdown_table(compact)]
    sp = analysis.get("seed_spread")
    if isinstance(sp, pd.DataFrame) and len(sp):
        md += ["## Seed-to-seed and image-to-image spread", "",
               "The gain's SD between seeds on the images fitted with the replicate seeds (pooled over them), and "
               "its SD between images (the plan's seed on every image): the replicate seeds enter no test.", "",
               R.markdown_table(sp)]
    md += R.runs_md(runs)
    md += R.plateau_md(clf, t.get("clf_epochs"))
    if runs is not None and len(runs):
        write_atomic(out / "dip_runs.csv", runs.to_csv(index=False))
    md += power_md(verd, meta)
    md += ["## Readings", ""]
    for h in sorted(verd.hypothesis.unique()):
        md += [R.reading(verd, h, ci), ""]
    not_supported = [(h, v) for h, v in V.overall(verd).items() if v != "supported"]
    md += ["**What the data do not support:** "
           + ("; ".join(f"({h}) {v}" for h, v in not_supported) if not_supported
              else "nothing: every hypothesis's overall verdict is supported") + ".", ""]
    if sens is not None:
        md += ["## Sensitivity to the learning rate", "",
               "Overall verdicts with each architecture at its best and at its second-best calibrated learning "
               "rate: robust if they agree.", "", R.markdown_table(sens)]
    if t.get("choices") is not None:
        md += ["## Calibrated learning rates", "", R.markdown_table(t["choices"])]
    return R.close_report(out, md, t, meta, drawn, FIGURES)
