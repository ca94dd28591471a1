"""Claims as contrasts, verdicts, scores and cross-tab on synthetic study tables with known effects."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from biasprobe import BiasprobeError
from biasprobe.analysis import verdicts as V
from biasprobe.studies import generative_vs_predictive as G

TASKS = ("denoise", "inpaint")
IMAGES = tuple(f"im{i}" for i in range(10))  # images are the units of DIP contrasts
SEEDS = (0, 1, 2, 3)
NS = (250, 500, 1000, 2000)
ITERS = 200


def make_tables(gen: dict, pred: dict | None = None, neg: dict | None = None, noise: float = 0.2,
                tasks=TASKS, images=IMAGES, seeds=SEEDS, ns=NS, seed: int = 0):
    """dip_summary and clf_summary with per-arch true gains ``gen`` (dB), accuracies ``pred`` (at N=1000; the
    curve rises 0.05 per doubling of N) and gap-negative steps ``neg`` (None = never negative: censored at the
    stop). Every peak is reached and every classifier plateaued unless a test changes it."""
    rng = np.random.default_rng(seed)
    pred = pred or {}
    neg = neg or {}
    dip = []
    for arch, g in gen.items():
        for t in tasks:
            for i, im in enumerate(images):
                for s in seeds:
                    base = 20.0 + i  # per-image level, shared by all archs (the pairing removes it)
                    gain = g + 0.2 * (i % 3) + noise * rng.normal()
                    ns_ = neg.get(arch, 100.0)
                    dip.append(dict(arch=arch, task=t, image=im, seed=s, baseline_psnr=base, max_psnr_gt=base + gain,
                                    max_psnr_gt_step=50, gain_db=gain, final_psnr_gt=base + gain - 1,
                                    final_gap=-0.5, gap_negative_step=np.nan if ns_ is None else
                                    ns_ + 10 * noise * rng.normal(), gap_censored=ns_ is None, gap_area=10 * gain,
                                    iters=ITERS, patience=100, steps_run=ITERS, stop_step=ITERS - 1,
                                    peak_reached=True, failed=False, sec_per_step=0.01, n_params=1000 + len(arch),
                                    unknown_column="x"))
    clf = []
    for arch, a in pred.items():
        for n in ns:
            for s in seeds:
                acc = a + 0.05 * np.log2(n / 1000) + noise * 0.05 * rng.normal()
                clf.append(dict(arch=arch, n_train=n, seed=s, final_test_acc=acc, best_test_acc=acc + 0.01,
                                final_test_nll=1.5, ece=0.1, shift_consistency_circular=0.9,
                                shift_consistency_padded=0.8, n_params=500 + len(arch), plateaued=True,
                                steps_run=100))
    return pd.DataFrame(dip), pd.DataFrame(clf)


def overall(df):
    return V.overall(df).to_dict()


def rows(df, hyp):
    return df[(df.hypothesis == hyp) & (df.comparison != "overall")]


def row(df, hyp, comparison, metric):
    r = df[(df.hypothesis == hyp) & (df.comparison == comparison) & (df.metric == metric)]
    assert len(r) == 1, df[["hypothesis", "comparison", "metric"]]
    return r.iloc[0]


# ------------------------------------------------------------------------------------------------ claims

def test_hypothesis_a_far_less_as_a_ratio():
    dip, clf = make_tables({"skipnet": 6.0, "vit": 2.0, "swin": 2.5})
    v = G.verdicts(dip, clf)
    a = rows(v, "a")
    assert list(a.comparison) == ["0.5*skipnet - vit", "0.5*skipnet - swin"]
    assert list(a.verdict) == ["supported", "supported"] and overall(v)["a"] == "supported"
    r = a.iloc[0]
    assert r.n_units == len(IMAGES) and r.method == f"paired t over {len(IMAGES)} images"
    # true effect: mean over images i of 0.5 * (6 + e_i) - (2 + e_i) = 1 - 0.5 mean(e_i), e_i = 0.2 (i % 3)
    true = 1 - 0.5 * np.mean([0.2 * (i % 3) for i in range(len(IMAGES))])
    assert r.ci_low < true < r.ci_high

    dip, clf = make_tables({"skipnet": 1.0, "vit": 5.0, "swin": 2.0})
    assert overall(G.verdicts(dip, clf))["a"] == "refuted"
    # a transformer at 60% of skipnet's gain: less, but not "far less" (< 50%): refuted, not supported
    dip, clf = make_tables({"skipnet": 5.0, "vit": 3.0, "swin": 3.0}, noise=0.05)
    assert overall(G.verdicts(dip, clf))["a"] == "refuted"


def test_a_truncated_run_makes_its_rows_inconclusive_and_is_named():
    dip, clf = make_tables({"skipnet": 6.0, "vit": 2.0, "swin": 2.5})
    short = (dip.arch == "vit") & (dip.image == "im1") & (dip.seed == 2) & (dip.task == "denoise")
    dip.loc[short, "peak_reached"] = False
    v = G.verdicts(dip, clf)
    r = row(v, "a", "0.5*skipnet - vit", "gain_db")
    assert r.verdict == "inconclusive" and r.reason == "truncated" and "vit/im1" in r.note
    assert row(v, "a", "0.5*skipnet - swin", "gain_db").verdict == "supported"
    o = v[(v.hypothesis == "a") & (v.comparison == "overall")].iloc[0]
    assert o.verdict == "inconclusive" and "truncated" in o.reason
    # the same run truncated on the other task only: the denoising verdict is untouched, inpainting's is not
    dip.loc[short, "peak_reached"] = True
    dip.loc[short.index[short] if False else (dip.arch == "vit") & (dip.task == "inpaint") & (dip.seed == 2),
            "peak_reached"] = False
    by_task = G.verdicts_by_task(dip, clf)
    assert set(by_task.task) == {"denoise", "inpaint"}
    assert overall(by_task[by_task.task == "denoise"])["a"] == "supported"
    assert overall(by_task[by_task.task == "inpaint"])["a"] == "inconclusive"


def test_failed_runs_are_left_out_and_listed():
    dip, clf = make_tables({"skipnet": 6.0, "vit": 2.0, "swin": 2.5})
    bad = (dip.arch == "vit") & (dip.image == "im0") & (dip.seed == 1)
    dip.loc[bad, ["failed", "gain_db"]] = [True, 99.0]  # a failed run's number must not count
    r = row(G.verdicts(dip, clf), "a", "0.5*skipnet - vit", "gain_db")
    assert r.n_units == len(IMAGES) and "failed runs left out: vit/im0/s1" in r.note  # im0 keeps 3 seeds
    assert r.verdict == "supported"


def test_hypothesis_b_non_superiority_supports_a_tie():
    dip, clf = make_tables({"vit": 3.0, "swin": 3.0})  # a tie: "no better (by 1 dB)" is supported
    v = G.verdicts(dip, clf)
    r = row(v, "b", "swin - vit", "gain_db")
    assert r.kind == "less" and r.margin == 1.0 and r.verdict == "supported" and overall(v)["b"] == "supported"
    dip, clf = make_tables({"vit": 2.0, "swin": 4.0})  # swin 2 dB better: refuted
    assert overall(G.verdicts(dip, clf))["b"] == "refuted"
    dip, clf = make_tables({"vit": 2.0, "swin": 3.0}, noise=1.0)  # at the margin, noisy: inconclusive
    v = G.verdicts(dip, clf)
    assert overall(v)["b"] == "inconclusive" and row(v, "b", "swin - vit", "gain_db").reason == "power"


ARCHS10 = ["skipnet", "unet", "vit", "swin", "3c+vit", "vit+1c", "vit+3c", "3c+swin", "swin+1c", "swin+3c"]


def test_hypothesis_c_rank_agreement_and_power():
    gen = {a: 10.0 - i for i, a in enumerate(ARCHS10)}
    opposite = {a: 0.3 + 0.04 * i for i, a in enumerate(ARCHS10)}
    dip, clf = make_tables(gen, opposite)
    v = G.verdicts(dip, clf)
    c = rows(v, "c").iloc[0]
    assert c.rho == pytest.approx(-1.0) and c.verdict == "supported" and overall(v)["c"] == "supported"
    same = {a: 0.7 - 0.04 * i for i, a in enumerate(ARCHS10)}
    dip, clf = make_tables(gen, same)
    v = G.verdicts(dip, clf)
    assert rows(v, "c").iloc[0].rho == pytest.approx(1.0) and overall(v)["c"] == "refuted"
    # five archs: rho is reported with its interval but cannot decide
    five = ARCHS10[:5]
    dip, clf = make_tables({a: gen[a] for a in five}, {a: opposite[a] for a in five})
    v = G.verdicts(dip, clf)
    c = rows(v, "c").iloc[0]
    assert np.isfinite(c.rho) and c.verdict == "inconclusive" and c.reason == "underpowered"
    assert "5 archs < 10" in c.note


def test_hypothesis_d():
    dip, clf = make_tables({"vit": 3.0, "swin": 3.0}, {"vit": 0.4, "swin": 0.5})
    v = G.verdicts(dip, clf)
    d = rows(v, "d")
    assert list(d.metric) == ["pred_acc", "gain_db", "auc"] and list(d.decisive) == [True, True, False]
    assert list(d.verdict) == ["supported", "supported", ""] and overall(v)["d"] == "supported"  # exploratory: no word
    assert d.effect.iloc[0] == pytest.approx(0.1, abs=0.01)
    dip, clf = make_tables({"vit": 3.0, "swin": 3.0}, {"vit": 0.5, "swin": 0.4})
    assert overall(G.verdicts(dip, clf))["d"] == "refuted"
    dip, clf = make_tables({"vit": 2.0, "swin": 5.0}, {"vit": 0.4, "swin": 0.5})  # swin generatively better
    assert overall(G.verdicts(dip, clf))["d"] == "refuted"
    # the budget check: seeds rerun at twice the steps; a contrast that turns at 2x cannot decide
    dip, clf = make_tables({"vit": 3.0, "swin": 3.0}, {"vit": 0.4, "swin": 0.5})
    _, twice = make_tables({}, {"vit": 0.6, "swin": 0.5}, seeds=(0, 1, 2))
    v = G.verdicts(dip, pd.concat([clf, twice.assign(steps_run=200)], ignore_index=True))
    r = row(v, "d", "swin - vit", "pred_acc")
    assert r.verdict == "inconclusive" and r.reason == "budget-sensitive" and "at 2x" in r.note
    _, twice = make_tables({}, {"vit": 0.4, "swin": 0.5}, seeds=(0, 1, 2))  # the same at 2x: decides
    v = G.verdicts(dip, pd.concat([clf, twice.assign(steps_run=200)], ignore_index=True))
    r = row(v, "d", "swin - vit", "pred_acc")
    assert r.verdict == "supported" and "budget check on 3 seeds" in r.note
    assert len(V.pred_scores(V.split_budgets(clf)[0])) == 2 * len(SEEDS)


def test_hypothesis_e_conv_placement_with_censored_gap_times():
    gen = {"vit": 2.0, "vit+1c": 4.0, "vit+3c": 5.0, "3c+vit": 2.2}
    pred = {"vit": 0.40, "vit+1c": 0.35, "vit+3c": 0.30, "3c+vit": 0.50}
    neg = {"vit": 40.0, "vit+1c": 90.0, "vit+3c": None, "3c+vit": 30.0}
    dip, clf = make_tables(gen, pred, neg)
    v = G.verdicts(dip, clf)
    e = rows(v, "e")
    dec = e[e.decisive]
    assert set(dec.comparison) == {"vit+1c - vit", "vit+3c - vit", "vit+3c - 3c+vit", "3c+vit - vit"}
    assert set(dec.verdict) == {"supported"}, dec[["comparison", "metric", "verdict", "note"]]
    assert overall(v)["e"] == "supported"
    g = row(v, "e", "vit+3c - 3c+vit", "gap_time")
    # vit+3c never crossed (censored at its stop, 199), 3c+vit crossed near 30 on every image: all pairs ordered
    assert g.method.startswith("exact paired Gehan") and g.p_support == pytest.approx(0.5 ** len(IMAGES))
    assert "censored: vit+3c 10, 3c+vit 0" in g.note and g.effect > 150
    # the predictive "reverse pattern" is exploratory: flipping it does not change (e)
    dip, clf = make_tables(gen, dict(pred, **{"3c+vit": 0.30}), neg)
    v = G.verdicts(dip, clf)
    assert overall(v)["e"] == "supported" and not row(v, "e", "3c+vit - vit", "pred_acc").decisive
    # conv layers after that do not help: refuted
    dip, clf = make_tables(dict(gen, **{"vit+3c": 1.0}), pred, neg)
    assert overall(G.verdicts(dip, clf))["e"] == "refuted"
    # the other way round: conv *before* never crosses, conv after crosses early: a refutation, from bounds alone
    dip, clf = make_tables(gen, pred, dict(neg, **{"vit+3c": 20.0, "3c+vit": None}))
    r = row(G.verdicts(dip, clf), "e", "vit+3c - 3c+vit", "gap_time")
    assert r.verdict == "refuted" and r.p_refute == pytest.approx(0.5 ** len(IMAGES))
    # both censored: no bound either way, inconclusive
    dip, clf = make_tables(gen, pred, dict(neg, **{"3c+vit": None}))
    assert row(G.verdicts(dip, clf), "e", "vit+3c - 3c+vit", "gap_time").verdict == "inconclusive"


def test_missing_archs_never_crash():
    dip, clf = make_tables({"skipnet": 5.0, "unet": 4.0}, {"skipnet": 0.5})
    v = G.verdicts(dip, clf)
    assert set(overall(v)) == set("abcde")
    assert set(overall(v).values()) == {"inconclusive"}
    a = rows(v, "a")
    assert (a.reason == "missing runs").all() and a.note.str.startswith("no DIP runs for").all()
    gen = {"skipnet": 8.0, "vit": 2.0, "vit+3c": 5.0}
    dip, clf = make_tables(gen, {"vit": 0.4, "vit+3c": 0.3})
    v = G.verdicts(dip, clf)
    assert not rows(v, "e").comparison.str.contains("swin").any()
    oa = v[(v.hypothesis == "a") & (v.comparison == "overall")].iloc[0]
    assert oa.verdict == "inconclusive" and oa.reason == "missing runs"
    v = G.verdicts(dip, None)
    assert overall(v)["c"] == "inconclusive" and overall(v)["d"] == "inconclusive"


def test_rank_correlation_matches_scipy():
    gen = pd.DataFrame(dict(arch=list("AABBCCDDEE"), gen_score=[1, 3, 5, 5, 2, 2, 9, 7, 4, 4]))
    pred = pd.DataFrame(dict(arch=list("ABCDE"), pred_acc=[0.5, 0.2, 0.9, 0.4, 0.4]))
    r = V.rank_correlation(gen, pred, n_boot=300, seed=1)
    expect = stats.spearmanr([2, 5, 2, 8, 4], [0.5, 0.2, 0.9, 0.4, 0.4]).statistic
    assert r["rho"] == pytest.approx(expect) and r["n_archs"] == 5
    assert r["ci_low"] <= r["ci_high"]
    assert r == V.rank_correlation(gen, pred, n_boot=300, seed=1)
    # constant units within each arch: the interval still has the architectures' own spread (two-level)
    const = pd.DataFrame(dict(arch=list("AABBCCDDEE"), gen_score=[1, 1, 3, 3, 2, 2, 5, 5, 4, 4]))
    r = V.rank_correlation(const, pred, n_boot=300)
    assert r["ci_low"] < r["rho"] <= r["ci_high"]
    # bootstrap ranks vs scipy row by row
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 6))
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    mine = [np.corrcoef(a, b)[0, 1] for a, b in zip(rx, ry)]
    assert np.allclose(mine, [stats.spearmanr(a, b).statistic for a, b in zip(x, y)])


# ------------------------------------------------------------------------------------------------ scores

def test_scores_and_censoring():
    dip, clf = make_tables({"vit": 2.0, "vit+3c": 4.0}, {"vit": 0.4}, neg={"vit": 50.0, "vit+3c": None})
    g = V.gen_scores(dip)  # the primary task (denoise) only: tasks are never averaged
    assert len(g) == 2 * len(IMAGES) * len(SEEDS)
    h = g[g.arch == "vit+3c"]
    assert (h.gap_negative_step == ITERS - 1).all() and (h.gap_negative_censored == 1.0).all()  # at the stop
    one = dip[(dip.arch == "vit") & (dip.image == "im2") & (dip.seed == 3) & (dip.task == "denoise")]
    assert g[(g.arch == "vit") & (g.image == "im2") & (g.seed == 3)].gen_score.iloc[0] == pytest.approx(
        one.gain_db.iloc[0])
    inp = V.gen_scores(dip, "inpaint")
    assert len(inp) == len(g) and not np.allclose(inp.gen_score, g.gen_score)
    assert V.primary_task(dip) == "denoise" and V.primary_task(dip[dip.task == "inpaint"]) == "inpaint"

    p = V.pred_scores(clf)
    assert (p.n_train == 1000).all() and len(p) == len(SEEDS)
    assert V.default_n_train(clf[clf.n_train != 1000]) == 500  # 250, 500, 2000
    assert V.default_n_train(pd.DataFrame(dict(n_train=[100, 300, 900]))) == 300
    p500 = V.pred_scores(clf, n_train=500)
    assert (p500.pred_acc < p.pred_acc).all()


def test_seed_auc_matches_predictive():
    from biasprobe.probes.classify.measures import sample_efficiency_auc

    _, clf = make_tables({}, {"vit": 0.4}, seeds=(5,))
    ref = sample_efficiency_auc(clf, acc="final_test_acc", n_boot=10)
    assert V.seed_auc(clf.n_train, clf.final_test_acc) == pytest.approx(ref.auc.iloc[0])
    assert np.isnan(V.seed_auc([1000], [0.5]))


def test_cross_tab():
    dip, clf = make_tables({"skipnet": 6.0, "vit": 2.0}, {"vit": 0.4, "swin": 0.5})
    curves = pd.DataFrame([dict(arch=a, task="denoise", image="im0", seed=0, step=s, metric=m, value=v)
                           for a in ("skipnet", "vit") for s in (0, 10)
                           for m, v in (("grid_energy_p8", s + (a == "vit")), ("boundary_jump_p8", 1.0))])
    x = V.cross_tab(dip, clf, curves, families={"skipnet": "cnn", "vit": "vit", "swin": "swin"})
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
    best = G.verdicts(dip, clf)
    dip2, clf2 = make_tables({"skipnet": 1.0, "vit": 5.0, "swin": 2.5})
    second = G.verdicts(dip2, clf2)
    s = V.sensitivity(best, second).set_index("hypothesis")
    assert s.loc["a", "status"] == "sensitive" and s.loc["c", "status"] == "robust"
    assert (V.sensitivity(best, best).status == "robust").all()


# ------------------------------------------------------------------------------------------ declarations

def test_every_metric_the_analysis_uses_is_declared():
    from biasprobe.analysis.metrics import METRICS

    dip, clf = make_tables({"skipnet": 6.0, "vit": 2.0, "swin": 2.5, "vit+1c": 3.0},
                           {"skipnet": 0.5, "vit": 0.4, "swin": 0.45, "vit+1c": 0.4})
    used = set(G.verdicts(dip, clf).metric) - {"", "rho"}
    source = {"gain_db": "gen_score", "gap_time": "gap_negative_step"}  # the claims' names for the unit metrics
    assert used and {source.get(m, m) for m in used} <= set(METRICS)
    cross = V.cross_tab(dip, clf)
    assert {m.column(8) for m in METRICS.values()} <= set(cross.columns)
    assert {m.count for m in METRICS.values() if m.count} <= set(cross.columns)


def test_a_declared_dip_metric_reaches_scores_and_cross_tab(monkeypatch):
    from biasprobe.analysis.metrics import METRICS, Metric

    monkeypatch.setitem(METRICS, "final_gap", Metric("final_gap", "gap at the last step (dB)", "dip", "unit",
                                                     "psnr_gt - psnr_obs at the last logged step", header="gap end"))
    dip, clf = make_tables({"vit": 2.0, "swin": 2.5}, {"vit": 0.4})
    dip.loc[dip.arch == "swin", "final_gap"] = 1.0
    assert "final_gap" in V.gen_scores(dip)
    assert V.cross_tab(dip, clf).set_index("arch").final_gap.to_dict() == {"swin": 1.0, "vit": -0.5}


def test_rows_decided_alone_support_a_conjunction_and_power_lines_give_units():
    """Intersection-union: two rows each at p = 0.02 support the claim at alpha 0.025 (Holm would not); a row too
    wide to decide gets the units that would give 80% power (noncentral t) at its effect and spread."""
    def rows(p):
        out = []
        for _ in range(2):
            r = V._row_base(V.diff("x", "a", "b", "gain_db", "greater"), "denoise")
            r.update(p_support=p, p_refute=0.9,
                     _res={"effect": 0.5, "se": 0.5, "sd": 1.0, "n_units": 4, "method": "paired t over 4 images"})
            out.append(r)
        return out

    alone = rows(0.02)
    V._decide(alone, 0.95)
    assert all(r["verdict"] == "supported" for r in alone)
    assert V._overall("x", "denoise", alone)["verdict"] == "supported"
    wide = rows(0.2)
    V._decide(wide, 0.95)
    assert wide[0]["reason"] == "power" and "about 34 images would give 80% power" in wide[0]["note"]


def test_km_figure_marks_an_architecture_whose_fits_all_stopped_before_the_cap(tmp_path, monkeypatch):
    """A generator that stops after its peak (no claim reads its gap) is censored at its stops, so its flat
    Kaplan-Meier line says nothing about resisting the noise: the legend says every fit stopped before the cap
    and the line is dotted; an architecture that ran to the cap keeps a plain label."""
    import matplotlib.pyplot as plt

    dip, _ = make_tables({"a": 3.0, "b": 2.0, "c": 2.0}, neg={"a": 50.0, "b": None, "c": None}, seeds=(0,))
    dip.loc[dip.arch == "b", "stop_step"] = 120  # b stops after its peak, well before the cap (ITERS - 1)
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    assert G.fig_km_gap(dip, tmp_path / "km.png", horizon=ITERS) is not None
    labels = {ln.get_label().split(" ")[0]: (ln.get_label(), ln.get_linestyle())
              for ln in figs[0].axes[0].get_lines() if not ln.get_label().startswith("_")}
    assert "every fit stopped by step" in labels["b"][0] and labels["b"][1] == ":"
    assert "stopped" not in labels["a"][0] and "stopped" not in labels["c"][0] and labels["c"][1] == "-"


def test_km_figure_leaves_failed_fits_out_and_says_so(tmp_path, monkeypatch):
    """A failed (e.g. dead) fit has no gap time to plot: an image is drawn from its lowest seed that did not fail,
    and left out (counted in the label) only when every fit of it failed; a generator all of whose fits failed
    still appears in the legend, with no curve."""
    import matplotlib.pyplot as plt

    dip, _ = make_tables({"a": 3.0, "b": 2.0, "c": 2.0}, neg={"a": 50.0, "b": 60.0, "c": None}, seeds=(0, 1))
    dip = dip[dip.task == V.primary_task(dip)].copy()
    images = sorted(dip.image.unique())
    dip.loc[dip.arch == "c", "failed"] = True
    b = dip.arch == "b"
    dip.loc[b & (dip.image == images[0]), "failed"] = True  # both seeds of image 0: the image is lost
    dip.loc[b & (dip.image == images[1]) & (dip.seed == 0), "failed"] = True  # seed 1 stands in for image 1
    dip.loc[b & (dip.image == images[2]) & (dip.seed == 1), "failed"] = True  # seed 0 is drawn anyway
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    assert G.fig_km_gap(dip, tmp_path / "km.png", horizon=ITERS) is not None
    labels = {ln.get_label().split(" ")[0].rstrip(":"): ln for ln in figs[0].axes[0].get_lines()
              if not ln.get_label().startswith("_")}
    n = len(images)
    assert f"({n - 1}/{n - 1} crossed; 1 image left out: every fit failed)" in labels["b"].get_label()
    assert labels["c"].get_label() == f"c: no curve ({n} images left out: every fit failed)"
    assert len(labels["c"].get_xdata()) == 0
    assert "failed" not in labels["a"].get_label()


def test_a_dead_fit_one_that_never_beat_a_constant_colour_is_failed_and_left_out():
    """mark_dead: the best constant image's psnr_obs is computed from the stored observation (each channel its
    mean); a fit whose best psnr_obs stays below it plus the margin is dead, so failed and out of every contrast;
    fits above it, and every fit when the plan states no margin, are untouched."""
    dip, _ = make_tables({"a": 3.0, "b": 2.0}, seeds=(0,))
    rng = np.random.default_rng(0)
    obs = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    x = obs.astype(float) / 255
    const = 10 * np.log10(1 / ((x - x.mean(axis=(0, 1))) ** 2).mean())
    images = pd.DataFrame([dict(arch=r.arch, task=r.task, image=r.image, seed=r.seed, kind="observed", height=8,
                                width=8, channels=3, data=obs.tobytes()) for r in dip.itertuples()])
    best = {"a": const + 5.0, "b": const + 0.2}  # b creeps up to just above a constant colour: dead at 0.5 dB
    curves = pd.DataFrame([dict(arch=r.arch, task=r.task, image=r.image, seed=r.seed, step=s, metric="psnr_obs",
                                value=best[r.arch] - (100 - s) / 100) for r in dip.itertuples() for s in (0, 50, 100)])
    d = V.mark_dead(dip, curves, images, 0.5)
    assert d.const_psnr_obs.iloc[0] == pytest.approx(const)
    assert not d[d.arch == "a"].dead.any() and d[d.arch == "b"].dead.all() and d[d.arch == "b"].failed.all()
    assert V.mark_dead(dip, curves, images, None) is dip
    r = V.evaluate(V.diff("e", "a", "b", "gain_db", "greater"), V.gen_run_table(d[d.task == d.task.iloc[0]]), None)
    assert r["n_units"] == 0  # b's units are all dead: the contrast reads none


def test_rho_decides_nothing_while_the_plans_units_are_missing():
    """A study still running: the rho row stays 'missing units' (and names the architectures short of them) until
    every architecture has the planned images and classifier seeds; with them all in, it is decided."""
    archs = [f"net{i}" for i in range(12)]
    gen = {a: float(i) for i, a in enumerate(archs)}
    pred = {a: 0.6 - 0.02 * i for i, a in enumerate(archs)}  # reversed ranking: rho = -1, clearly < 0.5
    dip, clf = make_tables(gen, pred, tasks=("denoise",), ns=(1000,))
    rho = {"c": V.RhoClaim(0.5, 10, "less")}
    planned = {"images": len(IMAGES), "seeds": clf.seed.nunique()}

    def row(d, c, want=planned):
        v = V.verdict_table([], {"c": "x"}, d, c, rho=rho, planned=want, n_boot=300)
        return v[v.metric == "rho"].iloc[0]

    assert row(dip, clf).verdict == "supported"
    r = row(dip, clf[~((clf.arch == "net3") & (clf.seed == clf.seed.max()))])  # one classifier seed short
    assert (r.verdict, r.reason) == ("inconclusive", "missing units") and "net3" in r.note
    r = row(dip[~((dip.arch == "net5") & (dip.image == IMAGES[0]))], clf)  # one image short
    assert r.reason == "missing units" and "net5" in r.note
    r = row(dip, clf[clf.arch != "net7"])  # no classifier yet: out of rho's 11 archs, and short of its seeds
    assert r.n_units == 11 and r.reason == "missing units" and "net7" in r.note
    assert row(dip, clf, want=None).verdict == "supported"  # no plan: nothing to wait for
    # a failed fit is made (left out and named), not missing: the row is decided on the units left
    failed = dip.copy()
    failed.loc[(failed.arch == "net5") & (failed.image == IMAGES[0]), "failed"] = True
    assert row(failed, clf).verdict == "supported"


def test_a_contrast_row_reads_failed_fits_as_made_not_missing():
    """evaluate: with every planned image run, a failed fit leaves the row with one image fewer and a note naming
    it, and the row is decided; an image not run yet keeps it 'missing units'."""
    dip, clf = make_tables({"a": 3.0, "b": 0.0}, tasks=("denoise",), seeds=(0,))
    planned = {"images": len(IMAGES)}
    c = V.Contrast("x", (("a", 1.0), ("b", -1.0)), "gain_db", "greater", 0.0)
    runs = V.gen_run_table(dip)
    runs.loc[(runs.arch == "a") & (runs.image == IMAGES[0]), "failed"] = True
    r = V.evaluate(c, runs, None, planned=planned)
    assert r["n_units"] == len(IMAGES) - 1 and r["reason"] == "" and "failed runs left out: a/im0" in r["note"]
    r = V.evaluate(c, runs[runs.image != IMAGES[1]], None, planned=planned)
    assert r["reason"] == "missing units" and f"of the {len(IMAGES)} planned images" in r["note"]
