"""The zoo study: many architectures (timm models by name, and the built-ins) from several families through both
probes, to decide claim (c) -- generative and predictive bias are different things -- over enough architectures
for Spearman's rho to decide, and the decoder as a controlled factor for claim (e).

Preset options (``"study"`` in the preset JSON):

* ``families``: {arch: family label} for the leaderboard and the scatter (default: the registry's family);
* ``decoder_ablation``: {"backbones": [...], "decoders": ["pixelshuffle", "bilinear", "transposed"],
  "convs_after": [1, 3], "convs_before": [3], "transformers": [...]}: each backbone with each decoder written into
  its name (``vit[decoder=bilinear]``, ``registry.with_kwargs``), alone, with k convs after (``+kc``) and before
  (``kc+``); DIP only (the decoder is the generator's). ``transformers`` (default: the backbones of registry family
  vit or swin) get claim (e)'s contrasts once per decoder (hypotheses ``e|DECODER``).

Claims: (c) over the zoo's archs (the preset's ``archs``; the ablation's variants are left out), with the main
study's threshold and minimum count; (e) per decoder, with the main study's contrasts and margins. Report: the
claims table, the leaderboard (generative and predictive score with intervals, ranks, per-arch step times, peak
and plateau status), the scatter per family, the decoder-ablation table (how far each backbone's score moves with
its decoder), the DIP runs and the classifiers' plateau check.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from biasprobe.analysis import report as R
from biasprobe.analysis import stats
from biasprobe.analysis import verdicts as V
from biasprobe.archs.registry import get_arch, split_kwargs, with_kwargs
from biasprobe.runinfo import write_atomic
from biasprobe.studies import generative_vs_predictive as G


DECODERS = ("pixelshuffle", "bilinear", "transposed")

FIGURES = [
    ("km_decoders.png", "Kaplan-Meier per generator of the decoder ablation: share of images whose gap is still positive"),
    ("gen_vs_pred.png", "Generative score vs predictive accuracy per architecture, by family"),
    ("psnr_curves.png", "PSNR vs iteration (psnr_gt and psnr_obs) per architecture"),
    ("clf_curves.png", "Classifier accuracy vs optimisation step (plateau check)"),
]


def ablation(spec: dict | None) -> list[dict]:
    """The decoder ablation's variants: one dict per (backbone, decoder, variant) with its arch name; variant is
    "T", "T+kc" or "kc+T" (see the module docstring)."""
    if not spec:
        return []
    out = []
    for backbone in spec.get("backbones", []):
        for decoder in spec.get("decoders", DECODERS):
            base = with_kwargs(backbone, decoder=decoder)
            out.append(dict(backbone=backbone, decoder=decoder, variant="T", arch=base))
            out += [dict(backbone=backbone, decoder=decoder, variant=f"T+{k}c", arch=f"{base}+{k}c")
                    for k in spec.get("convs_after", [1, 3])]
            out += [dict(backbone=backbone, decoder=decoder, variant=f"{k}c+T", arch=f"{k}c+{base}")
                    for k in spec.get("convs_before", [3])]
    return out


def transformers(spec: dict | None) -> list[str]:
    """The ablation backbones that get claim (e)'s contrasts."""
    if not spec:
        return []
    if "transformers" in spec:
        return list(spec["transformers"])
    return [b for b in spec.get("backbones", []) if get_arch(b).family in ("vit", "swin")]


def prepare(preset):
    """Both probes on the preset's archs; the decoder ablation's variants added as DIP-only archs."""
    extra = [v["arch"] for v in ablation(preset.study.get("decoder_ablation"))]
    extra = [a for a in dict.fromkeys(preset.dip.extra_archs + extra) if a not in preset.archs]
    return dataclasses.replace(preset, dip=dataclasses.replace(preset.dip, extra_archs=extra))


def family(arch: str, families: dict) -> str:
    """The family label of ``arch``: the preset's, else the registry's."""
    return families.get(arch) or V.family_of(split_kwargs(arch)[0])


def claims(spec: dict | None, archs) -> tuple[list, dict]:
    """(contrasts, claim texts): claim (e) once per decoder of the ablation (hypothesis ``e|DECODER``); claim (c)
    is the rho row."""
    texts = {"c": G.CLAIMS["c"] + " (over the zoo's architectures)"}
    contrasts = []
    for decoder in (spec or {}).get("decoders", DECODERS) if spec else ():
        hyp = f"e|{decoder}"
        texts[hyp] = G.CLAIMS["e"] + f", with every generator ending in the {decoder} decoder"
        for t in transformers(spec):
            contrasts += G.conv_after_claims(with_kwargs(t, decoder=decoder), archs, hyp=hyp)
    return contrasts, texts


def leaderboard(cross: pd.DataFrame, dip: pd.DataFrame | None, clf: pd.DataFrame | None) -> pd.DataFrame:
    """One row per arch: family, generative score and predictive accuracy with their intervals and ranks (1 =
    best), the share of DIP fits that reached their peak and of classifiers that plateaued, DIP seconds per step
    (all seeds of a run together) and classifier training images per second, and the parameter counts."""
    cols = ["arch", "family", "gen_score", "gen_ci_low", "gen_ci_high", "pred_acc", "pred_ci_low", "pred_ci_high",
            "n_params_gen", "n_params_clf"]
    lb = cross[[c for c in cols if c in cross]].copy()
    lb["gen_rank"] = lb["gen_score"].rank(ascending=False, method="min")
    lb["pred_rank"] = lb["pred_acc"].rank(ascending=False, method="min")
    if dip is not None:
        g = dip.groupby("arch")
        lb["share_peak_reached"] = lb.arch.map(g["peak_reached"].mean() if "peak_reached" in dip else {})
        lb["dip_sec_per_step"] = lb.arch.map(g["sec_per_step"].mean() if "sec_per_step" in dip else {})
    if clf is not None:
        c = clf.groupby("arch")
        lb["share_plateaued"] = lb.arch.map(c["plateaued"].mean() if "plateaued" in clf else {})
        lb["clf_images_per_s"] = lb.arch.map(c["train_images_per_s"].mean() if "train_images_per_s" in clf else {})
    return lb.sort_values(["gen_rank", "arch"]).reset_index(drop=True)


def decoder_table(dip: pd.DataFrame | None, spec: dict | None, task: str | None, ci: float = 0.95) -> pd.DataFrame:
    """Per (backbone, variant, decoder): the gain (mean and t interval over (image, seed) units), the failed (e.g.
    dead) fits left out of it, the gap-crossing step (censored at the stop) and the share of fits that reached
    their peak; then, per (backbone, variant),
    ``decoder_range``: the largest minus the smallest mean gain over the decoders (how much of the score moves
    with the decoder)."""
    rows = []
    variants = ablation(spec)
    if dip is None or not variants:
        return pd.DataFrame()
    units = V.gen_scores(dip, task)
    task = task or V.primary_task(dip)
    failed = dip[(dip.task == task) & dip.failed.astype(bool)].groupby("arch").size() if "failed" in dip else {}
    for v in variants:
        u = units[units.arch == v["arch"]]
        iv = stats.stratified_interval(u["gen_score"], u["image"], ci) if len(u) else dict(
            effect=np.nan, ci_low=np.nan, ci_high=np.nan, n_units=0)
        rows.append(dict(backbone=v["backbone"], variant=v["variant"], decoder=v["decoder"], arch=v["arch"],
                         gain_db=iv["effect"], ci_low=iv["ci_low"], ci_high=iv["ci_high"], n_units=iv["n_units"],
                         n_failed=int(failed.get(v["arch"], 0)),
                         gap_negative_step=u["gap_negative_step"].mean() if len(u) else np.nan,
                         gap_censored_share=u["gap_negative_censored"].mean() if len(u) else np.nan,
                         share_peak_reached=u["peak_reached"].astype(float).mean() if len(u) else np.nan))
    t = pd.DataFrame(rows)
    spread = t.groupby(["backbone", "variant"])["gain_db"].agg(lambda x: x.max() - x.min() if x.notna().sum() > 1
                                                                 else np.nan)
    t["decoder_range"] = [spread[(b, v)] for b, v in zip(t.backbone, t.variant)]
    return t


def stride_of(arch: str, hw: tuple[int, int]) -> float:
    """The generator's output stride at image size ``hw``: the registry's size multiple, which for the zoo's
    one-head generators (a feature grid, then one decoder) is the pixels per feature cell that the decoder must
    fill (32 for a stride-32 timm backbone: a 4x4 grid at 128 px). NaN when the registry cannot say."""
    try:
        return float(get_arch(arch).size_multiple(hw))
    except Exception:  # an exploratory column: a name the registry cannot size is left blank, never fatal
        return np.nan


def stride_analysis(dip: pd.DataFrame | None, clf: pd.DataFrame | None, task: str | None,
                    n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict:
    """Exploratory, not in the plan: does the generative score follow the output stride (the upsampling the shared
    decoder does), as the DIP upsampler literature would predict? ``table``: per stride, the architectures and their
    mean gains; ``rho_stride``: Spearman rho of gain vs stride over the architectures (two-level bootstrap,
    :func:`verdicts.rank_correlation`); ``rho_within``: rho of gain vs accuracy within the largest stride group,
    read as claim (c)'s rho is (architectures with a fit short of its peak left out, the base classifier budget).
    ``truncated``: the architectures left out of both rhos."""
    if dip is None or not len(dip) or not {"height", "width"} <= set(dip):
        return {}  # no fit sizes to read the strides at
    task = task or V.primary_task(dip)
    units = V.gen_scores(dip, task)
    if not len(units):
        return {}
    first = dip[dip.task == task].groupby("arch")[["height", "width"]].first()
    stride = {a: stride_of(a, (int(r.height), int(r.width))) for a, r in first.iterrows()}
    units = units.assign(stride=units.arch.map(stride))
    per_arch = units.groupby("arch").agg(gain_db=("gen_score", "mean"), stride=("stride", "first"),
                                         peak=("peak_reached", "all")).reset_index()
    table = (per_arch.dropna(subset=["stride"]).groupby("stride")
             .agg(n_archs=("arch", "size"), mean_gain_db=("gain_db", "mean"), min_gain_db=("gain_db", "min"),
                  max_gain_db=("gain_db", "max"), archs=("arch", lambda a: ", ".join(sorted(a))))
             .reset_index())
    truncated = sorted(per_arch.arch[~per_arch.peak.astype(bool)])
    peaked = units[~units.arch.isin(truncated)]
    boot = dict(n_boot=n_boot, ci=ci, seed=seed)
    out = {"table": table, "stride": stride, "truncated": truncated,
           "rho_stride": V.rank_correlation(peaked, peaked.dropna(subset=["stride"]), pred_col="stride", **boot)}
    base = V.split_budgets(clf)[0] if clf is not None and len(clf) else None
    if base is not None and len(table):
        big = table.sort_values(["n_archs", "stride"]).iloc[-1]
        group = set(per_arch.arch[per_arch.stride == big.stride]) - set(truncated)
        pred = V.pred_scores(base)
        out["rho_within"] = dict(stride=float(big.stride), **V.rank_correlation(
            peaked[peaked.arch.isin(group)], pred[pred.arch.isin(group)], **boot))
    return out


def _stride_md(sa: dict, ci: float) -> list[str]:
    if not sa or not len(sa.get("table", [])):
        return []
    md = ["## Output stride and the generative score (exploratory, not in the plan)", "",
          "Every zoo generator ends in the same decoder (a 1x1 conv and a pixel shuffle), which must fill a stride x "
          "stride block of pixels from each feature cell with no spatial mixing; the DIP literature puts much of the "
          "prior in the upsampler (Heckel & Soltanolkotabi 2020; Liu et al. 2023). Gains are the architectures' "
          "mean gains (all their fits that did not fail); stride is the registry's size multiple at the DIP size.",
          "", R.markdown_table(sa["table"]), ""]
    out = (f" ({', '.join(sa['truncated'])} left out: a fit short of its peak)" if sa.get("truncated") else "")

    def rho_line(r, what):
        if np.isfinite(r["rho"]):
            return (f"{what}: {R.fmt(r['rho'])} [{R.fmt(r['ci_low'])}, {R.fmt(r['ci_high'])}] ({ci:.0%} two-level "
                    f"percentile bootstrap){out}.")
        return f"{what}: no rho ({r['n_archs']} architectures with both scores; it needs 3){out}."

    md += ["- " + rho_line(sa["rho_stride"], f"Spearman rho of gain vs stride over {sa['rho_stride']['n_archs']} "
                                              f"architectures")]
    w = sa.get("rho_within")
    if w:
        md += ["- " + rho_line(w, f"Within the stride-{int(w['stride'])} architectures (the decoder's upsampling "
                                  f"held fixed; {w['n_archs']} with both probes), Spearman rho of gain vs accuracy, "
                                  f"exploratory here")]
    return md + [""]


def analyse(tables: dict, preset=None, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict:
    """Leaderboard and rho over the zoo's archs; decoder-ablation table and claim (e) per decoder; the DIP runs.
    ``preset``: the study's (for its archs and options)."""
    opts = preset.study if preset is not None else {}
    fams = opts.get("families", {})
    spec = opts.get("decoder_ablation")
    dip, clf = V.nonempty(tables.get("dip_summary")), V.nonempty(tables.get("clf_summary"))
    dip = V.mark_dead(dip, V.nonempty(tables.get("dip_curves")), V.nonempty(tables.get("images")),
                      (getattr(preset, "analysis", None) or {}).get("dead_margin_db"))
    zoo = list(preset.archs) if preset is not None else sorted(
        set(dip.arch if dip is not None else []) | set(clf.arch if clf is not None else []))
    task = V.primary_task(dip)
    dip_zoo = dip[dip.arch.isin(zoo)] if dip is not None else None
    clf_zoo = clf[clf.arch.isin(zoo)] if clf is not None else None
    boot = dict(n_boot=int(n_boot), ci=float(ci), seed=int(seed))
    cross = V.cross_tab(dip_zoo, clf_zoo, None, task=task, families={a: family(a, fams) for a in zoo}, **boot)
    plan = getattr(preset, "analysis", None) or None
    options = dict(**boot, alpha=V.ALPHA, primary_task=task, rho_threshold=G.RHO_THRESHOLD,
                   min_archs_rho=G.MIN_ARCHS_RHO, no_better_db=G.NO_BETTER_DB, period=8, n_train=None)
    if plan and "claims" in plan:  # the plan's claims: rho ones over the zoo's archs, the others over every generator
        pc = G.plan_claims(plan, set())
        curves = V.nonempty(tables.get("dip_curves"))
        kw = dict(task=task, horizon=pc["horizon"], alpha=pc["alpha"], gap_window=pc["gap_window"],
                  planned=G.planned_units(preset), **boot)
        over_zoo = {h: t for h, t in pc["texts"].items() if h in pc["rho"]}
        rest = {h: t for h, t in pc["texts"].items() if h not in over_zoo}
        parts = [V.verdict_table([c for c in pc["contrasts"] if c.hypothesis in over_zoo], over_zoo, dip_zoo, clf_zoo,
                                 rho=pc["rho"], pairs=pc["pairs"], dip_curves=curves, **kw)
                 if over_zoo else pd.DataFrame(),
                 V.verdict_table([c for c in pc["contrasts"] if c.hypothesis in rest], rest, dip, clf,
                                 dip_curves=curves, **kw) if rest else pd.DataFrame()]
        verdicts = pd.concat([x for x in parts if len(x)], ignore_index=True)
        options.update(alpha=pc["alpha"], plan=True, horizon=pc["horizon"], gap_window=pc["gap_window"])
    else:
        rho = V.verdict_table([], {"c": G.CLAIMS["c"] + " (over the zoo's architectures)"}, dip_zoo, clf_zoo,
                              task=task, rho=G.RHO, **boot)
        contrasts, texts = claims(spec, set(dip.arch) if dip is not None else set())
        texts.pop("c")
        e_rows = V.verdict_table(contrasts, texts, dip, clf, task=task, **boot) if texts else pd.DataFrame()
        verdicts = pd.concat([rho, e_rows], ignore_index=True)
    strides = stride_analysis(dip_zoo, clf_zoo, task, **boot)
    lb = leaderboard(cross, dip_zoo, clf_zoo)
    if strides:
        lb["stride"] = lb.arch.map(strides["stride"])
    return {"options": options, "cross_tab": cross, "verdicts": verdicts, "leaderboard": lb,
            "decoders": decoder_table(dip, spec, task, ci), "runs": V.run_table(dip), "dip_summary": dip,
            "strides": strides}


def _leaderboard_md(lb: pd.DataFrame, ci: float) -> str:
    t = pd.DataFrame({
        "arch": lb.arch, "family": lb.family,
        f"gain dB [{ci:.0%} CI]": [R.with_ci(v, lo, hi) for v, lo, hi in zip(lb.gen_score, lb.gen_ci_low,
                                                                              lb.gen_ci_high)],
        "gen rank": lb.gen_rank,
        f"acc [{ci:.0%} CI]": [R.with_ci(v, lo, hi) for v, lo, hi in zip(lb.pred_acc, lb.pred_ci_low,
                                                                          lb.pred_ci_high)],
        "pred rank": lb.pred_rank})
    for col, head in (("stride", "stride"), ("share_peak_reached", "peak reached"), ("share_plateaued", "plateaued"),
                      ("dip_sec_per_step", "DIP s/step"), ("clf_images_per_s", "clf img/s"),
                      ("n_params_gen", "params gen"), ("n_params_clf", "params clf")):
        if col in lb:
            t[head] = lb[col]
    return R.markdown_table(t)


TRUNCATED_MARK = "\u2020"  # a gain some of whose fits stopped before their peak


def _decoders_md(d: pd.DataFrame, ci: float) -> str:
    if d.empty:
        return "No decoder ablation in this preset.\n"
    short = d.share_peak_reached.fillna(1.0) < 1.0
    cells = [R.with_ci(v, lo, hi) + (f" {TRUNCATED_MARK}" if s else "")
             for v, lo, hi, s in zip(d.gain_db, d.ci_low, d.ci_high, short)]
    t = d.assign(**{f"gain dB [{ci:.0%} CI]": cells})
    table = R.markdown_table(t[["backbone", "variant", "decoder", f"gain dB [{ci:.0%} CI]", "n_units", "n_failed",
                                "gap_negative_step", "gap_censored_share", "share_peak_reached", "decoder_range"]])
    if short.any():
        table += (f"\n{TRUNCATED_MARK} Not every fit of the row reached its peak (share_peak_reached < 1): its gain "
                  "mixes peaks with the best psnr_gt before a stop that came first (the cap, or a collapse), a lower "
                  "bound on those fits' peaks. It reads how fast they fit, not their peak, and no verdict uses it.\n")
    return table


def _refits_md(out: Path, meta: dict) -> list[str]:
    """For a plan that continues another's store (``reuse_from``): the fits computed again under the larger budget,
    beside the same fits as the earlier plan stored them (``refits.csv``)."""
    preset = meta.get("preset") if isinstance(meta.get("preset"), dict) else {}
    if not preset.get("reuse_from") or not meta.get("store"):
        return []
    from biasprobe.studies.reuse import refits

    r = refits(Path(meta["store"]) / "results", Path(preset["reuse_from"]) / "results")
    if not len(r):
        return []
    write_atomic(out / "refits.csv", r.to_csv(index=False))
    t = pd.DataFrame({
        "arch": r.arch, "image": r.image,
        "cap before / after": [f"{int(b):,} / {int(a):,}" for b, a in zip(r.iters_before, r.iters_after)],
        "peak before": [f"{s} @ {int(st):,}" for s, st in zip(r.peak_status_before, r.max_psnr_gt_step_before)],
        "peak after": [f"{s} @ {int(st):,}" for s, st in zip(r.peak_status_after, r.max_psnr_gt_step_after)],
        "gain dB before / after": [f"{b:.2f} / {a:.2f}" for b, a in zip(r.gain_db_before, r.gain_db_after)],
        "steps run after": r.steps_run_after.astype(int),
        "gap crossing after": r.gap_negative_step_after})
    return ["## Fits computed again under this plan's budget", "",
            f"The fits of `{preset['reuse_from']}` that this plan could not take over (they ran to the earlier cap, or "
            f"were dead before the new dead check), computed again from step 0, beside their earlier records (the same "
            f"configuration but the budget; full table: `refits.csv`). A dead fit stopped at the dead check shows "
            f"`dead`.", "", R.markdown_table(t), ""]


def write_report(out_dir, tables: dict, analysis: dict, meta: dict) -> Path:
    """report.md, leaderboard.csv, decoders.csv, verdicts.csv, dip_runs.csv and the figures into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    opt, ci = analysis["options"], analysis["options"]["ci"]
    t = {k: V.nonempty(v) if isinstance(v, pd.DataFrame) else v for k, v in tables.items()}
    lb, dec, verd, runs = analysis["leaderboard"], analysis["decoders"], analysis["verdicts"], analysis["runs"]
    write_atomic(out / "leaderboard.csv", lb.to_csv(index=False))
    write_atomic(out / "decoders.csv", dec.to_csv(index=False))
    write_atomic(out / "verdicts.csv", verd.to_csv(index=False))
    if runs is not None and len(runs):
        write_atomic(out / "dip_runs.csv", runs.to_csv(index=False))
    curves = t.get("dip_curves")
    zoo = set(lb.arch)
    drawn = {
        "gen_vs_pred.png": R.fig_gen_vs_pred(analysis["cross_tab"], out / "gen_vs_pred.png", ci),
        "psnr_curves.png": R.fig_psnr_grid(curves[curves.arch.isin(zoo)] if curves is not None else None,
                                           out / "psnr_curves.png"),
        "clf_curves.png": R.fig_clf_curves(t.get("clf_epochs"), out / "clf_curves.png"),
    }
    rho = verd[(verd.hypothesis == "c") & (verd.metric == "rho")]
    decoder_of = {v["arch"]: v["decoder"] for v in ablation(
        (meta.get("preset") or {}).get("study", {}).get("decoder_ablation")
        if isinstance(meta.get("preset"), dict) else None)}
    abl = set(decoder_of)
    dsum = analysis.get("dip_summary", t.get("dip_summary"))  # dead fits marked failed: left out of the curves
    drawn["km_decoders.png"] = G.fig_km_gap(dsum[dsum.arch.isin(abl)] if dsum is not None and abl else None,
                                            out / "km_decoders.png", opt.get("horizon"), opt.get("primary_task"),
                                            curves, opt.get("gap_window"), panel_of=lambda a: f"decoder: {decoder_of.get(a, '?')}")
    md = [f"# {meta.get('title', 'The zoo: generative vs predictive bias across architectures')}", ""]
    md += R.plan_lines(G.plan_info(meta, t))
    md += R.header(meta, runs)
    if len(rho) and np.isfinite(rho.iloc[0].rho):
        r = rho.iloc[0]
        md += [f"Spearman rho (generative gain vs predictive accuracy) over {int(r.n_units)} architectures: "
               f"{R.fmt(r.rho)} [{R.fmt(r.rho_ci_low)}, {R.fmt(r.rho_ci_high)}] ({ci:.0%} percentile bootstrap); "
               f"claim (c), rho < {r.margin:g}: "
               f"**{R.verdict_word(r) if r.decisive else 'exploratory'}**.", ""]
    md += ["## Claims", "", R.claims_intro(opt, ci) + " Claim (e) is tested once per decoder (`e|DECODER`), on "
           "the ablation's generators. Full table: `verdicts.csv`.", "", R.verdict_md(verd, ci)]
    md += ["## Leaderboard", "",
           f"One row per architecture, {opt.get('primary_task') or 'DIP'} task, sorted by generative score. Gain: "
           f"max psnr_gt over the corrupted input (mean over (image, seed) units); acc: final test accuracy at the "
           f"fixed N (mean over seeds); ranks 1 = best. DIP s/step: one step of all the run's seeds together; clf "
           f"img/s: training images per second. Full table: `leaderboard.csv`.", "", _leaderboard_md(lb, ci)]
    md += _stride_md(analysis.get("strides") or {}, ci)
    md += ["## Decoder ablation", "",
           "Each backbone with each decoder (`biasprobe.archs.decoders`: pixelshuffle = linear 1x1 + pixel shuffle; "
           "bilinear = x2 bilinear + 1x1 conv stages; transposed = 4x4 stride-2 transposed conv stages), alone (T), "
           "with convs after (T+kc) or before (kc+T). decoder_range: the largest minus the smallest mean gain over "
           "the decoders for that backbone and variant. Full table: `decoders.csv`.", "", _decoders_md(dec, ci)]
    md += G.power_md(verd, meta)
    md += R.runs_md(runs)
    md += _refits_md(out, meta)
    md += R.plateau_md(t.get("clf_summary"), t.get("clf_epochs"))
    if t.get("choices") is not None:
        md += ["## Calibrated learning rates", "",
               "The ablation generators' learning rates, chosen on the calibration image before the study's runs "
               "(among the settings whose fits peaked; at_edge: the choice is the grid's smallest or largest lr).",
               "", R.markdown_table(t["choices"])]
    return R.close_report(out, md, t, meta, drawn, FIGURES)
