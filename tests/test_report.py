"""The studies' write_report / conv_placement.figure on small synthetic study tables (analysed by their analyse /
conv_placement_table); the Markdown table helper; labels and headers from the metric declarations."""

import re

import numpy as np
import pandas as pd
import pytest

from biasprobe.analysis import report as R
from biasprobe.analysis import verdicts as V
from biasprobe.studies import conv_placement as CP
from biasprobe.studies import generative_vs_predictive as G
from test_verdicts import make_tables

GEN = {"skipnet": 6.0, "vit": 2.0, "swin": 2.2, "vit+1c": 4.0, "vit+3c": 5.0, "3c+vit": 1.0}
PRED = {"skipnet": 0.5, "vit": 0.40, "swin": 0.45, "vit+1c": 0.35, "vit+3c": 0.30, "3c+vit": 0.50}
STEPS = range(0, 60, 10)


def make_curves(dip: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in dip.itertuples(index=False):
        for s in STEPS:
            gt = r.baseline_psnr + r.gain_db * s / 50
            obs = r.baseline_psnr + 0.3 * s
            vals = dict(psnr_gt=gt, psnr_obs=obs, psnr_gt_ema=gt, gap=gt - obs, grid_energy_p8=1 + s / 100,
                        boundary_jump_p8=1.0 + len(r.arch) / 10, loss=1 / (1 + s))
            vals.update({f"fbc_band{k}": min(1.0, s / 50 / (k + 1)) for k in range(5)})
            rows += [dict(arch=r.arch, task=r.task, image=r.image, seed=r.seed, step=s, metric=m, value=v)
                     for m, v in vals.items()]
    return pd.DataFrame(rows)


def make_images(dip: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for (task, image, seed), g in dip.groupby(["task", "image", "seed"]):
        for kind, arch in [("clean", ""), ("observed", "")] + [("best", a) for a in sorted(g.arch.unique())]:
            img = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
            rows.append(dict(arch=arch, task=task, image=image, seed=seed, kind=kind, height=8, width=12,
                             channels=3, data=img.tobytes()))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables():
    dip, clf = make_tables(GEN, PRED, {"vit+3c": None}, images=("im0", "im1"), seeds=(0, 1, 2), noise=0.5)
    # step-budget curves: accuracy at steps 10..100, rising to the run's final accuracy
    epochs = pd.concat([clf.assign(step=s, epoch=s / 8, train_loss=1.0, train_acc=0.5,
                                   test_acc=clf.final_test_acc * min(1.0, s / 80), test_nll=1.0, lr=1e-3, seconds=1.0)
                        for s in range(10, 101, 10)])[["arch", "n_train", "seed", "step", "epoch", "train_loss",
                                                        "train_acc", "test_acc", "test_nll", "lr", "seconds"]]
    cal = pd.DataFrame([dict(arch=a, probe=p, lr=lr, score=-abs(np.log10(lr) + 2.5) + (a == "vit"))
                        for a in ("skipnet", "vit") for p in ("dip", "classify") for lr in (1e-4, 1e-3, 1e-2)])
    choices = pd.DataFrame([dict(arch=a, probe=p, lr=1e-3, score=-0.5 + (a == "vit"), second_lr=1e-2,
                                 second_score=-0.5 + (a == "vit")) for a in ("skipnet", "vit")
                            for p in ("dip", "classify")])
    return dict(dip_summary=dip, dip_curves=make_curves(dip), clf_summary=clf, clf_epochs=epochs,
                images=make_images(dip), calibration=cal, choices=choices)


META = dict(command="python studies/generative_vs_predictive.py --preset smoke", preset="smoke",
            versions={"torch": "2.x", "biasprobe": "0.1"}, git_commit="abc123", device="cpu",
            wall_time_s=12.5, n_boot=100)


def test_markdown_table():
    df = pd.DataFrame(dict(name=["a|b", "c\nd"], x=[1.23456, np.nan], n=[3, 4000]))
    md = R.markdown_table(df)
    lines = md.strip().split("\n")
    assert lines[0] == "| name | x | n |" and lines[1] == "|---|---|---|"
    assert lines[2] == "| a\\|b | 1.23 | 3 |" and lines[3] == "| c d |  | 4000 |"
    assert R.markdown_table(df.set_index("name"), index=True).startswith("| name | x | n |")
    assert R.fmt(123.456) == "123.5" and R.fmt(0.012345) == "0.0123" and R.fmt(2.0) == "2" and R.fmt(None) == ""


def test_decode_image_roundtrip():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    row = dict(height=2, width=3, channels=3, data=img.tobytes())
    assert np.array_equal(R.decode_image(row), img)


@pytest.fixture(scope="module")
def full_report(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, G.write_report(out, tables, G.analyse(tables, n_boot=100), META).read_text()


def test_write_report(full_report, tables):
    tmp_path, text = full_report
    for h in "abcde":
        assert f"**({h})**" in text
        assert re.search(rf"\| \*\*\({h}\)\*\* \| \*\*overall\*\* \|", text)
    assert META["command"] in text and "abc123" in text and "torch 2.x" in text and "12 s" in text
    assert "What the data do not support" in text
    for name, _ in G.FIGURES:
        assert (tmp_path / name).stat().st_size > 1000, name
        assert f"]({name})" in text
    for name in ("cross_tab.csv", "cross_tab.md", "verdicts.csv"):
        assert (tmp_path / name).exists()
    cross = pd.read_csv(tmp_path / "cross_tab.csv")
    expect = V.cross_tab(tables["dip_summary"], tables["clf_summary"], tables["dip_curves"], n_boot=100)
    assert np.allclose(cross.gen_score, expect.gen_score) and np.allclose(cross.gen_ci_low, expect.gen_ci_low)
    v = pd.read_csv(tmp_path / "verdicts.csv")
    assert set(v.verdict.fillna("")) <= set(V.ROW_VERDICTS)
    # the reading restates the computed numbers
    a = v[(v.hypothesis == "a") & (v.comparison == "0.5*skipnet - vit")].iloc[0]
    assert f"effect {R.fmt(a.effect)}" in text
    # every DIP run's peak and gap crossing is listed; none is truncated here
    assert "## DIP runs: peaks, gap crossings, stops" in text and "Truncated" in text
    assert (tmp_path / "dip_runs.csv").exists() and "## Classifier budgets" in text


def test_report_lists_unsupported_and_sensitivity(tmp_path, tables):
    second = dict(dip_summary=tables["dip_summary"].assign(gain_db=-tables["dip_summary"].gain_db),
                  clf_summary=tables["clf_summary"])
    t = dict(dip_summary=tables["dip_summary"], clf_summary=tables["clf_summary"], second=second)
    text = G.write_report(tmp_path, t, G.analyse(t, n_boot=100), META).read_text()
    # regenerating gives the same report and tables
    assert G.write_report(tmp_path / "again", t, G.analyse(t, n_boot=100), META).read_text() == text
    assert (tmp_path / "again" / "verdicts.csv").read_text() == (tmp_path / "verdicts.csv").read_text()
    assert "## Sensitivity to the learning rate" in text and (tmp_path / "sensitivity.csv").exists()
    sens = pd.read_csv(tmp_path / "sensitivity.csv")
    assert sens.set_index("hypothesis").loc["a", "status"] == "sensitive"
    v = pd.read_csv(tmp_path / "verdicts.csv")
    line = next(x for x in text.splitlines() if x.startswith("**What the data do not support:**"))
    for h, verdict in V.overall(v).items():
        assert (f"({h}) {verdict}" in line) == (verdict != "supported")


def test_report_with_runner_meta_and_second_lr_tables(tmp_path, tables):
    """The runner's shapes: preset as a dict, wall_seconds, tables at the second-best lr, failed runs."""
    second = dict(dip_summary=tables["dip_summary"].assign(gain_db=-tables["dip_summary"].gain_db),
                  clf_summary=tables["clf_summary"])
    failed = pd.DataFrame([dict(run_id="abc", error="RuntimeError: boom")])
    t = dict(dip_summary=tables["dip_summary"], clf_summary=tables["clf_summary"], second=second, failed=failed)
    meta = dict(command="biasprobe study generative_vs_predictive --preset smoke", wall_seconds=61.0,
                preset=dict(name="smoke", archs=["skipnet", "vit"]), n_boot=50, study="generative_vs_predictive")
    text = G.write_report(tmp_path, t, G.analyse(t, n_boot=50), meta).read_text()
    assert "- preset: smoke" in text and '"archs"' in text and "61 s" in text
    assert "study: generative_vs_predictive" in text
    assert "## Failed runs (1)" in text and "RuntimeError: boom" in text
    sens = pd.read_csv(tmp_path / "sensitivity.csv").set_index("hypothesis")
    assert sens.loc["a", "verdict_second_lr"] == "refuted" and sens.loc["a", "status"] == "sensitive"
    assert (tmp_path / "verdicts_second_lr.csv").exists()


def test_report_with_missing_tables(tmp_path, tables):
    t = dict(dip_summary=tables["dip_summary"][tables["dip_summary"].arch.isin(["skipnet", "unet"])])
    text = G.write_report(tmp_path, t, G.analyse(t, n_boot=50), {}).read_text()
    assert "Not drawn (no data)" in text and "inconclusive" in text
    assert not (tmp_path / "accuracy_vs_n.png").exists()


def test_conv_placement_figure(tmp_path, tables):
    res = CP.figure(tables["dip_curves"], CP.table(tables["dip_summary"]), tmp_path)
    assert [p.name for p in res["figures"]] == ["conv_placement_vit.png"]  # no swin hybrids in the tables
    assert res["figures"][0].stat().st_size > 1000
    tab = pd.read_csv(res["csv"])
    assert set(tab.arch) == {"vit", "3c+vit", "vit+1c", "vit+3c"} and set(tab.task) == {"denoise", "inpaint"}
    d = tables["dip_summary"]
    want = d[(d.arch == "vit+3c") & (d.task == "denoise")].max_psnr_gt.mean()
    assert tab[(tab.arch == "vit+3c") & (tab.task == "denoise")].max_psnr_gt.iloc[0] == pytest.approx(want)
    assert "conv_placement_vit.png" in res["md"].read_text()
    skipnet = tables["dip_summary"][tables["dip_summary"].arch == "skipnet"]
    empty = CP.figure(None, CP.table(skipnet), tmp_path / "none")
    assert empty["figures"] == [] and "No runs" in empty["md"].read_text()
    path = CP.write_report(tmp_path / "study", tables, {"table": CP.table(tables["dip_summary"])},
                                  dict(META, n_boot=None))
    text = path.read_text()
    assert text.startswith("# Conv placement") and META["command"] in text and "| vit+3c |" in text
    assert (tmp_path / "study" / "conv_placement_vit.png").exists()


def test_headers_and_labels_come_from_the_declarations(tables, monkeypatch):
    """A metric declared in METRICS (here: the test NLL at the fixed N) reaches the cross-tab, its Markdown
    header and the readings' labels with no other edit."""
    from biasprobe.analysis.metrics import METRICS, Metric

    monkeypatch.setitem(METRICS, "nll", Metric("nll", "test NLL", "classify", "runs", "final test NLL at N",
                                               header="NLL", direction=-1, source="final_test_nll", fixed_n=True))
    cross = V.cross_tab(tables["dip_summary"], tables["clf_summary"], tables["dip_curves"], n_boot=20)
    assert cross.nll.dropna().eq(1.5).all() and len(cross.nll.dropna()) == len(set(tables["clf_summary"].arch))
    compact = R.compact_cross_tab(cross)
    assert "NLL" in compact.columns and "shift cons." in compact.columns
    assert "acc @N=1000 [CI]" in compact.columns and "grid energy p8" in compact.columns
    headers = [m.header.format(n="1000", period=8) for m in METRICS.values() if m.header]
    assert [c.removesuffix(" [CI]") for c in compact.columns[2:-2]] == headers
    verdicts = G.verdicts(tables["dip_summary"], tables["clf_summary"], n_boot=20)
    row = verdicts[verdicts.metric == "gap_time"].iloc[0]
    assert "gap_time (claimed > 0)" in R._row_sentence(row, 0.95)


def test_report_says_first_that_fits_were_truncated(tmp_path, tables):
    dip = tables["dip_summary"].copy()
    dip.loc[dip.arch == "vit", "peak_reached"] = False
    t = dict(tables, dip_summary=dip)
    text = G.write_report(tmp_path, t, G.analyse(t, n_boot=20), META).read_text()
    first = text.split("## Claims")[0]
    n = int((dip.peak_reached == False).sum())  # noqa: E712
    assert f"{n} of {len(dip)} DIP fits stopped before their peak (truncated)" in first
    assert "inconclusive (truncated)" in text


def test_second_half_gain_reads_the_curves(tables):
    """Accuracy rising linearly to its final value at step 80 of 100: the middle (step 50) is at 5/8 of it, so
    the second half adds 3/8 of the final accuracy; the report's budget table shows it."""
    half = R.half_gain(tables["clf_epochs"])
    half.index = [a for a, _ in half.index]  # one budget here: (arch, budget) -> arch
    final = tables["clf_summary"].groupby("arch").final_test_acc.mean()
    assert half.sort_index().to_numpy() == pytest.approx((0.375 * final).sort_index().to_numpy())
    md = "\n".join(R.plateau_md(tables["clf_summary"].assign(plateaued=True, steps_run=100), tables["clf_epochs"]))
    assert "second_half_gain" in md and "last_quarter_slope_per_100" in md
    assert R.half_gain(None).empty
    # the last quarter (steps 75-100) is nearly flat: the accuracy reached its final value at step 80
    slopes = R.slope_table(tables["clf_epochs"])
    assert len(slopes) == tables["clf_summary"].arch.nunique() and (slopes.slope_per_100.abs() < 5).all()


def test_slope_table_gives_the_last_quarter_slope_with_its_se():
    rows = []
    for seed, rise in ((0, 0.01), (1, 0.03)):  # accuracy points per step: 1 and 3 per 100 steps in the last quarter
        for step in range(0, 201, 20):
            rows.append(dict(arch="A", n_train=1000, seed=seed, step=step, test_acc=0.2 + rise * step / 100))
    t = R.slope_table(pd.DataFrame(rows))
    r = t.iloc[0]
    assert (r.arch, r.steps, r.runs) == ("A", 200, 2)
    assert r.slope_per_100 == pytest.approx(2.0) and r.slope_se == pytest.approx(1.0)


def test_cost_table_sums_each_architectures_runs_and_calibration(tmp_path):
    costs = pd.DataFrame(dict(
        part=["study", "study", "study", "calibration", "study", "calibration"],
        probe=["dip", "dip", "classify", "dip", "dip", "dip"],
        arch=["b", "b", "b", "b", "a", "a"],
        run_id=list("123456"), seconds=[60.0, 180.0, 30.0, 120.0, 90.0, 30.0], finished_at=[""] * 6))
    t = R.cost_table(costs, threads=2).set_index("arch")
    assert list(t.index) == ["b", "a", "all"]  # the runs' order, then the total
    assert t.loc["b", "dip_runs"] == 2 and t.loc["b", "dip_min"] == pytest.approx((60 + 180) * 2 / 60)
    assert t.loc["b", "dip_mean_s"] == pytest.approx(120.0)
    assert t.loc["b", "classify_runs"] == 1 and t.loc["a", "classify_runs"] == 0
    assert t.loc["b", "calibration_min"] == pytest.approx(4.0) and t.loc["a", "calibration_min"] == pytest.approx(1.0)
    assert t.loc["b", "total_min"] == pytest.approx((60 + 180 + 30 + 120) * 2 / 60)
    assert t.loc["all", "total_min"] == pytest.approx(costs.seconds.sum() * 2 / 60)
    assert t.loc["all", "dip_runs"] == 3 and t.loc["all", "dip_mean_s"] == pytest.approx(110.0)
    md = "\n".join(R.cost_section(tmp_path, costs, {"preset": {"threads_per_job": 2}}))
    assert "**17.0 core-minutes**" in md and (tmp_path / "cost.csv").is_file()
    assert "run-minutes" in "\n".join(R.cost_md(costs, None))  # unknown threads: wall minutes, said so
    # a thread count recorded with a run wins over the preset's
    own = costs.assign(threads=[4.0, None, None, None, None, None])
    t4 = R.cost_table(own, threads=2).set_index("arch")
    assert t4.loc["b", "dip_min"] == pytest.approx((60 * 4 + 180 * 2) / 60)
    md4 = "\n".join(R.cost_md(own, 2))
    assert "1 run with the thread count recorded with the run" in md4 and "5 with the preset's threads_per_job" in md4
    assert R.cost_table(own, threads=None).set_index("arch").loc["b", "dip_min"] == pytest.approx(4.0)  # wall
    assert R.cost_section(tmp_path, None, {}) == []
    assert "calibration_min" not in R.cost_table(costs[costs.part == "study"], 1)  # no calibration: no column


def test_short_labels_shorten_long_kwargs_and_keep_names_distinct():
    archs = ["timm:resnet18", "timm:swin_tiny_patch4_window7_224[depths=[1,1,2,1],embed_dim=48]",
             "vit[decoder=bilinear]", "vit[decoder=pixelshuffle]+3c", "timm:a[xxxxxxxxxxxxxxxxxxxxxxxxxx=1]",
             "timm:a[yyyyyyyyyyyyyyyyyyyyyyyyyy=2]"]
    lab = R.short_labels(archs)
    assert lab["timm:resnet18"] == "resnet18"
    assert lab["timm:swin_tiny_patch4_window7_224[depths=[1,1,2,1],embed_dim=48]"] == "swin_tiny_patch4_window7_224[...]"
    assert lab["vit[decoder=bilinear]"] == "vit[decoder=bilinear]"  # short enough: kept whole
    assert lab["vit[decoder=pixelshuffle]+3c"] == "vit[...]+3c"  # the suffix after the brackets survives
    # two archs that would share "a[...]" keep their full names
    assert lab["timm:a[xxxxxxxxxxxxxxxxxxxxxxxxxx=1]"] == "timm:a[xxxxxxxxxxxxxxxxxxxxxxxxxx=1]"
    assert len(set(lab.values())) == len(archs)


def test_arch_legends_use_short_labels_outside_the_axes(tmp_path):
    archs = [f"timm:net{i}_patch16_224[depth={i},embed_dim=48,num_heads=4]" for i in range(16)]
    curves = pd.DataFrame([dict(arch=a, n_train=1000, seed=s, step=st, test_acc=0.1 + 0.001 * st + 0.01 * i)
                           for i, a in enumerate(archs) for s in (0, 1) for st in (30, 60, 90)])
    assert R.fig_clf_curves(curves, tmp_path / "clf.png").exists()
    fig = R.Figure()
    ax = fig.subplots()
    for a in archs:
        ax.plot([0, 1], [0, 1], label=a)
    R._arch_legend(ax)
    leg = ax.get_legend()
    assert [t.get_text() for t in leg.get_texts()] == [f"net{i}_patch16_224[...]" for i in range(16)]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    columns = {round(t.get_window_extent().x0) for t in leg.get_texts()}  # where each entry's text starts
    assert len(columns) == 2 and leg.get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # right of the axes


def test_report_counts_dead_fits_apart_from_truncated_ones():
    """A dead fit (a constant colour) has no peak: the banner counts it apart, and the share of live fits too."""
    runs = pd.DataFrame(dict(arch=["a", "a", "b", "b"], peak_reached=[True, False, True, False],
                             dead=[False, False, True, False], dead_stop=[False, False, False, True],
                             peak_status=["reached", "not reached", "reached", "dead"]))
    first = "\n".join(R.header({}, runs))
    assert "Peaks: 1 of 4 DIP fits reached their peak (25.0%); 1 stopped before it" in first and "2 dead" in first
    assert "Of the 2 live fits, 50.0% reached it." in first
    assert "1 of 4 DIP fits stopped before their peak (truncated)" in first
    assert list(R.dead_fits(runs)) == [False, False, True, True]


def test_plan_lines_name_the_other_plans_and_the_runs_taken_over():
    plan = dict(file="p.json", sha256="abc", n_images=6, images="drawn", runs_under=1, runs_other=198,
                runs_unlogged=0, runs_other_by={"zoo.json (sha256 861f5556…)": 176, "zoo.json (sha256 edb29ef5…)": 22},
                runs_reused=198, missing_units="")
    text = "\n".join(R.plan_lines(plan))
    assert "198 under another plan or an earlier version of this file [176 under zoo.json (sha256 861f5556…); " \
           "22 under zoo.json (sha256 edb29ef5…)]" in text
    assert "198 of the runs were taken over from the store this plan continues" in text
    assert "taken over" not in "\n".join(R.plan_lines(dict(plan, runs_reused=0)))


def test_cost_section_says_what_was_taken_over_from_an_earlier_store(tmp_path):
    from biasprobe.studies.reuse import sweep_reusing, taken_over
    from biasprobe.studies.runner import run_costs
    from biasprobe.studies.sweep import ResultStore, run_id

    def table(run):
        return {"t": pd.DataFrame({"x": [run["config"]["x"]]})}

    runs = [{"probe": "dip", "config": {"arch": "a", "x": x}} for x in (1, 2)]
    ResultStore(tmp_path / "old" / "results").write(runs[0], table(runs[0]), seconds=60.0)
    store = tmp_path / "store"
    sweep_reusing(runs, table, store / "results", donors=[tmp_path / "old" / "results"], progress=False)
    assert taken_over(store / "results") == {run_id(runs[0])}
    costs = run_costs(ResultStore(store / "results"), runs).assign(threads=1.0)
    assert costs.set_index("run_id").taken_over.to_dict() == {run_id(runs[0]): True, run_id(runs[1]): False}
    costs.loc[costs.run_id == run_id(runs[1]), "seconds"] = 120.0
    md = "\n".join(R.cost_section(tmp_path, costs, {}))
    assert "Of these, 1 run (1.0 of the minutes) came from the store this plan continues" in md
    assert "made for this plan: 1, 2.0 minutes" in md
    assert "came from the store" not in "\n".join(R.cost_section(tmp_path, costs.drop(columns="taken_over"), {}))


def test_peak_evidence_says_how_each_reached_peak_is_known():
    # two peaks confirmed by a gap crossing, two watched to the cap without one (best standing 5,125 and 30,000
    # steps); a truncated fit and a dead one are not counted
    runs = pd.DataFrame({"arch": ["a", "a", "b", "b", "c", "d"], "image": ["x", "y", "x", "y", "x", "x"],
                         "peak_reached": [True, True, True, True, False, True],
                         "gap_negative_step": [700.0, 900.0, np.nan, np.nan, np.nan, np.nan],
                         "stop_step": [1000, 1200, 39999, 39999, 39999, 1999],
                         "max_psnr_gt_step": [400, 500, 34874, 9999, 39950, 1500],
                         "peak_status": ["reached"] * 4 + ["not reached", "dead"]})
    (line,) = R.peak_evidence_md(runs)
    assert "How the 4 reached peaks are known" in line
    assert "2 had their gap cross" in line and "2 had none before it" in line
    assert "5,125 to 30,000 steps" in line and "fewest: b/x, best at step 34,874 of 40,000" in line
    assert R.peak_evidence_md(runs.drop(columns="gap_negative_step")) == []
    assert R.peak_evidence_md(runs[runs.peak_reached & runs.gap_negative_step.notna()])[0].endswith(
        "0 had none before it.")


def test_power_section_shows_the_plans_power_calculation_even_when_every_row_is_decided():
    meta = {"preset": {"analysis": {"power": {
        "method": "noncentral t, one-sided alpha 0.025", "choice": "6 images",
        "rows": [{"row": "gain rows", "note": "6 images give 80% power for d = 1.4"},
                 {"row": "c: rho < 0.5", "note": "20 architectures (min 17)"}]}}}}
    decided = pd.DataFrame({"hypothesis": ["c"], "comparison": ["rho"], "metric": ["rho"], "verdict": ["supported"],
                            "decisive": [True], "reason": [""], "power_note": [""]})
    md = "\n".join(G.power_md(decided, meta))
    assert "## Power, as planned before the runs" in md and "Method: noncentral t, one-sided alpha 0.025." in md
    assert "| gain rows | 6 images give 80% power for d = 1.4 |" in md
    assert "| c: rho < 0.5 | 20 architectures (min 17) |" in md
    assert "Choice: 6 images." in md and "undecided rows" not in md
    meta["preset"]["analysis"]["power"]["rows"][0].update(images_for_80=27, power_at_24=0.75)
    md = "\n".join(G.power_md(decided, meta))  # fields a row has beside its note are columns; the note comes last
    assert "| row | images_for_80 | power_at_24 | note |" in md and "| gain rows | 27 | 0.75 | 6 images" in md
    undecided = decided.assign(verdict="inconclusive", reason="underpowered", power_note="12 images would")
    md = "\n".join(G.power_md(undecided, meta))
    assert md.index("as planned") < md.index("## Power of the undecided rows") and "12 images would" in md
    assert G.power_md(decided, {}) == [] and G.power_md(decided) == []
