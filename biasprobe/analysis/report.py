"""Report building blocks every study's report uses: figures (seaborn, Agg), Markdown tables, the claims table and
its readings, the DIP run and classifier plateau sections, banners, provenance. Each study's ``write_report``
(``biasprobe/studies/NAME.py``) assembles its report from them; every number comes from the tables.

The tables are the study runner's (a dict; any may be missing):

* ``dip_summary`` (arch, task, image, seed, gain_db, gap_area, gap_negative_step, iters, n_params, ...),
* ``dip_curves`` (arch, task, image, seed, step, metric, value; metrics psnr_gt, psnr_obs, gap, fbc_band{k},
  grid_energy_p{p}, boundary_jump_p{p}, ...),
* ``clf_summary`` (arch, n_train, seed, final_test_acc, ece, shift_consistency_circular, ...), ``clf_epochs``,
* ``images`` (arch, task, image, seed, kind in clean/observed/best, height, width, channels, data = uint8 bytes),
* ``calibration`` (arch, probe, lr, score) and ``choices`` (arch, probe, lr, score, second_lr, second_score),
* ``failed`` (run_id, error);

and ``meta`` (:func:`provenance`): command, preset (name or the preset's dict), versions (dict), git_commit,
device, device_name, wall_time_s or wall_seconds, any other entries (listed as they are), plus fbc_task (None:
denoise if run, else the first task) and title. The readings restate computed numbers only; no conclusion is
written by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from biasprobe.analysis import verdicts as V  # noqa: E402
from biasprobe.analysis.metrics import METRICS, declared  # noqa: E402
from biasprobe.runinfo import write_atomic  # noqa: E402

FAMILY_ORDER = ("cnn", "vit", "swin", "hybrid", "other")
DPI = 110


# ------------------------------------------------------------------------------------------- formatting

def fmt(x) -> str:
    """A number for a table or a sentence: '' for NaN/None, integers plainly, else 3 significant digits."""
    if x is None or (isinstance(x, (float, np.floating)) and not np.isfinite(x)):
        return ""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if float(x).is_integer() and abs(x) < 1e15:
            return str(int(x))
        return f"{x:.1f}" if abs(x) >= 100 else f"{x:.3g}"
    return str(x)


def markdown_table(df: pd.DataFrame, index: bool = False, formatter=fmt) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs tabulate, which we do not depend on).
    Cells go through ``formatter``; '|' is escaped and newlines become spaces."""
    if index:
        df = df.reset_index()

    def cell(x):
        return formatter(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def with_ci(v, lo, hi) -> str:
    if v is None or not np.isfinite(v):
        return ""
    return f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else fmt(v)


def compact_cross_tab(cross: pd.DataFrame, period: int = 8) -> pd.DataFrame:
    """The cross-tab for Markdown: each declared metric with a header (``metrics.METRICS``), value [CI] cells
    where it has a CI, value (censored share) where it is censored."""
    out = pd.DataFrame({"arch": cross["arch"], "family": cross["family"]})
    n = cross["n_train"].dropna() if "n_train" in cross else pd.Series(dtype=float)
    for m in METRICS.values():
        if not m.header:
            continue
        header = m.header.format(n=fmt(n.iloc[0]) if len(n) else "?", period=period)
        col = m.column(period)
        if m.ci:
            out[header + " [CI]"] = [with_ci(*r) for r in cross[[col, f"{m.ci}_ci_low", f"{m.ci}_ci_high"]].values]
        elif m.censored:
            out[header] = ["" if not np.isfinite(v) else f"{fmt(v)} ({c:.0%})"
                           for v, c in cross[[col, m.censored]].values]
        else:
            out[header] = cross.get(col, np.nan)
    out["params gen"] = cross["n_params_gen"]
    out["params clf"] = cross["n_params_clf"]
    return out


# ----------------------------------------------------------------------------------------------- readings

def claimed(kind: str, margin) -> str:
    """A row's claim in symbols: '> 0', '< 1', '|.| < 1'."""
    if kind == "equivalent":
        return f"|.| < {fmt(margin)}"
    return {"greater": "> ", "less": "< "}.get(kind, "") + fmt(margin)


def verdict_word(r) -> str:
    return r.verdict + (f" ({r.reason})" if r.verdict == "inconclusive" and r.reason else "")


def _row_sentence(r, ci: float) -> str:
    what = f"{r.comparison} on {r.metric} (claimed {claimed(r.kind, r.margin)})"
    if not np.isfinite(r.effect):
        return f"{what}: not evaluated ({r.note or 'no data'})"
    s = (f"{what}: effect {fmt(r.effect)} ({ci:.0%} interval {fmt(r.ci_low)} to {fmt(r.ci_high)}, "
         f"{fmt(r.n_units)} units), {verdict_word(r)}{'' if r.decisive else ' (exploratory)'}")
    return s + (f" ({r.note})" if r.note else "")


def reading(verdict_table: pd.DataFrame, hypothesis: str, ci: float = 0.95) -> str:
    """One paragraph for ``hypothesis`` that restates the computed rows and the overall verdict."""
    v = verdict_table[verdict_table.hypothesis == hypothesis]
    if v.empty:
        return f"**({hypothesis})** no rows computed."
    rows = v[v.comparison != "overall"]
    parts = []
    for r in rows.itertuples(index=False):
        s = _row_sentence(r, ci)
        if hypothesis == "c" and np.isfinite(getattr(r, "rho", np.nan)):
            s = (f"Spearman rho between the archs' generative score and predictive accuracy = {fmt(r.rho)} "
                 f"({ci:.0%} CI {fmt(r.rho_ci_low)} to {fmt(r.rho_ci_high)}, {fmt(r.n_units)} archs); " + s)
        parts.append(s)
    o = v[v.comparison == "overall"].iloc[0]
    return (f"**({hypothesis})** {o.claim}. " + "; ".join(parts)
            + f". Overall: **{verdict_word(o)}**.")


# ------------------------------------------------------------------------------------------------ figures

def _fig(nplots: int, ncols: int = 4, w: float = 4.0, h: float = 3.2):
    ncols = max(1, min(ncols, nplots))
    nrows = math.ceil(max(nplots, 1) / ncols)
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[nplots:]:
        ax.set_visible(False)
    return fig, axes


def _save(fig, path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    return path


def _palette(archs) -> dict:
    return dict(zip(archs, sns.color_palette("tab10" if len(archs) <= 10 else "husl", len(archs))))


def _arch_legend(ax) -> None:
    """The axis's arch legend (seaborn's ``hue="arch"``) with short labels, outside the axes on the right, in two
    columns when there are many: a legend of long timm names drawn inside hides the curves."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    lab = short_labels(labels)
    ax.legend(handles, [lab[x] for x in labels], title="arch", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=7, ncol=1 if len(labels) <= 14 else 2)


def fig_gen_vs_pred(cross: pd.DataFrame, path, ci: float = 0.95) -> Path | None:
    """Generative score vs predictive accuracy per arch, with both CIs as error bars, coloured by family."""
    d = cross.dropna(subset=["gen_score", "pred_acc"])
    if d.empty:
        return None
    fams = [f for f in FAMILY_ORDER if f in set(d.family)] + sorted(set(d.family) - set(FAMILY_ORDER))
    colors = dict(zip(fams, sns.color_palette("deep", len(fams))))
    fig, (ax,) = _fig(1, w=8.0, h=5.0)
    for fam in fams:
        f = d[d.family == fam]
        ax.errorbar(f.gen_score, f.pred_acc,
                    xerr=[f.gen_score - f.gen_ci_low, f.gen_ci_high - f.gen_score],
                    yerr=[f.pred_acc - f.pred_ci_low, f.pred_ci_high - f.pred_acc],
                    fmt="o", color=colors[fam], label=fam, capsize=3)
    labels = short_labels(d.arch)
    for r in d.itertuples(index=False):
        ann = ax.annotate(labels[r.arch], (r.gen_score, r.pred_acc), textcoords="offset points", xytext=(4, 4),
                          fontsize=7)
        ann.set_in_layout(False)  # a long label must not shrink the axes
    n = fmt(d.n_train.iloc[0])
    ax.set(xlabel="generative score: max PSNR gain over the input (dB, primary task)",
           ylabel=f"test accuracy at N={n}", title=f"generative vs predictive bias ({ci:.0%} CIs)")
    ax.legend(title="family", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _save(fig, path)


def short_labels(archs, width: int = 24) -> dict:
    """A figure label per arch name: without the ``timm:`` prefix, and a bracketed kwargs list longer than
    ``width`` characters shortened to ``[...]``; a label two archs would share keeps the full name."""
    archs = list(dict.fromkeys(archs))

    def short(a: str) -> str:
        a = a.removeprefix("timm:")
        head, br, rest = a.partition("[")
        return a if not br or len(a) <= width else f"{head}[...]{rest[rest.rfind(']') + 1:]}"

    out = {a: short(a) for a in archs}
    counts = pd.Series(list(out.values())).value_counts()
    return {a: (lab if counts[lab] == 1 else a) for a, lab in out.items()}


def _curves(dip_curves, metrics) -> pd.DataFrame:
    return dip_curves[dip_curves.metric.isin(metrics)] if dip_curves is not None else pd.DataFrame()


def fig_psnr_grid(dip_curves: pd.DataFrame, path) -> Path | None:
    """One panel per arch: psnr_gt and psnr_obs vs iteration per task, mean over images and seeds, band = sd."""
    d = _curves(dip_curves, ["psnr_gt", "psnr_obs"])
    if d.empty:
        return None
    archs = sorted(d.arch.unique())
    labels = short_labels(archs)
    fig, axes = _fig(len(archs))
    for ax, arch in zip(axes, archs):
        sns.lineplot(d[d.arch == arch], x="step", y="value", hue="metric", style="task", errorbar="sd", ax=ax,
                     hue_order=["psnr_gt", "psnr_obs"], legend=ax is axes[0])
        ax.set(title=labels[arch], xlabel="iteration", ylabel="PSNR (dB)")
    fig.suptitle("PSNR vs iteration (mean over images and seeds, band = sd)")
    return _save(fig, path)


def fig_gap_curves(dip_curves: pd.DataFrame, path) -> Path | None:
    """gap = psnr_gt - psnr_obs vs iteration, one line per arch, one panel per task (mean, band = sd)."""
    d = _curves(dip_curves, ["gap"])
    if d.empty:
        return None
    tasks = sorted(d.task.unique())
    pal = _palette(sorted(d.arch.unique()))
    fig, axes = _fig(len(tasks), w=5.0, h=3.6)
    for ax, task in zip(axes, tasks):
        sns.lineplot(d[d.task == task], x="step", y="value", hue="arch", palette=pal, errorbar="sd", ax=ax,
                     legend=ax is axes[0])
        ax.axhline(0, color="k", lw=0.8)
        ax.set(title=f"{task}: gap = psnr_gt - psnr_obs", xlabel="iteration", ylabel="gap (dB)")
        if ax is axes[0]:
            _arch_legend(ax)
    return _save(fig, path)


def fbc_task(dip_curves: pd.DataFrame, task: str | None = None) -> str | None:
    tasks = sorted(_curves(dip_curves, [f"fbc_band{k}" for k in range(16)]).get("task", pd.Series()).unique())
    if not tasks:
        return None
    return task if task in tasks else ("denoise" if "denoise" in tasks else tasks[0])


def fig_fbc_heatmaps(dip_curves: pd.DataFrame, path, task: str | None = None) -> Path | None:
    """Per arch: frequency-band x iteration heatmap of FBC against the clean image, for one task, mean over images
    and seeds (band 0 = lowest, at the bottom)."""
    task = fbc_task(dip_curves, task)
    if task is None:
        return None
    d = dip_curves[(dip_curves.task == task) & dip_curves.metric.str.fullmatch(r"fbc_band\d+")]
    d = d.assign(band=d.metric.str.extract(r"(\d+)$", expand=False).astype(int))
    archs = sorted(d.arch.unique())
    labels = short_labels(archs)
    fig, axes = _fig(len(archs), w=4.5, h=2.8)
    for ax, arch in zip(axes, archs):
        mat = d[d.arch == arch].pivot_table(index="band", columns="step", values="value", aggfunc="mean")
        sns.heatmap(mat.sort_index(ascending=False), ax=ax, vmin=0, vmax=1, cmap="viridis",
                    cbar=ax is axes[len(archs) - 1], xticklabels="auto")
        ax.set(title=labels[arch], xlabel="iteration", ylabel="band")
    fig.suptitle(f"{task}: frequency-band correspondence with the clean image (mean over images and seeds)")
    return _save(fig, path)


def fig_grid_energy(dip_curves: pd.DataFrame, path, period: int = 8) -> Path | None:
    """Bars per arch: the last logged value of each declared periodic DIP curve (grid_energy_p{period},
    boundary_jump_p{period}) of the output (mean over runs, error bar = sd), per task."""
    panels = [(m.column(period), m.label.format(period=period)) for m in declared(read="last")]
    panels = [(col, label) for col, label in panels if not V.last_logged(dip_curves, col).empty]
    if not panels:
        return None
    fig, axes = _fig(len(panels), ncols=2, w=6.0, h=3.8)
    for ax, (col, label) in zip(axes, panels):
        d = V.last_logged(dip_curves, col)
        sns.barplot(d, x="arch", y="value", hue="task", errorbar="sd", ax=ax, order=sorted(d.arch.unique()))
        ax.tick_params(axis="x", rotation=45)
        ax.set(title=label + " at the last step", xlabel="", ylabel=col)
    return _save(fig, path)


def decode_image(row) -> np.ndarray:
    """uint8 (H, W, C) array from an ``images`` row (data = array.tobytes())."""
    h, w, c = int(row["height"]), int(row["width"]), int(row["channels"])
    return np.frombuffer(row["data"], dtype=np.uint8).reshape(h, w, c)


def fig_reconstructions(images: pd.DataFrame, path) -> Path | None:
    """Mosaic: one row per task (its first image, the lowest seed): clean, corrupted, each arch's best output."""
    if images is None or images.empty:
        return None
    tasks = sorted(images.task.unique())
    archs = sorted(images[images.kind == "best"].arch.unique())
    cols = ["clean", "observed"] + archs
    first = images.iloc[0]
    aspect = float(first["height"]) / float(first["width"])
    fig = Figure(figsize=(1.9 * len(cols), (1.9 * aspect + 0.3) * len(tasks)), layout="constrained")
    axes = fig.subplots(len(tasks), len(cols), squeeze=False)
    for i, task in enumerate(tasks):
        t = images[images.task == task]
        image = sorted(t.image.unique())[0]
        t = t[t.image == image]
        t = t[t.seed == t.seed.min()]
        for j, col in enumerate(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            sel = t[t.kind == col] if col in ("clean", "observed") else t[(t.kind == "best") & (t.arch == col)]
            if len(sel):
                img = decode_image(sel.iloc[0])
                ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                          vmin=0, vmax=255)
            if i == 0:
                ax.set_title(col, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{task}\n{image}", fontsize=9)
    return _save(fig, path)


def fig_accuracy_vs_n(clf_summary: pd.DataFrame, path, ci: float = 0.95, n_boot: int = 1000,
                      seed: int = 0) -> Path | None:
    """final_test_acc vs training-set size per arch (log x), mean over seeds with a bootstrap CI band."""
    if clf_summary is None or clf_summary.empty:
        return None
    pal = _palette(sorted(clf_summary.arch.unique()))
    fig, (ax,) = _fig(1, w=6.5, h=4.5)
    sns.lineplot(clf_summary, x="n_train", y="final_test_acc", hue="arch", palette=pal, marker="o",
                 errorbar=("ci", 100 * ci), n_boot=n_boot, seed=seed, ax=ax)
    ax.set(xscale="log", xlabel="training images N (log)", ylabel="final test accuracy",
           title=f"accuracy vs N (mean over seeds, {ci:.0%} bootstrap CI)")
    _arch_legend(ax)
    return _save(fig, path)


def fig_clf_curves(clf_curves: pd.DataFrame | None, path, n_train=None) -> Path | None:
    """Test (or validation) accuracy vs optimisation step per arch at N = ``n_train`` (default: the largest N
    with step rows), mean over seeds with an sd band: the plateau (or its absence) at the end of the budget."""
    if clf_curves is None or "step" not in clf_curves or clf_curves.step.isna().all():
        return None
    acc = next((c for c in ("test_acc", "val_acc") if c in clf_curves), None)
    if acc is None:
        return None
    d = clf_curves.dropna(subset=["step", acc])
    n = n_train if n_train in set(d.n_train) else d.n_train.max()
    d = d[d.n_train == n]
    pal = _palette(sorted(d.arch.unique()))
    fig, (ax,) = _fig(1, w=6.5 if len(pal) <= 14 else 9.0, h=4.5)
    sns.lineplot(d, x="step", y=acc, hue="arch", palette=pal, marker="o", errorbar="sd", ax=ax)
    ax.set(xlabel="AdamW step", ylabel=acc.replace("_", " "),
           title=f"accuracy vs step at N = {n} (mean over seeds, sd band)")
    _arch_legend(ax)
    return _save(fig, path)


def _runs_of(curves: pd.DataFrame):
    """The curves table split into runs (by run_id when the store added it), each with its budget (last step)."""
    keys = ["run_id"] if "run_id" in curves else ["arch", "n_train", "seed"]
    for _, g in curves.dropna(subset=["test_acc"]).groupby(keys):
        g = g.sort_values("step")
        yield g.arch.iloc[0], int(g.step.max()), g


def half_gain(curves: pd.DataFrame | None) -> pd.Series:
    """Per (arch, budget): test accuracy at the end of the budget minus at its middle (the logged step nearest half
    of it), mean over runs: what the second half of the budget, not only its last tenth, still added."""
    if curves is None or not len(curves) or "test_acc" not in curves or "step" not in curves:
        return pd.Series(dtype=float)
    gains = {}
    for arch, budget, g in _runs_of(curves):
        mid = g.iloc[(g.step - g.step.max() / 2).abs().argmin()]
        gains.setdefault((arch, budget), []).append(g.test_acc.iloc[-1] - mid.test_acc)
    return pd.Series({k: float(np.mean(v)) for k, v in gains.items()})


def slope_table(curves: pd.DataFrame | None) -> pd.DataFrame:
    """Per (arch, budget): the least-squares slope of test accuracy over the last quarter of the budget, in points
    per 100 steps (each run's slope, ``stats.slope_with_se``), its mean over runs and that mean's standard error
    over runs: a slope whose interval clears zero says the budget was still buying accuracy."""
    from biasprobe.analysis import stats

    cols = ["arch", "steps", "runs", "slope_per_100", "slope_se"]
    if curves is None or not len(curves) or "test_acc" not in curves or "step" not in curves:
        return pd.DataFrame(columns=cols)
    per = {}
    for arch, budget, g in _runs_of(curves):
        tail = g[g.step >= 0.75 * budget]
        slope, _ = stats.slope_with_se(tail.step, tail.test_acc * 100)
        if np.isfinite(slope):
            per.setdefault((arch, budget), []).append(100 * slope)
    rows = [dict(arch=a, steps=b, runs=len(v), slope_per_100=float(np.mean(v)),
                 slope_se=float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan)
            for (a, b), v in sorted(per.items())]
    return pd.DataFrame(rows, columns=cols)


def plateau_md(clf: pd.DataFrame | None, curves: pd.DataFrame | None = None) -> list[str]:
    """Which classifier runs were still gaining in the last tenth of their budget, what the second half of the
    budget added, and the last quarter's slope with its standard error over seeds (from the accuracy-vs-step
    ``curves``, the runs' step tables), per architecture and budget."""
    if clf is None or "plateaued" not in clf:
        return []
    flat = clf[clf.plateaued.notna()]
    if not len(flat):
        return []
    rising = flat[~flat.plateaued.astype(bool)]
    tol = flat.plateau_tol.iloc[0] if "plateau_tol" in flat else None
    by = ["arch", "steps_run"] if "steps_run" in flat else ["arch"]
    aggs = {k: v for k, v in dict(runs=("seed", "size"), plateau_gain=("plateau_gain", "mean"),
                                   plateaued=("plateaued", "mean")).items() if v[0] in flat}
    g = flat.assign(plateaued=flat.plateaued.astype(float)).groupby(by).agg(**aggs).reset_index()
    half = half_gain(curves)
    if len(half) and "steps_run" in g:
        g["second_half_gain"] = [half.get((a, int(b)), np.nan) for a, b in zip(g.arch, g.steps_run)]
    slopes = slope_table(curves)
    if len(slopes) and "steps_run" in g:
        sl = slopes.set_index(["arch", "steps"])
        g["last_quarter_slope_per_100"] = [sl.slope_per_100.get((a, int(b)), np.nan) for a, b in zip(g.arch, g.steps_run)]
        g["slope_se"] = [sl.slope_se.get((a, int(b)), np.nan) for a, b in zip(g.arch, g.steps_run)]
    return ["## Classifier budgets", "",
            f"One row per architecture and step budget (runs at twice the budget are the budget check). plateau gain: "
            f"accuracy at the end minus at 90% of the budget (mean over runs); a run is flagged as still rising "
            f"when it gains more than {fmt(tol) if tol is not None else 'the tolerance'} there. With a cosine "
            f"schedule the last tenth runs at a small learning rate, so a small gain there is necessary, not "
            f"sufficient, for a plateau: second_half_gain (accuracy at the end minus at the middle of the budget), "
            f"the last quarter's slope in accuracy points per 100 steps with its standard error over seeds, and "
            f"the budget check in the claims table (a contrast read again at twice the steps) say how much the "
            f"budget still mattered.", "",
            f"Still rising: **{', '.join(f'{r.arch}/n{r.n_train}/s{r.seed}' for r in rising.itertuples()) or 'none'}**.",
            "", markdown_table(g.rename(columns={"plateaued": "share plateaued"})), ""]


def fig_calibration(calibration: pd.DataFrame, path, choices: pd.DataFrame | None = None) -> Path | None:
    """Learning-rate calibration: score vs lr per arch, one panel per probe; the chosen lr of each arch starred."""
    if calibration is None or calibration.empty:
        return None
    probes = sorted(calibration.probe.unique())
    pal = _palette(sorted(calibration.arch.unique()))
    fig, axes = _fig(len(probes), ncols=2, w=6.0, h=4.0)
    for ax, probe in zip(axes, probes):
        d = calibration[calibration.probe == probe]
        sns.lineplot(d, x="lr", y="score", hue="arch", palette=pal, marker="o", errorbar="sd", ax=ax)
        if choices is not None and not choices.empty:
            ch = choices[choices.probe == probe]
            for r in ch.itertuples(index=False):
                ax.plot([r.lr], [r.score], marker="*", ms=14, color=pal.get(r.arch, "k"), mec="k", ls="")
        ax.set(xscale="log", xlabel="learning rate (log)", ylabel="score",
               title=f"{probe}: calibration (star = chosen lr)")
        _arch_legend(ax)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------- report

def calibrated_note(choices) -> str:
    if not isinstance(choices, pd.DataFrame) or "probe" not in choices or not len(choices):
        return ""
    probes = " and ".join(sorted(set(choices.probe)))
    return (f" Verdicts are computed at calibrated learning rates: every {probes} run used its architecture's "
            f"learning rate chosen on calibration data the evaluation never uses (see Calibrated learning rates).")


def provenance(meta: dict) -> str:
    """Command, preset, commit, device, wall time, versions and any other ``meta`` entries, as Markdown.
    ``preset`` may be a name or the preset's dict (then its ``name`` is shown and the dict in a details block)."""
    import json

    lines = ["## Provenance", ""]
    if meta.get("command"):
        lines += ["Command:", "", "```", str(meta["command"]), "```", ""]
    wall = meta.get("wall_time_s", meta.get("wall_seconds"))
    preset = meta.get("preset")
    items = [("preset", preset.get("name", "(unnamed)") if isinstance(preset, dict) else preset),
             ("git commit", meta.get("git_commit")),
             ("device", " ".join(str(x) for x in (meta.get("device"), meta.get("device_name")) if x) or None),
             ("wall time of this command",
              f"{wall:.0f} s ({wall / 60:.1f} min)" if isinstance(wall, (int, float)) else wall)]
    versions = meta.get("versions")
    if isinstance(versions, dict):
        items.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    elif versions:
        items.append(("versions", versions))
    known = {"command", "preset", "git_commit", "device", "device_name", "wall_time_s", "wall_seconds", "versions",
             "title"}
    items += [(k.replace("_", " "), v) for k, v in meta.items() if k not in known]
    lines += [f"- {k}: {v if not isinstance(v, float) else fmt(v)}" for k, v in items if v is not None]
    if isinstance(preset, dict):
        lines += ["", "<details><summary>preset configuration</summary>", "", "```json",
                  json.dumps(preset, indent=2, default=str), "```", "", "</details>"]
    return "\n".join(lines) + "\n"


def verdict_md(v: pd.DataFrame, ci: float) -> str:
    """The claims table: each hypothesis's overall verdict, then its rows (contrast, claim, effect [interval],
    Holm-corrected p-values, verdict)."""
    rows = []
    for h, g in v.groupby("hypothesis", sort=True):
        o = g[g.comparison == "overall"].iloc[0]
        rows.append({"claim": f"**({h})**", "contrast": "**overall**", "metric": "", "claimed": "", "effect": "",
                     f"{ci:.0%} interval": "", "n": "", "method": "", "p support (row) / refute (Holm)": "",
                     "verdict": f"**{verdict_word(o)}**"})
        for r in g[g.comparison != "overall"].itertuples(index=False):
            rows.append({"claim": f"({h})", "contrast": r.comparison, "metric": r.metric,
                         "claimed": claimed(r.kind, r.margin), "effect": fmt(r.effect),
                         f"{ci:.0%} interval": f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]"
                         if np.isfinite(r.ci_low) or np.isfinite(r.ci_high) else "",
                         "n": fmt(r.n_units), "method": r.method,
                         "p support (row) / refute (Holm)": f"{_p(r.p_support)} / "
                                                            f"{_p(getattr(r, 'p_refute_holm', np.nan))}"
                         if r.decisive and (np.isfinite(r.p_support) or np.isfinite(r.p_refute)) else "",
                         "verdict": "exploratory: no verdict" if not r.decisive else verdict_word(r)})
    return markdown_table(pd.DataFrame(rows))


def _p(p) -> str:
    return "" if not np.isfinite(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def runs_md(runs: pd.DataFrame) -> list[str]:
    """Each DIP run's stop, peak and gap crossing; the truncated and failed runs by name; the steps saved by
    stopping after the peak."""
    if runs is None or not len(runs):
        return []
    t = runs.copy()
    md = ["## DIP runs: peaks, gap crossings, stops", ""]
    trunc = t[~t.peak_reached.astype(bool) & ~dead_fits(t)] if "peak_reached" in t else t.iloc[:0]
    failed = t[t.failed.astype(bool)] if "failed" in t else t.iloc[:0]

    def names(d):
        return ", ".join(f"{r.arch}/{r.task}/{r.image}/s{r.seed}" for r in d.itertuples()) or "none"

    patience = f"{int(t.patience.iloc[0])} " if "patience" in t else ""
    collapsed = t[t.collapsed.fillna(False).astype(bool)] if "collapsed" in t else t.iloc[:0]
    md += [f"- Truncated (the peak is not {patience}steps before the stop, or a collapse cut it; their rows are "
           f"inconclusive): **{names(trunc)}**.",
           f"- Failed (more backtracks than allowed, or dead; left out): **{names(failed)}**."]
    if "dead" in t or "dead_stop" in t:
        md += [f"- Dead (the best psnr_obs never beat the best constant-colour image by the plan's margin: the net "
               f"fitted a colour, not an image, so it has no peak; counted as failed): **{names(t[dead_fits(t)])}**."]
    md += [f"- Collapsed (psnr_obs stuck far below its best; stopped there, gap time censored at the collapse): "
           f"**{names(collapsed)}**."]
    md += peak_evidence_md(t)
    if "steps_run" in t and "iters" in t:
        saved = 1 - t.steps_run.sum() / t.iters.sum()
        md += [f"- Stopping after the peak ran {int(t.steps_run.sum())} steps (summed over runs) of the "
               f"{int(t.iters.sum())} that a fixed count at the cap would have run ({saved:.0%} saved)."]
    md += ["- Gap crossing (as the run recorded it): the step where psnr_gt falls below psnr_obs and stays below "
           "for the run's gap window; blank when it never did (censored).", ""]
    cols = [c for c in ("arch", "task", "image", "seed", "max_psnr_gt", "gain_db", "max_psnr_gt_step",
                        "gap_negative_step", "stop_step", "peak_reached", "backtracks", "failed", "sec_per_step")
            if c in t]
    md += [markdown_table(t[cols]), ""]
    return md


def peak_evidence_md(runs: pd.DataFrame) -> list[str]:
    """How the reached peaks are known (descriptive; verdicts use the plan's rule): a fit whose gap crossed went on
    to fit the noise, DIP's post-peak regime; one with no crossing before its stop had its best standing for
    ``stop_step - max_psnr_gt_step`` steps, which this line gives (fewest first), so a reader sees how far past its
    peak each was watched."""
    need = ("peak_reached", "gap_negative_step", "stop_step", "max_psnr_gt_step")
    if not all(c in runs for c in need):
        return []
    r = runs[runs.peak_reached.astype(bool) & ~dead_fits(runs)]
    if not len(r):
        return []
    crossed = r.gap_negative_step.notna()
    watch = (r.stop_step - r.max_psnr_gt_step)[~crossed].sort_values()
    line = (f"- How the {len(r)} reached peaks are known (descriptive): {int(crossed.sum())} had their gap cross "
            f"before the stop (the net went on to fit the noise, DIP's post-peak regime); {len(watch)} had none "
            "before it")
    if len(watch):
        low = r.loc[watch.index[0]]
        line += (f", their best standing {int(watch.iloc[0]):,} to {int(watch.iloc[-1]):,} steps before the stop "
                 f"(median {int(watch.median()):,}; fewest: {low.arch}/{low.image}, best at step "
                 f"{int(low.max_psnr_gt_step):,} of {int(low.stop_step) + 1:,})")
    return [line + "."]


def dead_fits(runs: pd.DataFrame) -> pd.Series:
    """Which DIP fits are dead (``verdicts.mark_dead``'s column, or stopped by the loop's dead check)."""
    dead = pd.Series(False, index=runs.index)
    for col in ("dead", "dead_stop"):
        if col in runs:
            dead |= runs[col].astype("boolean").fillna(False).astype(bool)
    if "peak_status" in runs:
        dead |= runs.peak_status.eq("dead")
    return dead


def planned_power_md(meta: dict) -> list[str]:
    """The plan's power calculation (``analysis.power``: method, a note per row, the choice it led to), as written
    before the runs, so a reader sees each verdict beside the power the plan expected it to have."""
    power = meta
    for key in ("preset", "analysis", "power"):
        power = power.get(key) if isinstance(power, dict) else None
    if not isinstance(power, dict):
        return []
    md = ["## Power, as planned before the runs", ""]
    if power.get("method"):
        md += [f"Method: {power['method']}.", ""]
    rows = [r for r in power.get("rows") or [] if isinstance(r, dict)]
    if rows:  # one row per planned row, every field the plan gave it (pilot effect, units for 80% power, a note)
        table = pd.DataFrame(rows)
        md += [markdown_table(table[[c for c in table if c != "note"] + (["note"] if "note" in table else [])]
                                .fillna("")), ""]
    if power.get("choice"):
        md += [f"Choice: {power['choice']}."]
    return md + [""]


def plan_lines(plan: dict | None) -> list[str]:
    """The report's first lines about its analysis plan: file, sha256, images, and whether every run was made
    under it (``plan``: file, sha256, n_images, images, runs_under, runs_other, runs_unlogged, missing_units)."""
    if not plan:
        return []
    md = [f"**Analysis plan:** `{plan['file']}`, sha256 `{plan['sha256']}`; **{plan['n_images']} images** "
          f"({plan['images']})."]
    if plan["runs_other"] or plan["runs_unlogged"]:
        by = plan.get("runs_other_by") or {}
        named = f" [{'; '.join(f'{n} under {k}' for k, n in by.items())}]" if by else ""
        md.append(f"**Not every run was made under this plan:** {plan['runs_under']} under it, "
                  f"{plan['runs_other']} under another plan or an earlier version of this file{named}, "
                  f"{plan['runs_unlogged']} before plans were logged (the plan was written after them). Each of "
                  f"them has the configuration this plan asks for (a run's id is its configuration's hash); what the "
                  f"plan changed since is in its text (its `amendments`, if any).")
    else:
        md.append(f"Every one of the {plan['runs_under']} runs was made under this plan.")
    if plan.get("runs_reused"):
        md.append(f"{plan['runs_reused']} of the runs were taken over from the store this plan continues (its "
                  f"`reuse_from`: the same run copied, or a DIP fit its stop rule ended before a lower cap; each "
                  f"listed in `store/results/reused.csv`), with the cost they took when made.")
    if plan.get("missing_units"):
        md.append(f"**Missing units:** {plan['missing_units']} (the rows that read them are inconclusive or read "
                  f"fewer units than planned).")
    return md + [""]


def header(meta: dict, runs: pd.DataFrame | None) -> list[str]:
    """A report's first lines after its title: the truncation banner (DIP fits stopped before their peak), the
    partial banner (runs missing from the store), and the wall time or the --report-only note."""
    md = []
    if runs is not None and "peak_reached" in runs and len(runs):
        dead = dead_fits(runs)
        reached = runs.peak_reached.astype(bool) & ~dead
        short = ~runs.peak_reached.astype(bool) & ~dead
        rep = runs["replicate"].astype(bool) if "replicate" in runs else pd.Series(False, index=runs.index)
        n_t, n_rep, n = int((short & ~rep).sum()), int((short & rep).sum()), int((~rep).sum())
        n_r, n_d = int((reached & ~rep).sum()), int((dead & ~rep).sum())
        if n:
            live = f" Of the {n - n_d} live fits, {n_r / (n - n_d):.1%} reached it." if n_d and n > n_d else ""
            md += [f"**Peaks: {n_r} of {n} DIP fits reached their peak ({n_r / n:.1%}); {n_t} stopped before it "
                   f"(truncated: at the cap, or cut by a collapse); {n_d} dead (a constant colour: no peak to reach; "
                   f"failed, listed below).**" + live, ""]
        if n_t:
            md += [f"**{n_t} of {n} DIP fits stopped before their peak (truncated): the generative "
                   f"scores they give are fitting speeds, not peaks, and every verdict that reads them is "
                   f"inconclusive (truncated).**", ""]
        if n_rep:
            md += [f"{n_rep} replicate-seed fit(s) stopped before their peak: they enter no test, only the "
                   f"seed-spread table.", ""]
    if meta.get("missing_runs"):
        md += [f"**Partial report: {meta['missing_runs']} of the study's runs are not in the store yet (still "
               f"running, or stopped). Rerun the command without --report-only to finish them (finished runs are "
               f"reused).**", ""]
    wall = meta.get("wall_time_s", meta.get("wall_seconds"))
    if meta.get("report_only"):
        md += [f"Drawn with --report-only from the {meta.get('runs', '?')} stored runs; each run's own time is in "
               f"`dip_runs.csv` (sec_per_step) and the store's index. Provenance at the end.", ""]
    elif isinstance(wall, (int, float)):
        md += [f"Wall time of this command: {wall / 60:.1f} min ({meta.get('device', 'device ?')}); runs: "
               f"{meta.get('runs', '?')}. Provenance at the end.", ""]
    return md


def claims_intro(opt: dict, ci: float) -> str:
    """How the claims table below it was computed (contrasts, intervals, the claim-form rules, the verdict)."""
    if opt.get("plan"):
        a = opt.get("alpha", 0.025)
        several = opt.get("plan_seeds", 1) > 1
        unit_value = ("the mean over its seeds for gains, the lowest seed for gap times" if several
                      else "the plan's seed; replicate seeds enter no test")
        return (f"Each claim is tested as the stated contrasts of its analysis plan on the "
                f"{opt.get('primary_task') or 'DIP'} task: a weighted difference of architectures, claimed greater "
                f"(> m) or less (< m) than a stated margin m. Images are the units of DIP contrasts (one value per "
                f"image: {unit_value}): gains by a paired t over images, gap times (censored at the last step a "
                f"lasting crossing could still be seen) by the exact paired Gehan test, with the difference of "
                f"Kaplan-Meier restricted mean times to step {opt.get('horizon')} as the effect; classifier seeds "
                f"are the units of accuracy contrasts (paired t). A row is supported when its own one-sided p "
                f"support < {a}; a claim that needs every row is supported when every decisive row is "
                f"(intersection-union, no correction); it is refuted when any decisive row's Holm-adjusted p refute "
                f"< {a}; else inconclusive with the reason (truncated, budget-sensitive, missing runs, "
                f"underpowered, power: the note says how many units would give 80% power). Exploratory rows show "
                f"estimate and interval only.")
    return (f"Each claim is tested as stated contrasts on the {opt.get('primary_task') or 'DIP'} task: a weighted "
            f"difference of architectures paired on the same (image, seed) units (DIP) or seeds (classification), "
            f"claimed greater (> m) or less (< m) than a stated margin m, or equivalent (|.| < m). Intervals: "
            f"{ci:.0%} t intervals with images as strata and seeds as replicates ('stratified-t'), t over seeds for "
            f"accuracy, bounds for censored gap times; within a claim the decisive rows' one-sided p-values are "
            f"Holm-corrected: supported when p support < {opt.get('alpha', 0.025)}, refuted when p refute < "
            f"{opt.get('alpha', 0.025)} (the interval on the wrong side of the margin), else inconclusive with the "
            f"reason (truncated, not plateaued, missing runs, underpowered, power). Exploratory rows never decide.")


def failed_section(failed) -> list[str]:
    """The runs that raised an error, when there are any."""
    if not isinstance(failed, pd.DataFrame) or not len(failed):
        return []
    return [f"## Failed runs ({len(failed)})", "", "These runs raised an error and are left out of every number "
            "above.", "", markdown_table(failed)]


def figures_section(drawn: dict, figures: list[tuple[str, str]]) -> list[str]:
    """'## Figures': each drawn figure with its caption, then the names of those not drawn (no data)."""
    md = ["## Figures", ""]
    for name, caption in figures:
        if drawn.get(name) is not None:
            md += [f"### {caption}", "", f"![{caption}]({name})", ""]
    missing = [name for name, _ in figures if drawn.get(name) is None]
    if missing:
        md += [f"Not drawn (no data): {', '.join(missing)}.", ""]
    return md


def close_report(out: Path, md: list[str], tables: dict, meta: dict, drawn: dict,
                 figures: list[tuple[str, str]]) -> Path:
    """The sections every study report ends with (Cost, Failed runs, Provenance, Figures) after ``md``, written to
    ``out/report.md`` atomically. Returns its path."""
    md = md + cost_section(out, tables.get("run_costs"), meta) + failed_section(tables.get("failed"))
    md += [provenance(meta)] + figures_section(drawn, figures)
    path = Path(out) / "report.md"
    write_atomic(path, "\n".join(md))
    return path


def run_threads(costs: pd.DataFrame, threads: int | None = None) -> tuple[pd.Series, str]:
    """Each run's threads: as recorded with the run (``threads`` in its meta.json), else ``threads`` (the preset's
    threads_per_job); and a sentence saying where they came from. NaN where neither says."""
    own = pd.to_numeric(costs["threads"], errors="coerce") if "threads" in costs else pd.Series(np.nan, costs.index)
    n_own = int(own.notna().sum())
    th = own.fillna(threads) if threads else own
    parts = []
    if n_own:
        parts.append(f"{n_own} run{'s' if n_own > 1 else ''} with the thread count recorded with the run")
    if threads and n_own < len(costs):
        parts.append(f"{len(costs) - n_own} with the preset's threads_per_job ({threads}; the store kept no thread "
                     f"count for them, so one computed with another count, e.g. under --threads, is not told apart)")
    return th, "; ".join(parts)


def cost_table(costs: pd.DataFrame | None, threads: int | None = None) -> pd.DataFrame:
    """The study's cost per architecture from its runs' own seconds (``runner.run_costs``): per probe the number of
    runs, minutes and mean seconds per run, calibration minutes, and the total; a last row "all". Minutes are
    core-minutes (seconds x the run's threads, :func:`run_threads`, / 60) when every run's threads are known, else
    run-minutes (wall seconds / 60) throughout."""
    if costs is None or not len(costs):
        return pd.DataFrame()
    th, _ = run_threads(costs, threads)
    costs = costs.assign(minutes=costs.seconds * (th if th.notna().all() else 1.0) / 60.0)
    study = costs[costs.part == "study"]
    out = pd.DataFrame(index=pd.Index(list(dict.fromkeys(costs.arch)), name="arch"))
    for probe, g in study.groupby("probe", sort=False):
        by = g.groupby("arch")
        out[f"{probe}_runs"] = by.size()
        out[f"{probe}_min"] = by.minutes.sum()
        out[f"{probe}_mean_s"] = by.seconds.mean()
    if (costs.part == "calibration").any():
        out["calibration_min"] = costs[costs.part == "calibration"].groupby("arch").minutes.sum()
    out["total_min"] = costs.groupby("arch").minutes.sum()
    out = out.reset_index()
    runs_cols = [c for c in out if c.endswith("_runs")]
    out[runs_cols] = out[runs_cols].fillna(0).astype(int)
    total = {c: out[c].sum() for c in out if c.endswith(("_runs", "_min"))}
    total.update({f"{p}_mean_s": g.seconds.mean() for p, g in study.groupby("probe")}, arch="all")
    return pd.concat([out, pd.DataFrame([total])], ignore_index=True)


def cost_md(costs: pd.DataFrame | None, threads: int | None = None, table: pd.DataFrame | None = None) -> list[str]:
    """'## Cost': :func:`cost_table` (or the ``table`` already made from ``costs``) as Markdown, with what its
    minutes are."""
    t = cost_table(costs, threads) if table is None else table
    if not len(t):
        return []
    th, source = run_threads(costs, threads)
    if th.notna().all():
        unit, why = "core-minutes", f"each run's own seconds x its threads: {source}"
    else:
        unit, why = "run-minutes", ("each run's own wall seconds, summed: the threads of some runs are not known (no "
                                    "count recorded with them, and the preset sets no threads_per_job), so multiply "
                                    "by the threads each run had for core-minutes")
    total = t[t.arch == "all"].total_min.iloc[0]
    n = int(t[t.arch != "all"].filter(like="_runs").to_numpy().sum())
    return ["## Cost", "",
            f"The study's {n} finished runs{' and its calibration fits' if 'calibration_min' in t else ''} cost "
            f"**{total:.1f} {unit}** in all ({why}); per architecture, in {unit} (mean seconds per run in the "
            f"*_mean_s columns). Only this study's planned runs count: other runs in the store are not in it. Full "
            f"table: `cost.csv`.", "", markdown_table(t), ""]


def cost_section(out: Path, costs: pd.DataFrame | None, meta: dict) -> list[str]:
    """Write ``cost.csv`` into ``out`` and return the '## Cost' section (nothing when there are no run costs);
    runs without a recorded thread count take the preset's threads_per_job (``meta["preset"]``)."""
    if costs is None or not len(costs):
        return []
    preset = meta.get("preset") if isinstance(meta.get("preset"), dict) else {}
    threads = preset.get("threads_per_job")
    table = cost_table(costs, threads)
    write_atomic(Path(out) / "cost.csv", table.to_csv(index=False))
    md = cost_md(costs, threads, table)
    if md and "taken_over" in costs and costs.taken_over.astype(bool).any():
        th, _ = run_threads(costs, threads)
        minutes = costs.seconds * (th if th.notna().all() else 1.0) / 60.0
        old = costs.taken_over.astype(bool)
        k = int(old.sum())
        md[-1:-1] = [f"Of these, {k} run{'s' * (k != 1)} ({minutes[old].sum():.1f} of the minutes) came from "
                     f"the store this plan continues (made under earlier plans, counted at the cost they took then; "
                     f"`reused.csv` in the store lists them); the runs made for this plan: {int((~old).sum())}, "
                     f"{minutes[~old].sum():.1f} minutes.", ""]
    return md
