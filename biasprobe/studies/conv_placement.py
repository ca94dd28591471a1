"""The conv-placement study: DIP only, T, 3c+T, T+1c and T+3c for each transformer T in vit and swin (the
original study's figure). Its runs are a subset of the main study's grid when the main preset has them, and the
two share a store, so they are reused. Report: the max-PSNR table and, per transformer, PSNR and gap curves.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from biasprobe.analysis import report as R
from biasprobe.analysis import verdicts as V
from biasprobe.runinfo import write_atomic


TRANSFORMERS = ("vit", "swin")


def conv_variants(t: str) -> list[str]:
    """Transformer ``t`` and its conv-placement hybrids: t, 3c+t (convs before), t+1c, t+3c (convs after)."""
    return [t, f"3c+{t}", f"{t}+1c", f"{t}+3c"]


ARCHS = tuple(a for t in TRANSFORMERS for a in conv_variants(t))


def prepare(preset):
    """The preset restricted to DIP runs of :data:`ARCHS` (the runs it shares with the preset's
    generative-vs-predictive study are reused from the store)."""
    return dataclasses.replace(preset, archs=list(ARCHS), classify=None)


def table(dip_summary: pd.DataFrame | None, transformers=TRANSFORMERS) -> pd.DataFrame:
    """The conv-placement study's analysis: max psnr_gt per (transformer, variant, task), mean and sd over images
    and seeds, gain, step of the max; for each transformer T run with at least one of its hybrids
    (:func:`conv_variants`)."""
    dip_summary = V.nonempty(dip_summary)
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
                                 gain_db=g.gain_db.mean(), max_psnr_gt_step=g.max_psnr_gt_step.mean(), n_runs=len(g),
                                 share_peak_reached=g.peak_reached.astype(bool).mean() if "peak_reached" in g
                                 else np.nan))
    return pd.DataFrame(rows, columns=["transformer", "arch", "task", "max_psnr_gt", "max_psnr_gt_sd", "gain_db",
                                       "max_psnr_gt_step", "n_runs", "share_peak_reached"])


def analyse(tables: dict, preset=None) -> dict:
    """The max-PSNR :func:`table` of the runs."""
    return {"table": table(tables.get("dip_summary"))}


def figure(dip_curves: pd.DataFrame, tab: pd.DataFrame, out_dir,
                          transformers=TRANSFORMERS) -> dict:
    """The conv-placement study's figure: for each transformer T with runs, PSNR vs iteration (psnr_gt solid,
    psnr_obs dashed) of T, 3c+T, T+1c, T+3c per task (top row) and their gap (bottom row), as
    ``conv_placement_{T}.png``; plus the max-PSNR table ``tab`` (:func:`table`) as
    conv_placement.csv and conv_placement.md. Returns dict(figures=[paths], csv=path, md=path, table=table)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves = V.nonempty(dip_curves)
    figures = []
    for t in transformers:
        variants = [v for v in conv_variants(t) if curves is not None and v in set(curves.arch)]
        if len(variants) < 2:  # T alone, or a hybrid without its base: nothing to compare
            continue
        d = curves[curves.arch.isin(variants)]
        tasks = sorted(d.task.unique())
        pal = dict(zip(variants, sns.color_palette("tab10", len(variants))))
        fig = Figure(figsize=(5.5 * len(tasks), 7.0), layout="constrained")
        axes = fig.subplots(2, len(tasks), squeeze=False)
        for j, task in enumerate(tasks):
            p = d[(d.task == task) & d.metric.isin(["psnr_gt", "psnr_obs"])]
            sns.lineplot(p, x="step", y="value", hue="arch", hue_order=variants, palette=pal, style="metric",
                         style_order=["psnr_gt", "psnr_obs"], errorbar=None, ax=axes[0, j], legend=j == 0)
            axes[0, j].set(title=f"{task}: PSNR (mean over images and seeds)", xlabel="iteration",
                           ylabel="PSNR (dB)")
            g = d[(d.task == task) & (d.metric == "gap")]
            if len(g):
                sns.lineplot(g, x="step", y="value", hue="arch", hue_order=variants, palette=pal, errorbar="sd",
                             ax=axes[1, j], legend=False)
            axes[1, j].axhline(0, color="k", lw=0.8)
            axes[1, j].set(title=f"{task}: gap = psnr_gt - psnr_obs (band = sd)", xlabel="iteration",
                           ylabel="gap (dB)")
        fig.suptitle(f"conv placement around {t}: {', '.join(variants)}")
        figures.append(R._save(fig, out / f"conv_placement_{t}.png"))
    csv = out / "conv_placement.csv"
    write_atomic(csv, tab.to_csv(index=False))
    md = ["# Conv placement: conv layers before (3c+T) or after (T+1c, T+3c) a transformer", "",
          "Max psnr_gt over the run, mean (sd) over images and seeds; gain = max psnr_gt - psnr of the input.", ""]
    md += [R.markdown_table(tab) if len(tab) else "No runs of vit, swin or their hybrids.\n", ""]
    md += [f"![conv placement]({p.name})\n" for p in figures]
    mdp = out / "conv_placement.md"
    write_atomic(mdp, "\n".join(md))
    return dict(figures=figures, csv=csv, md=mdp, table=tab)


def write_report(out_dir, tables: dict, analysis: dict, meta: dict) -> Path:
    """The conv-placement study's report: :func:`conv_placement_figure` plus report.md with the provenance
    (``meta``: see ``report.provenance``) and the max-PSNR ``table``. Returns the path of report.md."""
    out = Path(out_dir)
    res = figure(tables.get("dip_curves"), analysis["table"], out)
    body = res["md"].read_text()
    title, rest = body.split("\n", 1)
    md = [meta.get("title") and f"# {meta['title']}" or title, "", R.provenance(meta), rest]
    md += R.failed_section(tables.get("failed"))
    path = out / "report.md"
    write_atomic(path, "\n".join(md))
    return path
