"""Verdict rules, bootstrap and scores on synthetic study tables with known effects."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from biasprobe import BiasprobeError
from biasprobe import verdicts as V

TASKS = ("denoise", "inpaint")
IMAGES = ("im0", "im1", "im2")
SEEDS = (0, 1, 2, 3)
NS = (250, 500, 1000, 2000)
ITERS = 200


def make_tables(gen: dict, pred: dict | None = None, neg: dict | None = None, noise: float = 0.2,
                tasks=TASKS, images=IMAGES, seeds=SEEDS, ns=NS, seed: int = 0):
    """dip_summary and clf_summary with per-arch true gains ``gen`` (dB), accuracies ``pred`` (at N=1000; the
    curve rises 0.05 per doubling of N) and gap-negative steps ``neg`` (None = never negative)."""
    rng = np.random.default_rng(seed)
    pred = pred or {}
    neg = neg or {}
    dip = []
    for arch, g in gen.items():
        for t in tasks:
            for i, im in enumerate(images):
                for s in seeds:
                    base = 20.0 + i  # per-image level, shared by all archs (the pairing removes it)
                    gain = g + 0.5 * i + noise * rng.normal()
                    ns_ = neg.get(arch, 100.0)
                    dip.append(dict(arch=arch, task=t, image=im, seed=s, baseline_psnr=base, max_psnr_gt=base + gain,
                                    max_psnr_gt_step=50, gain_db=gain, final_psnr_gt=base + gain - 1,
                                    final_gap=-0.5, gap_negative_step=np.nan if ns_ is None else
                                    ns_ + 10 * noise * rng.normal(), gap_area=10 * gain, iters=ITERS,
                                    sec_per_step=0.01, n_params=1000 + len(arch), unknown_column="x"))
    clf = []
    for arch, a in pred.items():
        for n in ns:
            for s in seeds:
                acc = a + 0.05 * np.log2(n / 1000) + noise * 0.05 * rng.normal()
                clf.append(dict(arch=arch, n_train=n, seed=s, final_test_acc=acc, best_test_acc=acc + 0.01,
                                final_test_nll=1.5, ece=0.1, shift_consistency_circular=0.9,
                                shift_consistency_padded=0.8, n_params=500 + len(arch)))
    return pd.DataFrame(dip), pd.DataFrame(clf)


def overall(df):
    return V.overall(df).to_dict()


def rows(df, hyp):
    return df[(df.hypothesis == hyp) & (df.comparison != "overall")]


# ------------------------------------------------------------------------------------------------ rules

def test_decide_rules():
    assert V.decide(0.1, 0.5, "> 0") == "supported"
    assert V.decide(-0.5, -0.1, "> 0") == "refuted"
    assert V.decide(-0.1, 0.5, "> 0") == "inconclusive"
    assert V.decide(0.0, 0.0, "> 0") == "inconclusive"
    assert V.decide(0.1, 0.5, "<= 0") == "refuted"
    assert V.decide(-0.5, -0.1, "<= 0") == "supported"
    assert V.decide(-0.5, 0.1, "<= 0") == "inconclusive"
    assert V.decide(np.nan, np.nan, "> 0") == "inconclusive"
    with pytest.raises(ValueError):
        V.decide(0, 1, ">= 0")


def test_hypothesis_a_supported_refuted_inconclusive():
    dip, clf = make_tables({"skipnet": 6.0, "vit": 2.0, "swin": 2.5})
    v = V.verdicts(dip, clf, n_boot=200)
    assert list(rows(v, "a").verdict) == ["supported", "supported"]
    assert list(rows(v, "a").comparison) == ["skipnet - vit", "skipnet - swin"]
    assert overall(v)["a"] == "supported"
    a = rows(v, "a").iloc[0]
    assert a.n_units == len(IMAGES) * len(SEEDS)
    assert a.ci_low < 4.0 < a.ci_high or abs(a.effect - 4.0) < 0.2  # true skipnet - vit effect is 4 dB

    dip, clf = make_tables({"skipnet": 1.0, "vit": 5.0, "swin": 2.0})
    assert overall(V.verdicts(dip, clf, n_boot=200))["a"] == "refuted"

    # identical runs: every paired difference is 0, the CI is [0, 0] and contains 0
    dip, clf = make_tables({"vit": 3.0, "swin": 3.0})
    same = pd.concat([dip, dip[dip.arch == "vit"].assign(arch="skipnet")])
    v = V.verdicts(same, clf, n_boot=200)
    r = rows(v, "a").iloc[0]
    assert r.effect == 0 and r.ci_low == 0 and r.ci_high == 0 and r.verdict == "inconclusive"
    assert overall(v)["a"] == "inconclusive"


def test_hypothesis_b_no_better():
    dip, clf = make_tables({"vit": 4.0, "swin": 2.0})  # swin measurably worse: "no better" supported
    assert overall(V.verdicts(dip, clf, n_boot=200))["b"] == "supported"
    dip, clf = make_tables({"vit": 2.0, "swin": 4.0})  # swin better: refuted
    assert overall(V.verdicts(dip, clf, n_boot=200))["b"] == "refuted"
    dip, _ = make_tables({"vit": 3.0})
    same = pd.concat([dip, dip.assign(arch="swin")])
    v = V.verdicts(same, None, n_boot=200)
    assert overall(v)["b"] == "inconclusive"
    assert "no better" in rows(v, "b").claim.iloc[0] and "measurably worse" in rows(v, "b").claim.iloc[0]


def test_hypothesis_c_rank_agreement():
    gen = {"skipnet": 8.0, "unet": 6.0, "vit": 4.0, "swin": 2.0, "3c+vit": 0.0}
    opposite = {"skipnet": 0.3, "unet": 0.4, "vit": 0.5, "swin": 0.6, "3c+vit": 0.7}
    dip, clf = make_tables(gen, opposite)
    v = V.verdicts(dip, clf, n_boot=200)
    c = rows(v, "c").iloc[0]
    assert c.rho == pytest.approx(-1.0) and c.effect == pytest.approx(1.5)
    assert c.verdict == "supported" and overall(v)["c"] == "supported"
    assert "0.5" in c.claim

    same = {"skipnet": 0.7, "unet": 0.6, "vit": 0.5, "swin": 0.4, "3c+vit": 0.3}
    dip, clf = make_tables(gen, same)
    v = V.verdicts(dip, clf, n_boot=200)
    c = rows(v, "c").iloc[0]
    assert c.rho == pytest.approx(1.0) and c.rho_ci_low == pytest.approx(1.0)
    assert overall(v)["c"] == "refuted"

    dip, clf = make_tables({"skipnet": 8.0, "vit": 4.0, "swin": 2.0}, {"skipnet": 0.5, "vit": 0.4, "swin": 0.6})
    v = V.verdicts(dip, clf, n_boot=200)
    c = rows(v, "c").iloc[0]
    assert c.verdict == "inconclusive" and ">= 4 archs" in c.note and np.isnan(c.effect)


def test_hypothesis_d():
    dip, clf = make_tables({"vit": 3.0, "swin": 3.0}, {"vit": 0.4, "swin": 0.5}, noise=0.0)
    v = V.verdicts(dip, clf, n_boot=200)
    d = rows(v, "d")
    assert list(d.metric) == ["pred_acc", "auc", "gen_score"]
    assert list(d.verdict) == ["supported", "supported", "inconclusive"]
    assert overall(v)["d"] == "supported"
    assert d.effect.iloc[0] == pytest.approx(0.1) and d.effect.iloc[1] == pytest.approx(0.1)

    dip, clf = make_tables({"vit": 3.0, "swin": 3.0}, {"vit": 0.5, "swin": 0.4})
    assert overall(V.verdicts(dip, clf, n_boot=200))["d"] == "refuted"
    dip, clf = make_tables({"vit": 2.0, "swin": 5.0}, {"vit": 0.4, "swin": 0.5})  # swin generatively better
    assert overall(V.verdicts(dip, clf, n_boot=200))["d"] == "refuted"
    dip, clf = make_tables({"vit": 3.0, "swin": 3.0}, {"vit": 0.45, "swin": 0.45}, noise=0.0)
    assert overall(V.verdicts(dip, clf, n_boot=200))["d"] == "inconclusive"


def test_hypothesis_e_conv_placement():
    gen = {"vit": 2.0, "vit+1c": 4.0, "vit+3c": 5.0, "3c+vit": 1.0}
    pred = {"vit": 0.40, "vit+1c": 0.35, "vit+3c": 0.30, "3c+vit": 0.50}
    neg = {"vit": 40.0, "vit+1c": 90.0, "vit+3c": None, "3c+vit": 30.0}
    dip, clf = make_tables(gen, pred, neg)
    v = V.verdicts(dip, clf, n_boot=200)
    e = rows(v, "e")
    assert len(e) == 8 and set(e.verdict) == {"supported"}, e[["comparison", "metric", "verdict"]]
    assert overall(v)["e"] == "supported"
    censored = e[(e.comparison == "vit+3c - vit") & (e.metric == "gap_negative_step")].iloc[0]
    assert censored.effect == pytest.approx(ITERS - 40.0, abs=2) and "censored" in censored.note

    pred_rev = dict(pred, **{"3c+vit": 0.30})  # conv before the transformer lowers accuracy: refuted
    dip, clf = make_tables(gen, pred_rev, neg)
    assert overall(V.verdicts(dip, clf, n_boot=200))["e"] == "refuted"


def test_missing_archs_never_crash():
    dip, clf = make_tables({"skipnet": 5.0, "unet": 4.0}, {"skipnet": 0.5})
    v = V.verdicts(dip, clf, n_boot=100)
    assert set(overall(v)) == set("abcde")
    assert set(overall(v).values()) == {"inconclusive"}
    a = rows(v, "a")
    assert all(n.startswith("skipped: no DIP runs for") for n in a.note)
    assert "no runs for vit or swin" in v[(v.hypothesis == "e") & (v.comparison == "overall")].note.iloc[0]

    # vit and its hybrids present, swin absent: e evaluates vit rows only, a is partial
    gen = {"skipnet": 8.0, "vit": 2.0, "vit+3c": 5.0}
    dip, clf = make_tables(gen, {"vit": 0.4, "vit+3c": 0.3})
    v = V.verdicts(dip, clf, n_boot=100)
    e = rows(v, "e")
    assert not any(e.comparison.str.contains("swin"))
    assert e[e.comparison == "vit+1c - vit"].note.str.contains("skipped").all()
    assert (e[e.comparison == "vit+1c - vit"].verdict == "inconclusive").all()
    oa = v[(v.hypothesis == "a") & (v.comparison == "overall")].iloc[0]
    assert oa.verdict == "supported" and oa.note == "1 of 2 comparisons evaluated; no runs for swin"
    # no tables at all for one probe
    v = V.verdicts(dip, None, n_boot=100)
    assert overall(v)["d"] in ("inconclusive", "refuted") and overall(v)["c"] == "inconclusive"


# ---------------------------------------------------------------------------------------- bootstrap

def test_bootstrap_deterministic_and_covers_truth():
    dip, clf = make_tables({"skipnet": 5.0, "vit": 3.0}, noise=0.3)
    kw = dict(dip_summary=dip, n_boot=300, seed=7)
    first = V.paired_effect("skipnet", "vit", "gen_score", **kw)
    assert first == V.paired_effect("skipnet", "vit", "gen_score", **kw)
    other = V.paired_effect("skipnet", "vit", "gen_score", **dict(kw, seed=8))
    assert other["ci_low"] != first["ci_low"]
    assert first["ci_low"] < 2.0 < first["ci_high"]
    assert first["ci_high"] - first["ci_low"] < 0.5
    m = V.bootstrap_mean([1.0, 2.0, 3.0, np.nan], n_boot=500)
    assert m["effect"] == 2.0 and m["n_units"] == 3 and 1.0 <= m["ci_low"] < 2.0 < m["ci_high"] <= 3.0


def test_paired_units_only_common_units():
    dip, _ = make_tables({"skipnet": 5.0, "vit": 3.0})
    drop = (dip.arch == "vit") & (dip.image == "im0") & (dip.seed == 0)
    d = V.paired_units("skipnet", "vit", "gen_score", dip[~drop])
    assert len(d) == len(IMAGES) * len(SEEDS) - 1
    # only one task left for a unit: the difference is that task's alone
    drop1 = (dip.arch == "vit") & (dip.image == "im1") & (dip.seed == 1) & (dip.task == "inpaint")
    d = V.paired_units("skipnet", "vit", "gen_score", dip[~drop1])
    sk = dip[(dip.arch == "skipnet") & (dip.image == "im1") & (dip.seed == 1) & (dip.task == "denoise")].gain_db
    vi = dip[(dip.arch == "vit") & (dip.image == "im1") & (dip.seed == 1) & (dip.task == "denoise")].gain_db
    assert d.loc[("im1", 1)] == pytest.approx(float(sk.iloc[0] - vi.iloc[0]))


def test_rank_correlation_matches_scipy():
    gen = pd.DataFrame(dict(arch=list("AABBCCDDEE"), gen_score=[1, 3, 5, 5, 2, 2, 9, 7, 4, 4]))
    pred = pd.DataFrame(dict(arch=list("ABCDE"), pred_acc=[0.5, 0.2, 0.9, 0.4, 0.4]))
    r = V.rank_correlation(gen, pred, n_boot=300, seed=1)
    expect = stats.spearmanr([2, 5, 2, 8, 4], [0.5, 0.2, 0.9, 0.4, 0.4]).statistic
    assert r["rho"] == pytest.approx(expect) and r["n_archs"] == 5
    assert r["ci_low"] <= r["ci_high"]
    assert r == V.rank_correlation(gen, pred, n_boot=300, seed=1)
    # constant units within each arch: every resample gives the same rho
    const = pd.DataFrame(dict(arch=list("AABBCCDDEE"), gen_score=[1, 1, 3, 3, 2, 2, 5, 5, 4, 4]))
    r = V.rank_correlation(const, pred, n_boot=100)
    assert r["ci_low"] == pytest.approx(r["rho"]) and r["ci_high"] == pytest.approx(r["rho"])
    # bootstrap ranks vs scipy row by row
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 6))
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    mine = [np.corrcoef(a, b)[0, 1] for a, b in zip(rx, ry)]
    assert np.allclose(mine, [stats.spearmanr(a, b).statistic for a, b in zip(x, y)])


# ------------------------------------------------------------------------------------------------ scores

def test_scores_and_censoring():
    dip, clf = make_tables({"vit": 2.0, "vit+3c": 4.0}, {"vit": 0.4}, neg={"vit": 50.0, "vit+3c": None})
    g = V.gen_scores(dip)
    assert len(g) == 2 * len(IMAGES) * len(SEEDS) and (g.n_tasks == 2).all()
    h = g[g.arch == "vit+3c"]
    assert (h.gap_negative_step == ITERS).all() and (h.gap_negative_censored == 1.0).all()
    one = dip[(dip.arch == "vit") & (dip.image == "im2") & (dip.seed == 3)]
    assert g[(g.arch == "vit") & (g.image == "im2") & (g.seed == 3)].gen_score.iloc[0] == pytest.approx(
        one.gain_db.mean())

    p = V.pred_scores(clf)
    assert (p.n_train == 1000).all() and len(p) == len(SEEDS)
    assert V.default_n_train(clf[clf.n_train != 1000]) == 500  # 250, 500, 2000
    assert V.default_n_train(pd.DataFrame(dict(n_train=[100, 300, 900]))) == 300
    p500 = V.pred_scores(clf, n_train=500)
    assert (p500.pred_acc < p.pred_acc).all()


def test_seed_auc_matches_predictive():
    from biasprobe.predictive import sample_efficiency_auc

    _, clf = make_tables({}, {"vit": 0.4}, seeds=(5,))
    ref = sample_efficiency_auc(clf, acc="final_test_acc", n_boot=10)
    assert V.seed_auc(clf.n_train, clf.final_test_acc) == pytest.approx(ref.auc.iloc[0])
    assert np.isnan(V.seed_auc([1000], [0.5]))


def test_cross_tab():
    dip, clf = make_tables({"skipnet": 6.0, "vit": 2.0}, {"vit": 0.4, "swin": 0.5})
    curves = pd.DataFrame([dict(arch=a, task="denoise", image="im0", seed=0, step=s, metric=m, value=v)
                           for a in ("skipnet", "vit") for s in (0, 10)
                           for m, v in (("grid_energy_p8", s + (a == "vit")), ("boundary_jump_p8", 1.0))])
    x = V.cross_tab(dip, clf, curves, n_boot=100, families={"skipnet": "cnn", "vit": "vit", "swin": "swin"})
    assert list(x.arch) == ["skipnet", "swin", "vit"]
    x = x.set_index("arch")
    assert np.isnan(x.loc["swin", "gen_score"]) and np.isnan(x.loc["skipnet", "pred_acc"])
    assert x.loc["vit", "gen_score"] == pytest.approx(V.gen_scores(dip).query("arch == 'vit'").gen_score.mean())
    assert x.loc["vit", "gen_ci_low"] < x.loc["vit", "gen_score"] < x.loc["vit", "gen_ci_high"]
    assert x.loc["vit", "grid_energy_p8"] == 11 and x.loc["skipnet", "grid_energy_p8"] == 10
    assert x.loc["swin", "pred_acc"] > x.loc["vit", "pred_acc"] and x.loc["vit", "n_seeds"] == len(SEEDS)
    assert x.loc["vit", "family"] == "vit" and x.loc["vit", "shift_consistency"] == pytest.approx(0.9)
    assert V.family_of("7c+notanarch") == "hybrid" and V.family_of("notanarch") == "other"


def test_sensitivity():
    dip, clf = make_tables({"skipnet": 6.0, "vit": 2.0, "swin": 2.5})
    best = V.verdicts(dip, clf, n_boot=100)
    dip2, clf2 = make_tables({"skipnet": 1.0, "vit": 5.0, "swin": 2.5})
    second = V.verdicts(dip2, clf2, n_boot=100)
    s = V.sensitivity(best, second).set_index("hypothesis")
    assert s.loc["a", "status"] == "sensitive" and s.loc["c", "status"] == "robust"
    assert (V.sensitivity(best, best).status == "robust").all()


# ------------------------------------------------------------------------------------------ declarations

def test_every_metric_the_analysis_uses_is_declared():
    from biasprobe.metrics import METRICS

    dip, clf = make_tables({"skipnet": 6.0, "vit": 2.0, "swin": 2.5, "vit+1c": 3.0},
                           {"skipnet": 0.5, "vit": 0.4, "swin": 0.45, "vit+1c": 0.4})
    used = set(V.verdicts(dip, clf, n_boot=20).metric) - {"", "rho_threshold - rho"}
    assert used and used <= set(METRICS)
    cross = V.cross_tab(dip, clf, n_boot=20)
    assert {m.column(8) for m in METRICS.values()} <= set(cross.columns)
    assert {m.count for m in METRICS.values() if m.count} <= set(cross.columns)
    with pytest.raises(BiasprobeError, match="unknown metric"):
        V.paired_units("vit", "swin", "ece", dip, clf)  # declared, but has no per-unit values


def test_a_declared_dip_metric_reaches_scores_cross_tab_and_paired_effects(monkeypatch):
    from biasprobe.metrics import METRICS, Metric

    monkeypatch.setitem(METRICS, "final_gap", Metric("final_gap", "gap at the last step (dB)", "dip", "unit",
                                                     "psnr_gt - psnr_obs at the last logged step", header="gap end"))
    dip, clf = make_tables({"vit": 2.0, "swin": 2.5}, {"vit": 0.4})
    dip.loc[dip.arch == "swin", "final_gap"] = 1.0
    assert "final_gap" in V.gen_scores(dip)
    assert V.cross_tab(dip, clf, n_boot=20).set_index("arch").final_gap.to_dict() == {"swin": 1.0, "vit": -0.5}
    assert V.paired_effect("swin", "vit", "final_gap", dip, clf, n_boot=20)["effect"] == pytest.approx(1.5)
