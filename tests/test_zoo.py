"""The zoo study (biasprobe/studies/zoo.py) on synthetic tables with known rankings, its presets, the decoder
ablation's grid, names carrying keyword arguments, and the studies registry."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from biasprobe import studies
from biasprobe.archs import registry
from biasprobe.errors import BiasprobeError
from biasprobe.probes.classify.plan import classify_configs
from biasprobe.probes.dip.plan import dip_configs
from biasprobe.studies.runner import load_preset
from biasprobe.studies import zoo as Z
from tests.test_verdicts import IMAGES, make_tables

ZOO = [f"timm:net{i}" for i in range(12)]
SPEC = {"backbones": ["vit"], "decoders": ["pixelshuffle", "bilinear"], "convs_after": [3], "convs_before": [3]}


def _preset(archs=ZOO, spec=SPEC):
    p = load_preset("zoo-preview")
    return dataclasses.replace(p, archs=list(archs), study={"families": {a: "fam" + a[-1] for a in archs},
                                                           "decoder_ablation": spec})


def _tables(gen: dict, pred: dict, **kw):
    dip, clf = make_tables(gen, pred, tasks=("denoise",), ns=(1000,), **kw)
    clf["train_images_per_s"] = 100.0
    return {"dip_summary": dip, "clf_summary": clf}


def test_registry_lists_each_study_module_and_refuses_unknown_names_in_one_line():
    assert studies.names() == ["conv_placement", "generative_vs_predictive", "zoo"]
    assert "zoo study" in studies.describe("zoo")
    with pytest.raises(BiasprobeError, match="no study 'nope': one of conv_placement, generative_vs_predictive, zoo"):
        studies.get("nope")


def test_presets_cover_20_archs_in_5_families_and_the_ablation_runs_dip_only():
    from biasprobe.studies.runner import calibrated_archs

    for name, n_dip_only in (("zoo", 2 * 3), ("zoo-gpu", 3 * 3 * 4), ("zoo-preview", 2 * 3 * 3)):
        p = Z.prepare(load_preset(name))
        fams = p.study["families"]
        assert len(p.archs) >= 20 and set(p.archs) == set(fams) and len(set(fams.values())) >= 5
        assert len(p.dip.extra_archs) == n_dip_only
        lrs = {a: 3e-4 for a in calibrated_archs(p, "dip", p.dip)}
        dip_archs = {r["config"]["arch"] for r in dip_configs(p, lrs)}
        clf_archs = {r["config"]["arch"] for r in classify_configs(p)}
        assert clf_archs == set(p.archs) and dip_archs == set(p.archs) | set(p.dip.extra_archs)
        assert "vit[decoder=bilinear]+3c" in dip_archs and "3c+vit[decoder=pixelshuffle]" in dip_archs
    gpu, cpu = load_preset("zoo-gpu"), load_preset("zoo")
    assert (gpu.dip.size, gpu.dip.iters, len(gpu.dip.seeds)) == (512, 5000, 5)  # the seed's sizes
    assert gpu.archs == cpu.archs


def test_the_cpu_zoo_plan_one_cap_drawn_images_calibrated_ablation():
    """The redesigned zoo: one cap for every generator, images drawn from the colour sets (one seed each), the
    ablation's 6 generators calibrated and waiting for their gap crossing, the zoo's at the seed's lr; the plan's
    decoder claims parse."""
    from biasprobe.studies.runner import calibrated_archs
    from biasprobe.studies import generative_vs_predictive as G

    p = Z.prepare(load_preset("zoo"))
    abl = p.dip.extra_archs
    assert calibrated_archs(p, "dip", p.dip) == abl and calibrated_archs(p, "classify", p.classify) == []
    runs = dip_configs(p, {a: 3e-4 for a in abl})
    assert {r["config"]["iters"] for r in runs} == {12000} and {len(r["config"]["seeds"]) for r in runs} == {1}
    assert len({r["config"]["image"] for r in runs}) == 6
    lr = {r["config"]["arch"]: r["config"]["lr"] for r in runs}
    assert all(lr[a] == 3e-4 for a in abl) and all(lr[a] == 1e-4 for a in p.archs)
    waits = {r["config"]["arch"]: r["config"].get("stop_on_gap", True) for r in runs}
    assert all(waits[a] for a in abl) and not any(waits[a] for a in p.archs)
    pc = G.plan_claims(p.analysis, set())
    assert set(pc["texts"]) == {"c", "e|pixelshuffle", "e|bilinear", "s", "i"} and pc["rho"]["c"].min_archs == 17
    # (c): rho decides, the pair form is shown beside it; truncated architectures are left out of rho by name
    assert pc["pairs"]["c"]["decides"] == "rho" and pc["rho"]["c"].exclude_truncated
    assert p.dip.images["draw"]["nested"] is True  # more images later keep these 6 and their runs
    (inter,) = [c for c in pc["contrasts"] if c.hypothesis == "i"]
    assert dict(inter.weights) == {"vit[decoder=bilinear]+3c": 1.0, "vit[decoder=bilinear]": -1.0,
                                   "vit[decoder=pixelshuffle]+3c": -1.0, "vit[decoder=pixelshuffle]": 1.0}
    base = p.dip.calibration_base({"image": "chelsea"})
    assert base["stop"] == "peak" and base["stop_on_gap"] is False and base["iters"] == 12000


def test_the_zoo_plan_decides_the_decoder_question_from_synthetic_tables():
    """Convs after vit add 3 dB with its own decoder and cost 1 dB with the bilinear one, which alone adds 3 dB: (e)
    holds per pixelshuffle, fails per bilinear, the smoothing decoder alone adds, and the interaction is negative."""
    p = Z.prepare(load_preset("zoo"))
    ps, bi = "vit[decoder=pixelshuffle]", "vit[decoder=bilinear]"
    gen = {a: 0.0 for a in p.archs}
    gen.update({ps: 1.0, f"{ps}+3c": 4.0, f"3c+{ps}": 1.0, bi: 4.0, f"{bi}+3c": 3.0, f"3c+{bi}": 4.0})
    neg = {a: 100.0 for a in gen}
    neg[f"{ps}+3c"] = None  # never crosses: censored at the stop
    t = _tables(gen, {a: 0.3 for a in p.archs}, neg=neg)
    out = Z.analyse(t, p)
    o = out["verdicts"][out["verdicts"].comparison == "overall"].set_index("hypothesis").verdict
    assert o["e|pixelshuffle"] == "supported" and o["e|bilinear"] == "refuted"
    assert o["i"] == "supported"
    s = out["verdicts"][(out["verdicts"].hypothesis == "s") & (out["verdicts"].metric == "gain_db")].iloc[0]
    assert s.verdict == "supported" and s.effect == pytest.approx(3.0, abs=0.3)
    # (c) as planned: rho over the 20 decides; the pair form over them is shown, exploratory
    v = out["verdicts"][out["verdicts"].hypothesis == "c"]
    assert v[v.metric == "rho"].iloc[0].decisive and v[v.metric == "rho"].iloc[0].n_units == 20
    pairs = v[v.comparison.str.contains(" vs ")]
    assert len(pairs) == 20 * 19 // 2
    assert v[v.comparison == "some pair ordered oppositely"].iloc[0].reason == "exploratory"


def test_zoo_report_km_per_decoder_and_power_lines(tmp_path):
    import dataclasses

    p = Z.prepare(load_preset("zoo"))
    ps, bi = "vit[decoder=pixelshuffle]", "vit[decoder=bilinear]"
    gen = {a: 0.0 for a in p.archs}
    gen.update({ps: 1.0, f"{ps}+3c": 1.2, f"3c+{ps}": 1.0, bi: 1.1, f"{bi}+3c": 1.0, f"3c+{bi}": 1.1})
    t = _tables(gen, {a: 0.3 for a in p.archs}, neg={a: 100.0 for a in gen})
    out = Z.analyse(t, p)
    path = Z.write_report(tmp_path, t, out, {"wall_seconds": 60.0, "device": "cpu",
                                             "preset": dataclasses.asdict(p)})
    text = path.read_text()
    assert "## Power of the undecided rows" in text
    from PIL import Image

    w, h = Image.open(tmp_path / "km_decoders.png").size
    assert w > 1.8 * h  # one panel per decoder, side by side


def test_name_keywords_round_trip():
    for name, kw in (("3c+vit+1c", {"decoder": "bilinear"}),
                     ("timm:swin_tiny_patch4_window7_224[depths=[1,1,2,1]]", {"decoder": "transposed"})):
        named = registry.with_kwargs(name, **kw)
        plain, got = registry.split_kwargs(named)
        assert registry.split_kwargs(name)[0] == plain and got == {**registry.split_kwargs(name)[1], **kw}
    assert registry.split_kwargs("timm:x[depths=[1,2],a=1.5,b=True,c=text]") == (
        "timm:x", {"depths": [1, 2], "a": 1.5, "b": True, "c": "text"})
    with pytest.raises(BiasprobeError, match="unclosed"):
        registry.split_kwargs("vit[depth=2")


def test_rho_is_decided_over_the_zoo_and_the_ablation_is_left_out_of_it():
    rng = np.random.default_rng(0)
    gen = {a: float(g) for a, g in zip(ZOO, rng.permutation(12))}
    pred = {a: 0.3 + 0.02 * gen[a] for a in ZOO}  # the same ranking: rho = 1, clearly above 0.5
    gen.update({a["arch"]: 1.0 for a in Z.ablation(SPEC)})
    out = Z.analyse(_tables(gen, pred), _preset())
    rho = out["verdicts"][(out["verdicts"].hypothesis == "c") & (out["verdicts"].comparison != "overall")].iloc[0]
    assert rho.n_units == 12 and rho.rho == pytest.approx(1.0) and rho.verdict == "refuted"
    lb = out["leaderboard"]
    assert list(lb.arch) == sorted(ZOO, key=lambda a: -gen[a])  # ablation variants are not on the leaderboard
    assert (lb.gen_rank == lb.pred_rank).all() and lb.family.str.startswith("fam").all()
    assert {"dip_sec_per_step", "clf_images_per_s", "share_peak_reached", "share_plateaued"} <= set(lb.columns)

    anti = {a: 0.6 - 0.02 * gen[a] for a in ZOO}  # the reversed ranking: rho = -1 < 0.5
    v = Z.analyse(_tables(gen, anti), _preset())["verdicts"]
    assert v[(v.hypothesis == "c") & (v.comparison == "overall")].verdict.item() == "supported"
    for noise_seed, words in ((0, "architectures would give 80% power at this rho"),
                              (2, "rho is not on the claimed side of 0.5")):  # undecided: a power line either way
        noisy = np.random.default_rng(noise_seed)
        mixed = {a: 0.3 + 0.02 * gen[a] + 0.1 * noisy.normal() for a in ZOO}
        v = Z.analyse(_tables(gen, mixed), _preset())["verdicts"]
        row = v[(v.hypothesis == "c") & (v.metric == "rho")].iloc[0]
        assert row.verdict == "inconclusive" and row.reason == "power" and words in row.power_note
    few = Z.analyse(_tables({a: gen[a] for a in ZOO[:5]}, pred), _preset(ZOO[:5]))["verdicts"]
    assert few[(few.hypothesis == "c") & (few.comparison == "overall")].reason.item() == "underpowered"


def test_decoder_table_and_claim_e_per_decoder():
    # pixelshuffle: convs after add 3 dB and convs before nothing (e holds); bilinear: convs after cost 2 dB
    gen = {a: 0.0 for a in ZOO}
    effect = {("pixelshuffle", "T+3c"): 3.0, ("bilinear", "T+3c"): -2.0}
    for v in Z.ablation(SPEC):
        gen[v["arch"]] = effect.get((v["decoder"], v["variant"]), 0.0)
    neg = {a: (None if a == "vit[decoder=pixelshuffle]+3c" else 100.0) for a in gen}
    pred = {a: 0.3 for a in ZOO}
    t = _tables(gen, pred, neg=neg)
    out = Z.analyse(t, _preset())
    d = out["decoders"]
    assert len(d) == len(Z.ablation(SPEC)) and set(d.decoder) == {"pixelshuffle", "bilinear"}
    row = d[(d.variant == "T+3c") & (d.decoder == "pixelshuffle")].iloc[0]
    # make_tables adds 0.2 (i % 3) dB on image i; the range is over the two decoders: 3 - (-2)
    shift = np.mean([0.2 * (i % 3) for i in range(len(IMAGES))])
    assert row.gain_db == pytest.approx(3.0 + shift, abs=0.3) and row.decoder_range == pytest.approx(5.0, abs=0.5)
    assert row.gap_censored_share == 1.0
    assert (d.n_failed == 0).all()
    v = out["verdicts"]
    o = v[v.comparison == "overall"].set_index("hypothesis").verdict
    assert o["e|pixelshuffle"] == "supported"
    assert o["e|bilinear"] == "refuted"
    # a failed fit leaves the gain and is counted beside it
    dead = "vit[decoder=bilinear]+3c"
    before = d.set_index("arch").loc[dead, "n_units"]
    first = t["dip_summary"][(t["dip_summary"].arch == dead)].index[0]
    t["dip_summary"].loc[first, "failed"] = True
    d = Z.analyse(t, _preset())["decoders"].set_index("arch")
    assert d.loc[dead, "n_failed"] == 1 and d.loc[dead, "n_units"] == before - 1


def test_zoo_report_from_synthetic_tables(tmp_path):
    rng = np.random.default_rng(1)
    gen = {a: float(g) for a, g in zip(ZOO, rng.permutation(12))}
    gen.update({a["arch"]: 1.0 for a in Z.ablation(SPEC)})
    t = _tables(gen, {a: 0.3 + 0.01 * rng.normal() for a in ZOO})
    out = Z.analyse(t, _preset())
    path = Z.write_report(tmp_path, t, out, {"wall_seconds": 60.0, "device": "cpu"})
    text = path.read_text()
    assert "Spearman rho (generative gain vs predictive accuracy) over 12 architectures" in text
    assert "## Leaderboard" in text and "## Decoder ablation" in text and "(e\\|bilinear)" in text
    for f in ("leaderboard.csv", "decoders.csv", "verdicts.csv", "gen_vs_pred.png"):
        assert (tmp_path / f).is_file()
    assert pd.read_csv(tmp_path / "leaderboard.csv").arch.nunique() == 12
    assert "Not every fit of the row reached its peak" not in text  # every synthetic fit peaked


def test_decoder_table_marks_gains_read_before_the_peak():
    d = pd.DataFrame(dict(backbone="vit", variant=["T", "T"], decoder=["pixelshuffle", "bilinear"],
                          gain_db=[2.9, 4.0], ci_low=[1.7, 2.4], ci_high=[4.2, 5.7], n_units=6, n_failed=0,
                          gap_negative_step=[400.0, 17000.0], gap_censored_share=[0.0, 1.0],
                          share_peak_reached=[1.0, 0.5], decoder_range=1.1))
    md = Z._decoders_md(d, 0.95)
    rows = [line for line in md.splitlines() if line.startswith("| vit")]
    assert Z.TRUNCATED_MARK not in rows[0] and Z.TRUNCATED_MARK in rows[1]
    assert "Not every fit of the row reached its peak" in md


def test_runs_go_architecture_by_architecture():
    """A study stopped part-way has whole architectures: both probes of the first archs, the DIP-only extras last."""
    from biasprobe.studies.runner import by_arch

    p = Z.prepare(load_preset("zoo-preview"))
    runs = by_arch(p, dip_configs(p) + classify_configs(p))
    archs = [r["config"]["arch"] for r in runs]
    first = [a for i, a in enumerate(archs) if a not in archs[:i]]
    assert first == p.archs + p.dip.extra_archs
    head = runs[:3]  # arch 1: its DIP run, then its classifiers
    assert [r["probe"] for r in head] == ["dip", "classify", "classify"] and len({r["config"]["arch"] for r in head}) == 1


def test_stride_analysis_groups_generators_by_their_decoders_upsampling():
    """Exploratory: each architecture's output stride comes from the registry at the fits' own size (vit: its
    patch, 8 at 128 px; a stride-32 timm backbone: 32); the table groups mean gains by stride, rho(gain, stride)
    has the sign of the synthetic data, and a name the registry cannot size is left blank, not fatal."""
    gen = {"vit": 3.0, "timm:vit_tiny_patch16_224[depth=4]": 2.0, "timm:resnet10t": 1.0, "timm:resnet18": 0.5,
           "timm:nosuchnet": 0.0}
    t = _tables(gen, {a: 0.3 + 0.01 * g for a, g in gen.items()})
    dip = t["dip_summary"].assign(height=128, width=128)
    sa = Z.stride_analysis(dip, t["clf_summary"], "denoise", n_boot=200)
    assert sa["stride"]["vit"] == 8 and sa["stride"]["timm:resnet10t"] == 32 and np.isnan(sa["stride"]["timm:nosuchnet"])
    table = sa["table"].set_index("stride")
    assert list(table.index) == [8, 16, 32] and table.loc[32, "n_archs"] == 2
    assert table.loc[32, "archs"] == "timm:resnet10t, timm:resnet18"
    assert sa["rho_stride"]["rho"] < -0.9 and sa["rho_stride"]["n_archs"] == 4
    assert sa["rho_within"]["stride"] == 32 and sa["rho_within"]["n_archs"] == 2  # too few for a rho: said so
    md = "\n".join(Z._stride_md(sa, 0.95))
    assert "(exploratory, not in the plan)" in md and "Spearman rho of gain vs stride over 4 architectures" in md
    assert "Within the stride-32 architectures" in md and "no rho (2 architectures with both scores" in md
    assert Z._stride_md({}, 0.95) == []
    # an architecture with a fit short of its peak is left out of both rhos and named, as claim (c) reads rho
    dip.loc[dip.arch == "timm:resnet18", "peak_reached"] = False
    sa = Z.stride_analysis(dip, t["clf_summary"], "denoise", n_boot=200)
    assert sa["truncated"] == ["timm:resnet18"] and sa["rho_stride"]["n_archs"] == 3
    assert "timm:resnet18 left out: a fit short of its peak" in "\n".join(Z._stride_md(sa, 0.95))
