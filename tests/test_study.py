"""The study runner: presets, and the smoke preset end to end (report files hold numbers from runs; rerun resumes)."""

import json
import re

import pandas as pd
import pytest

from biasprobe import BiasprobeError
from biasprobe.cli import main
from biasprobe.probes.classify.plan import classify_configs
from biasprobe.probes.dip.plan import dip_configs
from biasprobe.studies.runner import load_preset


def test_presets_load_and_grids_have_the_right_size():
    for name in ("smoke", "preview", "standard", "standard-2images", "paper"):
        load_preset(name)
    std = load_preset("standard")
    images = std.dip.image_names()
    dip = dip_configs(std)
    clf = classify_configs(std)
    n_rep = std.dip.replicate["images"] * len(std.dip.replicate["seeds"])
    assert len(images) == 24 and len(set(images)) == 24  # drawn from the standard colour sets
    assert len(dip) == len(std.archs) * (len(images) + n_rep)
    assert len(clf) == len(std.archs) * (len(std.classify.seeds) + len(std.classify.double_seeds))
    assert sum(r["config"]["seeds"] == [0] for r in dip) == len(std.archs) * len(images)  # one seed per image
    # the protocol: denoising at 128 px, the seed's setting, one lr, one cap for every architecture, stop after
    # the peak; the gap crossing waited for only where a gap claim reads it
    assert {r["config"]["task"] for r in dip} == {"denoise"} and {r["config"]["size"] for r in dip} == {128}
    assert {r["config"]["lr"] for r in dip} == {1e-4} and {r["config"]["setting"] for r in dip} == {"study"}
    assert {r["config"]["stop"] for r in dip} == {"peak"} and {r["config"]["iters"] for r in dip} == {5000}
    waits = {r["config"]["arch"]: r["config"].get("stop_on_gap", True) for r in dip}
    assert waits == {"skipnet": False, "swin": False, "vit": True, "3c+vit": True, "vit+3c": True}
    assert {r["config"]["gap_window"] for r in dip} == {100}
    steps = sorted({r["config"]["steps"] for r in clf})
    assert steps == [std.classify.steps, 2 * std.classify.steps]
    assert {"skipnet", "vit", "swin", "3c+vit", "vit+3c"} <= set(std.archs)
    assert std.plan_sha256 and std.analysis["claims"]
    paper = load_preset("paper")
    assert paper.dip.size == 512 and paper.dip.iters == 5000 and len(paper.dip.seeds) == 5


def test_the_2image_store_keeps_its_run_ids():
    """The first standard study's preset still names exactly its 35 committed runs (new DIP fields at their
    defaults are left out of a run's identity)."""
    from pathlib import Path

    from biasprobe.studies.sweep import run_id

    old = load_preset("standard-2images")
    ids = {run_id(r) for r in dip_configs(old) + classify_configs(old)}
    store = Path(__file__).resolve().parent.parent / "reports/generative_vs_predictive-standard-2images/store"
    assert ids <= {p.name for p in (store / "results/runs").iterdir()} and len(ids) == 35  # (+2 superseded)


def test_an_lr_table_gives_each_arch_its_lr(tmp_path):
    from biasprobe.probes.base import resolve_lr

    def _lr(value, lrs, arch):
        return resolve_lr(value, arch, lrs)[0]

    table = {"skipnet": 0.01, "vit*": 3e-4, "*": 1e-4}
    assert [_lr(table, None, a) for a in ("skipnet", "vit+3c", "swin")] == [0.01, 3e-4, 1e-4]
    with pytest.raises(BiasprobeError, match="no lr for 'swin'"):
        _lr({"vit": 1e-4}, None, "swin")
    # a name with brackets (timm kwargs) matches itself, not as an fnmatch character class
    assert _lr({"timm:vit_tiny[depth=4]": 0.5, "*": 1e-4}, None, "timm:vit_tiny[depth=4]") == 0.5


def test_one_lr_resolver_says_where_each_lr_came_from():
    from biasprobe.probes.base import resolve_lr

    assert resolve_lr(None, "vit", default=0.01, default_source="setting:dip") == (0.01, "setting:dip")
    assert resolve_lr(3e-4, "vit") == (3e-4, "given")
    assert resolve_lr("calibrated", "vit", {"vit": 1e-3}) == (1e-3, "calibrated")
    assert resolve_lr("calibrated", "vit", lambda a: 2e-3, calibrated_source="calibrated:c.csv") == (2e-3, "calibrated:c.csv")


def test_an_iters_table_gives_each_arch_its_cap():
    """dip.iters may be a table like lr: only the runs of the archs whose cap changes get new run ids."""
    from biasprobe.studies.sweep import run_id

    plain = load_preset("smoke")
    table = load_preset("smoke")
    table.dip.iters = {"vit*": plain.dip.iters + 100, "*": plain.dip.iters}
    lrs = {arch: 1e-3 for arch in plain.archs + plain.dip.extra_archs}  # in case the preset calibrates
    a, b = dip_configs(plain, lrs), dip_configs(table, lrs)
    for x, y in zip(a, b):
        longer = x["config"]["arch"].startswith("vit")
        assert y["config"]["iters"] == plain.dip.iters + (100 if longer else 0)
        assert (run_id(x) != run_id(y)) == longer
    assert any(c["config"]["arch"].startswith("vit") for c in a) and not all(
        c["config"]["arch"].startswith("vit") for c in a)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(bogus=1), "unknown field 'bogus'"),
    (lambda d: d["dip"].update(itres=5), "unknown field 'itres'"),
    (lambda d: d["dip"].update(iters="many"), "'dip.iters'"),
    (lambda d: d["dip"].update(iters={"vit": 0}), "'dip.iters'"),
    (lambda d: d["dip"].update(iters={"nothing-matches": 10}), "no dip.iters for"),
    (lambda d: d["classify"].update(fixed_n=7), "'classify.fixed_n'"),
    (lambda d: d.update(archs=[]), "'archs'"),
    (lambda d: d["dip"]["extra"].update(bogus=1), "'dip.extra.bogus'"),
    (lambda d: d["classify"].update(measures_at="some"), "'classify.measures_at'"),
])
def test_bad_preset_fields_fail_in_one_line_naming_the_field(tmp_path, edit, words):
    data = json.loads(load_preset.__globals__["PRESET_DIR"].joinpath("smoke.json").read_text())
    edit(data)
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BiasprobeError) as e:
        load_preset(str(path))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(BiasprobeError, match="smoke"):
        load_preset("nope")


def _run_counts(report: str) -> tuple[int, int, int]:
    m = re.search(r"runs: (\d+) \(computed by this command: (\d+); reused from the store: (\d+)\)", report)
    assert m, "the provenance lists the runs"
    return tuple(int(x) for x in m.groups())


def test_smoke_study_end_to_end_and_resume(tmp_path, capsys):
    out, store = tmp_path / "report", tmp_path / "store"
    args = ["study", "generative_vs_predictive", "--preset", "smoke", "--out", str(out), "--store", str(store),
            "--quiet"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for h in "abcde":
        assert f"**({h})**" in report
    verdicts = pd.read_csv(out / "verdicts.csv")
    overall = verdicts[verdicts.comparison == "overall"]
    assert set(overall.hypothesis) == set("abcde")
    assert set(overall.verdict) <= {"supported", "refuted", "inconclusive"}
    cross = pd.read_csv(out / "cross_tab.csv")
    assert len(cross) == 6 and cross.filter(like="gen").notna().any().any()
    for png in ("gen_vs_pred.png", "psnr_curves.png", "reconstructions.png", "accuracy_vs_n.png"):
        assert (out / png).stat().st_size > 1000
    assert (out / "sensitivity.csv").is_file()
    runs = sorted((store / "results" / "runs").iterdir())
    assert len(runs) == 2 * (6 * 2 + 6 * 2 * 2)  # (DIP + classify) at the best and the second-best lr
    assert "Verdicts are computed at calibrated learning rates: every classify and dip run" in report
    total, computed, reused = _run_counts(report)
    assert computed == total > len(runs) and reused == 0  # calibration runs counted too
    cost = pd.read_csv(out / "cost.csv").set_index("arch")  # every run's seconds, per architecture
    summed = float(re.search(r"summed run time: (\d+) s", report).group(1))
    assert cost.loc["all", "total_min"] * 60 == pytest.approx(summed, abs=1.0)
    assert cost.drop("all").dip_runs.sum() + cost.drop("all").classify_runs.sum() == len(runs)
    assert "## Cost" in report
    # a second invocation finds every run done: nothing recomputed, the same verdicts
    before = {p.name: p.stat().st_mtime for p in runs}
    assert main(args) == 0
    after = {p.name: p.stat().st_mtime for p in sorted((store / "results" / "runs").iterdir())}
    assert before == after
    pd.testing.assert_frame_equal(pd.read_csv(out / "verdicts.csv"), verdicts)
    assert _run_counts((out / "report.md").read_text()) == (total, 0, total)

    assert main(["study", "conv_placement", "--preset", "smoke", "--out", str(tmp_path / "cp"), "--store",
                 str(store), "--quiet"]) == 0
    assert (tmp_path / "cp" / "report.md").is_file()


@pytest.mark.parametrize("measures_at", ["fixed_n", "all"])
def test_shift_and_attribution_measured_where_the_cross_tab_reads_them(measures_at):
    preset = load_preset("smoke")
    preset.classify.measures_at = measures_at
    clf = classify_configs(preset, {a: 1e-3 for a in preset.archs})
    on = {r["config"]["n_train"] for r in clf if r["config"]["measures"]}
    assert on == ({preset.classify.fixed_n} if measures_at == "fixed_n" else set(preset.classify.n_train))


def test_sensitivity_flag_needs_a_calibrating_preset(tmp_path, capsys):
    data = json.loads(load_preset.__globals__["PRESET_DIR"].joinpath("smoke.json").read_text())
    data["calibration"]["enabled"] = False
    data["dip"]["lr"] = data["classify"]["lr"] = None
    path = tmp_path / "nocal.json"
    path.write_text(json.dumps(data))
    code = main(["study", "generative_vs_predictive", "--preset", str(path), "--sensitivity", "--store",
                 str(tmp_path / "s"), "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--sensitivity" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_report_only_runs_nothing_and_says_when_the_store_is_empty(tmp_path, capsys):
    args = ["study", "generative_vs_predictive", "--preset", "standard", "--report-only", "--out",
            str(tmp_path / "r"), "--store", str(tmp_path / "store"), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none of this study's runs" in err[0]
    assert not (tmp_path / "store" / "results" / "runs").exists() or not any(
        (tmp_path / "store" / "results" / "runs").iterdir())


def test_report_only_reads_no_cifar_data(tmp_path, monkeypatch):
    """A report drawn from a committed store trains nothing, so it needs no CIFAR-10 copy (a reader's clone
    without the data redraws it); running the study without data is still a one-line error."""
    from pathlib import Path

    from biasprobe.probes.classify import cifar

    monkeypatch.setattr(cifar, "default_data_dir", lambda: None)
    store = Path(__file__).resolve().parents[1] / "reports" / "generative_vs_predictive-standard-2images" / "store"
    head = ["study", "generative_vs_predictive", "--preset", "standard-2images", "--quiet"]
    assert main(head + ["--out", str(tmp_path / "r"), "--store", str(store), "--report-only"]) == 0
    assert (tmp_path / "r" / "report.md").is_file()
    assert main(head + ["--out", str(tmp_path / "r2"), "--store", str(tmp_path / "s")]) == 2


def test_run_stores_beside_reports_are_not_git_ignored():
    """A committed report's run tables (its store) must be committable: a fresh clone resumes from them."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    path = "reports/generative_vs_predictive-standard/store/results/runs/0123456789abcdef/summary.parquet"
    assert subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 1  # 1: not ignored


def test_seed_per_image_gives_each_image_its_own_seed_and_replicates_stay_apart():
    """``dip.seed_per_image``: the i-th image runs seed seeds[0] + i (its own init, input and noise draws), so the
    images sample the init too; replicate seeds are still told apart from the units; bad combinations fail in one
    line."""
    import dataclasses

    from biasprobe.probes.dip.plan import DipPlan
    from biasprobe.studies import generative_vs_predictive as G

    std = load_preset("standard")
    p = dataclasses.replace(std, dip=dataclasses.replace(std.dip, seed_per_image=True))
    images = p.dip.image_names()
    dip = dip_configs(p)
    units = [r["config"] for r in dip if r["config"]["arch"] == "vit"]
    runs = pd.DataFrame([dict(image=c["image"], seed=c["seeds"][0]) for c in units])
    unit = G._units(p, runs)
    assert dict(zip(runs[unit].image, runs[unit].seed)) == {im: i for i, im in enumerate(images)}
    # replicate seed 1 on the first 3 images: image 1's own seed is 1, so only images 0 and 2 get a replicate run
    assert sorted(runs[~unit].image) == sorted([images[0], images[2]]) and set(runs[~unit].seed) == {1}
    assert len(units) == 24 + 2
    need = []
    DipPlan(seeds=[0, 1], seed_per_image=True).check(lambda ok, f, what: need.append(f) if not ok else None, [])
    assert need == ["dip.seed_per_image"]
    with pytest.raises(BiasprobeError, match="not one of the plan's images"):
        DipPlan(images=["astronaut"], seeds=[0], seed_per_image=True).unit_seeds("F16")
