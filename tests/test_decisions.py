"""The decision layer of the verdicts issue: claim-form rules (intersection-union support, Holm refutation),
censored gap times (exact paired Gehan), the two-level rho interval, power, the plan hash, the sustained and
first-positive gap rules, collapse detection, and the image population."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from biasprobe.analysis import stats
from biasprobe.analysis import verdicts as V
from biasprobe.probes.dip.records import collapse_step, stop_state, sustained_crossing


def _row(p_sup, p_ref, decisive=True):
    r = V._row_base(V.diff("x", "a", "b", "gain_db", "greater"), "denoise")
    r.update(p_support=p_sup, p_refute=p_ref, decisive=decisive)
    return r


def test_intersection_union_supports_two_rows_each_at_p_002():
    rows = [_row(0.02, 0.9), _row(0.02, 0.9)]
    V._decide(rows, 0.95, alpha=0.025)
    assert [r["verdict"] for r in rows] == ["supported", "supported"]  # Holm would give 0.04 each: inconclusive
    assert V._overall("x", "denoise", rows)["verdict"] == "supported"


def test_holm_on_the_refute_side():
    rows = [_row(0.9, 0.02), _row(0.9, 0.02)]
    V._decide(rows, 0.95, alpha=0.025)
    assert [round(r["p_refute_holm"], 3) for r in rows] == [0.04, 0.04]
    assert V._overall("x", "denoise", rows)["verdict"] == "inconclusive"
    rows = [_row(0.9, 0.01), _row(0.01, 0.9)]
    V._decide(rows, 0.95, alpha=0.025)
    assert rows[0]["verdict"] == "refuted" and rows[1]["verdict"] == "supported"
    assert V._overall("x", "denoise", rows)["verdict"] == "refuted"


def test_the_holm_family_is_every_decisive_row_even_one_that_cannot_be_tested():
    # a claim of two decisive rows, one truncated: the other's p_refute 0.02 is Holm-adjusted over both (0.04), so
    # the claim is not refuted on a family made smaller by the missing row
    rows = [_row(0.9, 0.02), _row(0.9, 0.001)]
    rows[1]["reason"] = "truncated"
    V._decide(rows, 0.95, alpha=0.025)
    assert rows[0]["p_refute_holm"] == pytest.approx(0.04) and rows[0]["verdict"] == "inconclusive"
    assert rows[1]["verdict"] == "inconclusive" and math.isnan(rows[1]["p_refute_holm"])
    assert V._overall("x", "denoise", rows)["verdict"] == "inconclusive"


def test_an_accuracy_row_waits_for_the_planned_budget_check():
    pred = pd.DataFrame([dict(arch=a, seed=s, pred_acc=acc + 0.001 * s) for s in range(6)
                         for a, acc in (("A", 0.5), ("B", 0.4))])
    c = V.diff("x", "A", "B", "pred_acc", "greater")
    assert V.evaluate(c, None, pred, planned={"seeds": 6})["reason"] == ""  # no budget check planned
    r = V.evaluate(c, None, pred, planned={"seeds": 6, "double_seeds": 3})
    assert r["reason"] == "missing units" and "0 of the 3 planned seeds at 2x" in r["note"]
    double = pred[pred.seed < 2].assign(pred_acc=lambda d: d.pred_acc + 0.05)
    r = V.evaluate(c, None, pred, pred_double=double, planned={"seeds": 6, "double_seeds": 3})
    assert r["reason"] == "missing units" and "2 of the 3" in r["note"]
    r = V.evaluate(c, None, pred, pred_double=pred[pred.seed < 3], planned={"seeds": 6, "double_seeds": 3})
    assert r["reason"] == "" and "budget check on 3 seeds" in r["note"]


def test_exploratory_rows_get_no_verdict_word():
    rows = [_row(0.001, 0.9, decisive=False)]
    V._decide(rows, 0.95)
    assert rows[0]["verdict"] == "" and rows[0]["reason"] == "exploratory"


def test_gehan_paired_exact_p_on_a_censored_toy_set():
    # A censored at the cap 5000 in 4 of 6 pairs, B crosses early in all: every pair ordered A > B
    a = [5000, 4445, 5000, 5000, 3000, 5000]
    ac = [1, 0, 1, 1, 0, 1]
    b = [900, 800, 1000, 1100, 950, 700]
    g = stats.gehan_paired(a, ac, b, [0] * 6, "greater")
    assert (g["n_for"], g["n_against"], g["n_tied"]) == (6, 0, 0)
    assert g["p_support"] == pytest.approx(1 / 64)
    # one pair against (B later and observed), one unordered (both censored): 4 for, 1 against -> P(X >= 4 | 5)
    g = stats.gehan_paired([5000, 5000, 900, 2000, 2000, 2000], [1, 1, 0, 0, 0, 0],
                           [5000, 800, 1000, 1000, 1000, 1000], [1, 0, 0, 0, 0, 0], "greater")
    assert (g["n_for"], g["n_against"], g["n_tied"]) == (4, 1, 1)
    assert g["p_support"] == pytest.approx(6 / 32)
    # a censored time before the other's event orders nothing
    g = stats.gehan_paired([500], [1], [900], [0], "greater")
    assert g["n_tied"] == 1 and math.isnan(g["p_support"])


def test_rmst_difference_is_the_area_between_km_curves():
    res = stats.rmst_difference([100, 200], [0, 0], [50, 50], [0, 0], horizon=1000)
    assert res["effect"] == pytest.approx(150 - 50)


def test_rmst_interval_resamples_images_and_keeps_the_pairing():
    # image effects shared by both architectures (between-image spread >> the A-B difference): the paired interval
    # resamples images, so the shared spread cancels; two independent KM variances would not let it.
    rng = np.random.default_rng(0)
    base = rng.uniform(500, 3000, 12)
    a, b = base + 300 + rng.normal(0, 20, 12), base
    res = stats.rmst_difference(a, np.zeros(12), b, np.zeros(12), horizon=5000)
    assert res["effect"] == pytest.approx(np.mean(a - b))
    assert res["ci_low"] > 250 and res["ci_high"] < 350
    assert "resampling images" in res["method"] and "restricted times observed" in res["method"]


def test_rmst_interval_with_censoring_at_the_cap_equals_the_refitted_km_bootstrap():
    # censoring only at the cap = horizon: restricted times are observed, so the fast path (mean of per-image
    # differences of min(T, horizon)) is the Kaplan-Meier RMST; an early censoring takes the refitting path
    a, ac = np.array([5000, 5000, 4200, 3100, 5000, 2500]), np.array([1, 1, 0, 0, 1, 0])
    b, bc = np.array([900, 1200, 800, 1500, 700, 1000]), np.zeros(6)
    fast = stats.rmst_difference(a, ac, b, bc, horizon=5000)
    assert fast["effect"] == pytest.approx(np.mean(np.minimum(a, 5000) - b))
    assert fast["ci_low"] <= fast["effect"] <= fast["ci_high"] and "restricted times observed" in fast["method"]
    # censored at the last logged step (4999 of a 5000-step cap), after every crossing: still the empirical curve
    last = stats.rmst_difference(np.where(ac, 4999, a), ac, b, bc, horizon=5000)
    assert "restricted times observed" in last["method"] and last["effect"] == pytest.approx(fast["effect"])
    assert (last["ci_low"], last["ci_high"]) == pytest.approx((fast["ci_low"], fast["ci_high"]))
    # a censoring (2500) before a crossing (3100, 4200): Kaplan-Meier is refitted on every resample
    early = stats.rmst_difference(a, [1, 1, 0, 0, 1, 1], b, bc, horizon=5000, n_resamples=200)
    assert "KM refitted" in early["method"] and early["ci_low"] <= early["effect"] <= early["ci_high"]


def test_two_level_rho_interval_resamples_architectures():
    rng = np.random.default_rng(0)
    archs = [f"a{i}" for i in range(5)]
    order = [0, 2, 1, 4, 3]  # rho = 0.8 across the 5 architectures, units nearly noiseless
    gen = pd.DataFrame([dict(arch=a, image="x", seed=s, gen_score=i + rng.normal(0, 0.01))
                        for i, a in enumerate(archs) for s in range(4)])
    pred = pd.DataFrame([dict(arch=a, seed=s, pred_acc=0.1 * order[i] + rng.normal(0, 0.001))
                         for i, a in enumerate(archs) for s in range(4)])
    r = V.rank_correlation(gen, pred, n_boot=500)
    assert r["rho"] == pytest.approx(0.8)
    # resampling only the units would give [0.8, 0.8]; resampling the architectures too is far wider
    assert r["ci_low"] < 0.5 and r["ci_high"] == pytest.approx(1.0)
    assert r == V.rank_correlation(gen, pred, n_boot=500)  # seeded


def test_power_noncentral_t():
    assert stats.n_for_power(0.5, 1.0, 0.0, "greater") == pytest.approx(34, abs=1)  # d = 0.5, one-sided 0.025
    assert stats.power_t(0.5, 1.0, 0.0, "greater", 34) >= 0.8
    assert math.isinf(stats.n_for_power(-0.2, 1.0, 0.0, "greater"))
    assert stats.n_for_power(-1.56, 0.54, 1.0, "less") <= 4


def test_first_positive_and_sustained_gap_rules():
    steps = np.arange(10)
    dip = np.array([1, 1, -1, 1, 1, -1, -1, -1, -1, -1.0])  # a one-step dip at 2, then a lasting crossing at 5
    assert sustained_crossing(steps, dip, 1) == 2
    assert sustained_crossing(steps, dip, 3) == 5
    assert math.isnan(sustained_crossing(steps[:7], dip[:7], 3))  # not yet confirmed: censored
    assert sustained_crossing(steps, -np.abs(dip), 3) == 0  # never positive: 0 by definition
    # on logged steps: the dip between log steps is not seen at all
    assert math.isnan(sustained_crossing([0, 25, 50, 75], [1.0, 2.0, 1.5, 2.2], 100))


def test_collapse_is_detected_stops_the_fit_and_is_not_a_peak():
    t = np.arange(400)
    psnr_gt = np.where(t < 300, 20 + t / 100, 9.6)  # rising until the collapse at 300, then frozen
    gap = np.where(t < 300, 2.0, 0.5)
    psnr_obs = psnr_gt - gap
    assert collapse_step(psnr_obs, 50, 5.0) == 300
    st = stop_state(psnr_gt[:, None], gap[:, None], patience=50, collapse_db=5.0).iloc[0]
    assert st.collapse_step == 300 and st.peak_status == "cut by divergence" and not st.peak_reached and st.done
    # without the check the frozen net's early peak is "reached"
    st = stop_state(psnr_gt[:, None], gap[:, None], patience=50).iloc[0]
    assert st.peak_reached and not st.done  # the gap never crosses: the stop rule would run to the cap


def test_new_dip_fields_keep_old_run_ids():
    from biasprobe.probes.dip import DIPConfig

    assert not {"gap_window", "stop_on_gap", "collapse_db"} & set(DIPConfig().identity())
    assert DIPConfig(gap_window=100).identity()["gap_window"] == 100


def test_image_draw_is_seeded_and_from_the_population():
    from biasprobe.probes.dip.images import draw_images, population

    pool = population()
    assert len(pool) == 92
    a = draw_images(24, 2026)
    assert a == draw_images(24, 2026) and len(set(a)) == 24 and set(a) <= set(pool)
    assert a != draw_images(24, 2027)
    # a nested draw keeps every image of a smaller one, so a study can add images and keep its runs
    six = draw_images(6, 2027, nested=True)
    assert draw_images(12, 2027, nested=True)[:6] == six and draw_images(24, 2027, nested=True)[:6] == six
    assert a == draw_images(24, 2026, nested=False)  # the default is the draw the standard study was made with


def test_plan_hash_changes_with_a_margin_and_marks_the_report(tmp_path):
    from biasprobe.analysis import report as R
    from biasprobe.studies.runner import load_preset, plan_of_runs

    from biasprobe.studies.presets import PRESET_DIR

    data = json.loads((PRESET_DIR / "standard.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(data, indent=1))
    data["analysis"]["claims"]["b"]["rows"][0][3] = 0.5  # a changed margin
    (tmp_path / "b.json").write_text(json.dumps(data))
    a, b = load_preset(str(tmp_path / "a.json")), load_preset(str(tmp_path / "b.json"))
    assert a.plan_sha256 != b.plan_sha256
    assert load_preset(str(tmp_path / "a.json")).plan_sha256 == load_preset("standard").plan_sha256  # whitespace
    # the plan log attributes runs to the plan they ran under
    (tmp_path / "plans.csv").write_text("started_at,plan_file,plan_sha256\n"
                                        f"2026-01-01T00:00:00+00:00,a.json,{a.plan_sha256}\n"
                                        f"2026-02-01T00:00:00+00:00,b.json,{b.plan_sha256}\n")
    made = plan_of_runs(tmp_path, pd.Series(["2025-12-01T00:00:00+00:00", "2026-01-15T00:00:00+00:00",
                                             "2026-02-15T00:00:00+00:00"]))
    assert list(made) == ["", a.plan_sha256, b.plan_sha256]
    lines = R.plan_lines(dict(file="b.json", sha256=b.plan_sha256, n_images=24, images="drawn", runs_under=1,
                              runs_other=1, runs_unlogged=1, missing_units=""))
    assert "Not every run was made under this plan" in lines[1]


def test_plan_claims_parse_and_gap_rows_read_censored_times():
    from biasprobe.studies import generative_vs_predictive as G
    from biasprobe.studies.runner import load_preset

    pc = G.plan_claims(load_preset("standard").analysis, set())
    labels = {(c.hypothesis, c.label, c.metric, c.kind, c.margin, c.decisive) for c in pc["contrasts"]}
    assert ("a", "0.5*skipnet - vit", "gain_db", "greater", 0.0, True) in labels
    assert ("e", "vit+3c - 3c+vit", "gap_time", "greater", 0.0, True) in labels
    assert ("e", "vit+3c - vit", "pred_acc", "less", 0.0, False) in labels
    assert pc["pairs"] and "c" in pc["rho"]
    # a gap row over 6 images, each ordered the claimed way: exact p = 1/64, supported at 0.025
    rows = []
    for i in range(6):
        rows.append(dict(arch="T+3c", task="denoise", image=f"im{i}", seed=0, gain_db=1.0, peak_reached=True,
                         gap_negative_step=np.nan, gap_area=0.0, stop_step=4999, failed=False))
        rows.append(dict(arch="T", task="denoise", image=f"im{i}", seed=0, gain_db=0.5, peak_reached=True,
                         gap_negative_step=900.0 + i, gap_area=0.0, stop_step=1500, failed=False))
    runs = V.gen_run_table(pd.DataFrame(rows))
    r = V.evaluate(V.diff("e", "T+3c", "T", "gap_time", "greater"), runs, None, horizon=5000)
    assert r["p_support"] == pytest.approx(1 / 64) and r["n_units"] == 6
    assert r["effect"] == pytest.approx(5000 - 902.5)


def test_an_injected_collapse_is_detected_and_ends_the_fit(monkeypatch):
    """A real DIP fit whose weights are shrunk after every update from step 150 on (a net that dies gradually,
    below the backtracking guard's per-step threshold): the collapse check stops it long before its cap, and its
    peak, which came just before the collapse, is "cut by divergence", never "reached"."""
    import torch

    from biasprobe.probes.dip import DIPConfig, run_dip

    orig, count = torch.optim.Adam.step, {"n": 0}

    def dying_step(self, *a, **k):
        out = orig(self, *a, **k)
        count["n"] += 1
        if count["n"] > 150:
            with torch.no_grad():
                for g in self.param_groups:
                    for p in g["params"]:
                        p.mul_(0.8)
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", dying_step)
    cfg = DIPConfig(arch="skipnet", image="astronaut", size=32, task_params={"sigma": 25}, setting="dip", iters=1500,
                    log_every=10, stop="peak", patience=50, collapse_db=3.0, spectral=False,
                    arch_kwargs={"num_scales": 2, "channels_down": 8, "channels_up": 8, "channels_skip": 2})
    s = run_dip(cfg, progress=False).summary.iloc[0]
    assert s.collapsed and 150 <= s.collapse_step < 200
    assert s.peak_status == "cut by divergence" and not s.peak_reached
    assert s.steps_run < 300  # stopped `patience` steps after the collapse, not at the cap of 1500
    assert s.gap_censored and s.gap_censor_step == s.collapse_step


def test_the_gpu_check_runs_its_path_on_a_cpu(tmp_path):
    """benchmarks/gpu_check.py is run rarely (a GPU is lent for minutes): its code path is exercised here on the CPU
    at toy sizes, so the prepared script does not rot."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--device", "cpu", "--sizes", "32", "--archs", "vit", "--dip-steps", "10", "--timed-steps", "2",
              "--no-zoo", "--out", str(tmp_path)])
    cp = pd.read_csv(tmp_path / "cuda_path.csv")
    assert set(cp.check) == {"dip", "classify"} and cp.equal_in_kind.all()
    st = pd.read_csv(tmp_path / "step_times.csv")
    assert list(st.arch) == ["vit"] and st.sec_per_step.iloc[0] > 0


def test_a_row_reading_fewer_units_than_planned_is_inconclusive():
    rows = []
    for i in range(6):
        for arch, gain in (("A", 1.0 + 0.01 * i), ("B", 0.0)):
            rows.append(dict(arch=arch, task="denoise", image=f"im{i}", seed=0, gain_db=gain, peak_reached=True,
                             gap_negative_step=100.0, gap_area=0.0, stop_step=1000, failed=False))
    runs = V.gen_run_table(pd.DataFrame(rows))
    c = V.diff("x", "A", "B", "gain_db", "greater")
    assert V.evaluate(c, runs, None, planned={"images": 6})["reason"] == ""
    r = V.evaluate(c, runs, None, planned={"images": 8})
    assert r["reason"] == "missing units" and r["note"].startswith("6 of the 8 planned images")
    rows_ = [r]
    V._decide(rows_, 0.95)
    assert rows_[0]["verdict"] == "inconclusive"
    assert "images would give 80% power" in rows_[0]["power_note"]  # a power line even while units are missing


def test_a_censored_gap_time_is_the_last_step_a_crossing_could_still_be_seen():
    # a crossing must last gap_window steps to count, so a run that stopped at 4999 without one is known to cross
    # (if ever) after 4999 - 100 + 1 = 4900, not after 4999; a collapse censors at the collapse, the same way
    d = pd.DataFrame([dict(arch="A", task="denoise", image="i", seed=0, gain_db=1.0, peak_reached=True,
                           gap_negative_step=np.nan, gap_area=0.0, stop_step=4999, failed=False, gap_window=100,
                           gap_censor_step=np.nan),
                      dict(arch="A", task="denoise", image="j", seed=0, gain_db=1.0, peak_reached=True,
                           gap_negative_step=np.nan, gap_area=0.0, stop_step=3000, failed=False, gap_window=100,
                           gap_censor_step=2500.0),
                      dict(arch="A", task="denoise", image="k", seed=0, gain_db=1.0, peak_reached=True,
                           gap_negative_step=1200.0, gap_area=0.0, stop_step=1500, failed=False, gap_window=100,
                           gap_censor_step=np.nan)])
    runs = V.gen_run_table(d).set_index("image")
    assert runs.gap_negative_step.to_dict() == {"i": 4900.0, "j": 2401.0, "k": 1200.0}
    assert runs.gap_negative_censored.to_dict() == {"i": True, "j": True, "k": False}


def test_replicate_seeds_estimate_the_spread_and_enter_no_test():
    from biasprobe.studies import generative_vs_predictive as G
    from biasprobe.studies.runner import load_preset
    from tests.test_verdicts import make_tables

    p = load_preset("standard")
    ims = tuple(p.dip.image_names()[:3])
    dip, clf = make_tables({"skipnet": 6.0, "vit": 2.0, "swin": 1.0, "3c+vit": 2.0, "vit+3c": 3.0},
                           {"vit": 0.4, "swin": 0.45}, images=ims, seeds=(0, 1), tasks=("denoise",))
    dip.loc[dip.seed == 1, "gain_db"] += 50.0  # a replicate seed's number must not move any row
    out = G.analyse({"dip_summary": dip, "clf_summary": clf}, p)
    r = out["verdicts"].query("comparison == 'swin - vit' and metric == 'gain_db'").iloc[0]
    assert r.effect == pytest.approx(-1.0, abs=0.3) and r.reason == "missing units"  # 3 of 24 images
    sp = out["seed_spread"].set_index("arch")
    assert (sp.images_with_seeds == 3).all() and (sp.seed_sd_db > 30).all()
    assert len(out["runs"]) == len(dip)  # every run listed, replicates included


def test_the_pair_form_of_c_opposite_alike_and_missing_units():
    """(c)'s pair form: two architectures ordered one way by the gain and the other by accuracy support it (IUT in
    the pair, Holm over pairs and directions); every pair ordered alike refutes it; fewer units than planned decide
    nothing."""
    from tests.test_verdicts import make_tables

    gen, spec = {"A": 5.0, "B": 2.0, "C": 1.0}, {"form": "opposite_pair"}
    texts = {"c": "the probes order some pair oppositely"}

    def table(pred, planned=None):
        dip, clf = make_tables(gen, pred, tasks=("denoise",), ns=(1000,), noise=0.05)
        return V.verdict_table([], texts, dip, clf, pairs={"c": spec}, planned=planned)

    v = table({"A": 0.3, "B": 0.5, "C": 0.6})  # A best generatively, worst predictively
    pairs = v[(v.hypothesis == "c") & v.comparison.str.contains(" vs ")].set_index("comparison")
    assert pairs.loc["A vs B", "verdict"] == "ordered oppositely"
    assert V.overall(v)["c"] == "supported"
    v = table({"A": 0.6, "B": 0.5, "C": 0.3})  # the same order on both probes: every pair alike
    assert set(v[v.comparison.str.contains(" vs ")].verdict) == {"ordered alike"}
    assert V.overall(v)["c"] == "refuted"
    v = table({"A": 0.3, "B": 0.5, "C": 0.6}, planned={"images": 20})
    assert V.overall(v)["c"] == "inconclusive"
    summary = v[(v.hypothesis == "c") & (v.comparison == "some pair ordered oppositely")].iloc[0]
    assert summary.reason == "missing units"  # not "power": the pairs were never tested
    assert (v[v.comparison.str.contains(" vs ")].verdict == "undecided").all()


def test_the_pair_form_power_line_names_each_undecided_pair_and_what_would_decide_it():
    """An undecided pair gets a power line: per probe not decided, the units for 80% power at its estimate (or
    why none), and whether the estimates point to an opposite ordering at all; decided pairs get none."""
    from tests.test_verdicts import make_tables

    dip, clf = make_tables({"A": 2.0, "B": 2.0, "C": 0.0}, {"A": 0.40, "B": 0.40, "C": 0.30}, tasks=("denoise",),
                           ns=(1000,), noise=0.3)
    shift = dict(zip(sorted(dip.image.unique()), [0.3, -0.5] * 5))  # per image: B 0.1 dB below A on average
    dip.loc[dip.arch == "B", "gain_db"] = (dip.loc[dip.arch == "A", "gain_db"].to_numpy()
                                           + dip.loc[dip.arch == "B", "image"].map(shift).to_numpy())
    clf.loc[clf.arch == "B", "final_test_acc"] = clf.loc[clf.arch == "A", "final_test_acc"].to_numpy()  # equal
    v = V.verdict_table([], {"c": "differ"}, dip, clf, pairs={"c": {"form": "opposite_pair"}})
    pairs = v[v.comparison.str.contains(" vs ")].set_index("comparison")
    assert pairs.loc["A vs B", "verdict"] == "undecided"
    note = pairs.loc["A vs B", "power_note"]
    assert "gain 0.1: about" in note and "images for 80% power" in note
    assert "accuracy 0: no sample size decides it" in note and "an estimate is zero" in note
    assert pairs.loc["A vs C", "verdict"] == "ordered alike" and not pairs.loc["A vs C", "power_note"]
    summary = v[v.comparison == "some pair ordered oppositely"].iloc[0]
    assert summary.verdict == "inconclusive" and summary.power_note.startswith("A vs B: ")


def test_c_decided_by_rho_with_the_pair_form_beside_it_truncated_archs_left_out():
    """The zoo's form of (c): rho decides (at least min_archs architectures), the pair form is shown but decides
    nothing; an architecture with a fit short of its peak is left out and named; classifiers still rising are
    named, not a guard, when the plan reads accuracy at the fixed budget."""
    from tests.test_verdicts import make_tables

    archs = [f"a{i}" for i in range(6)]
    gen = {a: float(i) for i, a in enumerate(archs)}
    pred = {a: 0.3 + 0.05 * ((3 * i) % 6) for i, a in enumerate(archs)}  # an order unrelated to gen's
    dip, clf = make_tables(gen, pred, tasks=("denoise",), ns=(1000,), noise=0.02)
    dip.loc[(dip.arch == "a5") & (dip.image == dip.image.iloc[0]), "peak_reached"] = False
    clf.loc[clf.arch == "a1", "plateaued"] = False
    rho = V.RhoClaim(0.5, 5, "less", exclude_truncated=True, guard_plateau=False)
    v = V.verdict_table([], {"c": "differ"}, dip, clf, rho={"c": rho}, pairs={"c": {"decides": "rho"}}, n_boot=300)
    r = v[v.metric == "rho"].iloc[0]
    assert r.decisive and r.n_units == 5 and "left out (a fit short of its peak): a5" in r.note
    assert "still rising" in r.note and "a1" in r.note and r.reason != "not plateaued"
    summary = v[v.comparison == "some pair ordered oppositely"].iloc[0]
    assert not summary.decisive and summary.verdict == "" and summary.reason == "exploratory"
    assert V.overall(v)["c"] == (r.verdict or "inconclusive")
    # the default: a truncated architecture makes rho inconclusive (truncated), a still-rising one not plateaued
    v = V.verdict_table([], {"c": "differ"}, dip, clf, rho={"c": V.RhoClaim(0.5, 5)}, n_boot=300)
    assert v[v.metric == "rho"].iloc[0].reason == "truncated"


@pytest.mark.parametrize("window,collapse_db", [(1, 0.0), (5, 0.0), (5, 3.0), (1, 2.0)])
def test_the_incremental_stop_rule_equals_stop_state_at_every_update(window, collapse_db):
    from biasprobe.probes.dip.records import StopRule

    rng = np.random.default_rng(window * 10 + int(collapse_db))
    T, K, patience = 400, 3, 30
    t = np.arange(T)[:, None]
    psnr_gt = 20 + 5 * np.sin(t / 60 + np.arange(K)) + rng.normal(0, 0.5, (T, K))
    gap = 1.5 * np.cos(t / 40 + np.arange(K)) + rng.normal(0, 0.4, (T, K))
    psnr_gt[250:, 1] -= 12  # a collapse of seed 1 (psnr_obs falls with it)
    psnr_gt[rng.random((T, K)) < 0.01] = np.nan
    rule = StopRule(K, patience, window, True, collapse_db)
    cuts = np.sort(rng.choice(np.arange(1, T), 40, replace=False))
    start = 0
    for end in list(cuts) + [T]:
        rule.update(psnr_gt[start:end], gap[start:end])
        start = end
        want = stop_state(psnr_gt[:end], gap[:end], patience, window, True, collapse_db)
        got = rule.state()
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    if collapse_db:
        assert np.isfinite(rule.state().collapse_step).any()  # the collapse case is exercised
