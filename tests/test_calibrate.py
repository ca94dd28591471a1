"""Learning-rate calibration: the choice, resume through the store, lookup errors, the CLI, --lr calibrated."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from biasprobe import BiasprobeError
from biasprobe.studies import calibrate as cal
from biasprobe.cli import main
from biasprobe.studies.sweep import ResultStore

TINY = dict(channels_down=8, channels_up=8, channels_skip=2, num_scales=3)
DIP_BASE = dict(image="chelsea", task="denoise", task_params={"sigma": 25}, size=32, iters=3, log_every=2,
                spectral=False, arch_kwargs=TINY, es_window=0)


def table(rows):
    """Hand-made long table: rows of (arch, lr, seed, score) for the dip probe."""
    df = pd.DataFrame(rows, columns=["arch", "lr", "seed", "score"])
    df.insert(1, "probe", "dip")
    df["weight_decay"] = math.nan
    return df


def test_choose_picks_argmax_of_the_seed_mean_and_the_second_best_lr():
    t = table([
        ("a", 1e-4, 0, 20.0), ("a", 1e-4, 1, 22.0),  # mean 21
        ("a", 1e-3, 0, 25.0), ("a", 1e-3, 1, 19.0),  # mean 22: best (though one seed is worse than 1e-4's)
        ("a", 1e-2, 0, 10.0), ("a", 1e-2, 1, 12.0),  # mean 11
        ("b", 1e-4, 0, 30.0), ("b", 1e-3, 0, 29.0), ("b", 1e-2, 0, 31.0),
    ])
    ch = cal.choose(t).set_index("arch")
    assert ch.loc["a", "lr"] == 1e-3 and ch.loc["a", "score"] == pytest.approx(22.0)
    assert ch.loc["a", "second_lr"] == 1e-4 and ch.loc["a", "second_score"] == pytest.approx(21.0)
    assert not ch.loc["a", "at_edge"]
    assert ch.loc["b", "lr"] == 1e-2 and ch.loc["b", "second_lr"] == 1e-4 and ch.loc["b", "at_edge"]
    assert ch.loc["a", "grid"] == "0.0001 0.001 0.01" and ch.loc["a", "seeds"] == "0 1"
    assert ch.loc["a", "n_runs"] == 6 and "psnr_gt" in ch.loc["a", "criterion"]


def test_choose_ties_go_to_the_smaller_lr_and_nan_ranks_last():
    t = table([("a", 1e-2, 0, math.nan), ("a", 3e-3, 0, 5.0), ("a", 1e-3, 0, 5.0), ("a", 1e-4, 0, 1.0)])
    ch = cal.choose(t).iloc[0]
    assert ch.lr == 1e-3 and ch.second_lr == 3e-3
    t = table([("a", 1e-2, 0, math.nan), ("a", 1e-3, 0, -3.0)])
    ch = cal.choose(t).iloc[0]
    assert ch.lr == 1e-3 and ch.second_lr == 1e-2 and math.isnan(ch.second_score)


def test_choose_prefers_settings_whose_fits_peaked():
    # 1e-4's fit was still rising at the cap: its score is a lower bound, so the peaked 1e-3 is chosen though it
    # scores less; when no setting peaked the best score is chosen and the choice says so
    t = table([("a", 1e-4, 0, 26.0), ("a", 1e-3, 0, 25.0), ("a", 1e-2, 0, 20.0),
               ("b", 1e-4, 0, 26.0), ("b", 1e-3, 0, 25.0)])
    t["peak_reached"] = [False, True, True, False, False]
    ch = cal.choose(t).set_index("arch")
    assert ch.loc["a", "lr"] == 1e-3 and ch.loc["a", "second_lr"] == 1e-2 and ch.loc["a", "peaked"]
    assert ch.loc["b", "lr"] == 1e-4 and not ch.loc["b", "peaked"]
    assert cal.choose(table([("c", 1e-4, 0, 1.0)])).iloc[0].peaked  # tables without the column: unknown = yes


def test_choose_with_weight_decay_grid_second_is_another_lr():
    rows = [("a", "classify", lr, wd, 0, s) for lr, wd, s in [
        (1e-3, 0.01, 0.50), (1e-3, 0.1, 0.60), (3e-3, 0.01, 0.55), (3e-3, 0.1, 0.40), (1e-2, 0.01, 0.30)]]
    t = pd.DataFrame(rows, columns=["arch", "probe", "lr", "weight_decay", "seed", "score"])
    ch = cal.choose(t).iloc[0]
    assert (ch.lr, ch.weight_decay, ch.score) == (1e-3, 0.1, 0.60)
    # the second-best *learning rate*: the best setting with another lr (not 1e-3 at wd 0.01)
    assert (ch.second_lr, ch.second_weight_decay, ch.second_score) == (3e-3, 0.01, 0.55)
    assert ch.wd_grid == "0.01 0.1"


def test_save_load_merge_and_lookup(tmp_path):
    path = tmp_path / "choices.csv"
    first = cal.choose(table([("a", 1e-4, 0, 1.0), ("a", 1e-3, 0, 2.0), ("b", 1e-4, 0, 3.0), ("b", 1e-3, 0, 1.0)]))
    cal.save_choices(first, path)
    again = cal.choose(table([("a", 1e-4, 0, 5.0), ("a", 1e-3, 0, 2.0)]))  # a recalibrated; b kept
    cal.save_choices(again, path)
    ch = cal.load_choices(path)
    assert sorted(ch.arch) == ["a", "b"]
    assert cal.lookup_lr(ch, "a", "dip") == 1e-4 and cal.lookup_lr(ch, "a", "dip", rank=2) == 1e-3
    assert cal.lookup_lr(ch, "b", "dip") == 1e-4
    assert cal.lookup(ch, "b", "dip")["weight_decay"] is None


@pytest.mark.parametrize("args, words", [
    (("zzz", "dip", 1), "no calibrated lr for zzz/dip in"),
    (("a", "classify", 1), "no calibrated lr for a/classify in"),
    (("a", "dip", 3), "rank"),
    (("a", "nope", 1), "probe"),
])
def test_lookup_errors_are_one_line(tmp_path, args, words):
    path = tmp_path / "choices.csv"
    cal.save_choices(cal.choose(table([("a", 1e-4, 0, 1.0), ("a", 1e-3, 0, 2.0)])), path)
    with pytest.raises(BiasprobeError) as e:
        cal.lookup_lr(cal.load_choices(path), *args)
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    if "no calibrated" in words:
        assert str(path) in msg and "biasprobe calibrate" in msg


def test_lookup_second_of_a_one_point_grid_and_missing_file(tmp_path):
    path = tmp_path / "c.csv"
    cal.save_choices(cal.choose(table([("a", 1e-3, 0, 1.0)])), path)
    with pytest.raises(BiasprobeError, match="second-best"):
        cal.lookup_lr(cal.load_choices(path), "a", "dip", rank=2)
    with pytest.raises(BiasprobeError, match="no calibration file") as e:
        cal.load_choices(tmp_path / "missing.csv")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw, words", [
    (dict(base={**DIP_BASE, "lrr": 1}), "lrr"),
    (dict(base={**DIP_BASE, "task": "jpeg", "task_params": {}}), "clean image"),
    (dict(grid=[1e-3, -1.0]), "positive"),
    (dict(grid=[1e-3, 1e-3]), "repeats"),
    (dict(archs=["skipnett"]), "skipnet"),
    (dict(probe="gan"), "probe"),
    (dict(probe="classify", base=dict(eval_split="test")), "validation"),
    (dict(probe="classify", base=dict(), grid=[1e-3], wd_grid=[-1.0]), "weight decay"),
    (dict(wd_grid=[0.1]), "classify"),
])
def test_bad_calibration_input_is_one_line_error(tmp_path, kw, words):
    args = dict(archs=["skipnet"], probe="dip", grid=[1e-3, 1e-2], base=DIP_BASE, store=tmp_path)
    args.update(kw)
    with pytest.raises(BiasprobeError) as e:
        cal.calibrate(**args, progress=False, device="cpu")
    assert words in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_dip_calibration_resumes_without_rerunning(tmp_path):
    store = ResultStore(tmp_path / "store")
    t = cal.calibrate(["skipnet"], "dip", [1e-3, 1e-2], DIP_BASE, store.root, seeds=(0, 1), progress=False,
                      device="cpu")
    assert len(store.run_ids()) == 2  # one run per lr, both seeds batched in it
    assert "peak_reached" in t  # the choice prefers settings whose fits peaked
    assert len(t) == 4 and set(t.seed) == {0, 1} and t.weight_decay.isna().all()
    assert np.isfinite(t.score).all() and (t.score > 0).all()
    assert (t.probe == "dip").all() and (t.cpu_seconds > 0).all()
    stamps = {r: (store.runs_dir / r / "meta.json").stat().st_mtime_ns for r in store.run_ids()}
    # the same calibration again: nothing runs, same table
    t2 = cal.calibrate(["skipnet"], "dip", [1e-3, 1e-2], DIP_BASE, store.root, seeds=(0, 1), progress=False,
                       device="cpu")
    assert {r: (store.runs_dir / r / "meta.json").stat().st_mtime_ns for r in store.run_ids()} == stamps
    pd.testing.assert_frame_equal(t, t2)
    # compute=False (a report drawn from the store) reads the same table; a grid not finished is one line
    pd.testing.assert_frame_equal(t, cal.calibrate(["skipnet"], "dip", [1e-3, 1e-2], DIP_BASE, store.root,
                                                   seeds=(0, 1), progress=False, device="cpu", compute=False))
    with pytest.raises(BiasprobeError, match="1 of its 2 runs.*run the study"):
        cal.calibrate(["skipnet"], "dip", [1e-2, 3e-2], DIP_BASE, store.root, seeds=(0, 1), progress=False,
                      device="cpu", compute=False)
    # a wider grid runs only the new lr, and returns only this grid's rows
    t3 = cal.calibrate(["skipnet"], "dip", [1e-3, 1e-2, 1e-1], DIP_BASE, store.root, seeds=(0, 1),
                       progress=False, device="cpu")
    assert len(store.run_ids()) == 3 and sorted(t3.lr.unique()) == [1e-3, 1e-2, 1e-1]
    t4 = cal.calibrate(["skipnet"], "dip", [1e-2], DIP_BASE, store.root, seeds=(0, 1), progress=False,
                       device="cpu")
    assert len(store.run_ids()) == 3 and list(t4.lr.unique()) == [1e-2]
    pd.testing.assert_frame_equal(t4.drop(columns="seconds").reset_index(drop=True),
                                  t[t.lr == 1e-2].drop(columns="seconds").reset_index(drop=True))


def test_classify_calibration_scores_on_the_validation_split(tmp_path):
    base = dict(n_train=100, epochs=1, val_size=100, batch_size=50, warmup_epochs=0.0, attr_samples=0)
    t = cal.calibrate(["skipnet"], "classify", [1e-3, 3e-3], {**base, "arch_kwargs": TINY}, tmp_path,
                      progress=False, device="cpu")
    assert len(t) == 2 and ((t.score >= 0) & (t.score <= 1)).all() and (t.weight_decay == 0.05).all()
    store = ResultStore(tmp_path)
    assert {store.config(r)["eval_split"] for r in store.run_ids()} == {"val"}
    ch = cal.choose(t).iloc[0]
    assert ch.lr == t.loc[t.score.idxmax(), "lr"] and ch.weight_decay == 0.05


def test_cli_calibrate_then_dip_lr_calibrated(tmp_path, capsys):
    out = tmp_path / "cal"
    rc = main(["calibrate", "--arch", "skipnet", "--probe", "dip", "--preset", "lr-smoke", "--grid", "1e-3", "1e-2",
               "--set", "size=32", "iters=3", f"arch_kwargs={TINY}", "--out", str(out), "--device", "cpu",
               "--quiet"])
    assert rc == 0
    for f in ("choices.csv", "scores_dip.csv", "calibration_dip.png"):
        assert (out / f).is_file(), f
    ch = cal.load_choices(out / "choices.csv")
    scores = pd.read_csv(out / "scores_dip.csv")
    assert len(ch) == 1 and ch.arch[0] == "skipnet" and ch.probe[0] == "dip"
    assert ch.lr[0] == scores.loc[scores.score.idxmax(), "lr"]
    assert json.loads(ch.base[0])["image"] == "chelsea"
    assert "skipnet" in capsys.readouterr().out
    # a second call for another arch keeps the first arch's rows in choices.csv and scores_dip.csv
    rc = main(["calibrate", "--arch", "vit", "--probe", "dip", "--preset", "lr-smoke", "--grid", "1e-3", "1e-2",
               "--set", "size=32", "iters=3", "arch_kwargs={'embed_dim': 16, 'depth': 1, 'num_heads': 2}",
               "--out", str(out), "--device", "cpu", "--quiet"])
    assert rc == 0
    assert sorted(cal.load_choices(out / "choices.csv").arch) == ["skipnet", "vit"]
    merged = pd.read_csv(out / "scores_dip.csv")
    assert sorted(merged.arch.unique()) == ["skipnet", "vit"] and len(merged) == 4
    assert cal.load_choices(out / "choices.csv").set_index("arch").loc["skipnet", "lr"] == ch.lr[0]

    # --lr calibrated uses the stored lr and records where it came from; --lr X overrides it
    for flag, lr, source in ((["--lr", "calibrated"], ch.lr[0], f"calibrated:{out / 'choices.csv'}"),
                             (["--lr", "0.005"], 0.005, "given"), ([], 0.01, "setting:dip")):
        runs = tmp_path / f"runs{len(flag)}{lr}"
        rc = main(["dip", "--arch", "skipnet", "--arch-kw", "num_scales=3", "channels_down=8", "channels_up=8",
                   "--image", "astronaut", "--size", "32", "--iters", "2", "--log-every", "1", "--no-spectral",
                   *flag, "--calibration", str(out / "choices.csv"), "--device", "cpu", "--out", str(runs),
                   "--quiet"])
        assert rc == 0
        summary = json.loads(next(runs.iterdir()).joinpath("summary.json").read_text())
        assert summary["lr"] == pytest.approx(lr) and summary["lr_source"] == source

    capsys.readouterr()
    rc = main(["dip", "--arch", "unet", "--lr", "calibrated", "--calibration", str(out / "choices.csv"),
               "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "no calibrated lr for unet/dip" in err and err.count("\n") == 1


def test_cli_classify_lr_calibrated(tmp_path, capsys):
    path = tmp_path / "choices.csv"
    rows = [("skipnet", "classify", 3e-3, 0.1, 0, 0.5), ("skipnet", "classify", 1e-3, 0.1, 0, 0.4)]
    cal.save_choices(cal.choose(pd.DataFrame(rows, columns=["arch", "probe", "lr", "weight_decay", "seed",
                                                            "score"])), path)
    rc = main(["classify", "--arch", "skipnet", "--n-train", "50", "--epochs", "1", "--batch-size", "25",
               "--eval-split", "val", "--val-size", "50", "--attr-samples", "0", "--lr", "calibrated",
               "--weight-decay", "calibrated", "--calibration", str(path), "--arch-kw", "channels_down=8",
               "--arch-kw", "channels_up=8", "--arch-kw", "channels_skip=2", "--arch-kw", "num_scales=3",
               "--device", "cpu", "--out", str(tmp_path / "runs"), "--quiet"])
    assert rc == 0
    run_dir = next((tmp_path / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    conf = json.loads((run_dir / "config.json").read_text())["config"]
    assert conf["lr"] == 3e-3 and conf["weight_decay"] == 0.1
    assert summary["lr"] == 3e-3 and summary["lr_source"] == f"calibrated:{path}"
    rc = main(["classify", "--arch", "vit", "--lr", "calibrated", "--calibration", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and "no calibrated lr for vit/classify" in err and err.count("\n") == 1


def test_per_arch_kwargs_reach_their_arch_only():
    configs = cal.calibration_configs(["skipnet", "deep_decoder"], "dip", [1e-3, 1e-2], DIP_BASE,
                                      arch_kwargs={"deep_decoder": {"channels": 8}})
    kw = {(c["arch"], c["lr"]): c["arch_kwargs"] for c in configs}
    assert kw[("deep_decoder", 1e-3)] == kw[("deep_decoder", 1e-2)] == {"channels": 8}
    assert kw[("skipnet", 1e-3)] == TINY


def test_classify_grids_are_wide_enough_to_tell_an_edge():
    from biasprobe.studies.calibrate import preset

    for name in ("lr-quick", "lr-paper"):
        grid = preset(name, "classify")["grid"]
        assert len(grid) >= 5 and min(grid) <= 3e-4 and max(grid) >= 1e-2, name
        ratios = np.diff(np.log10(grid))
        assert np.allclose(ratios, ratios.mean(), atol=0.03), name  # log-spaced (half decades)


def test_a_former_calibration_preset_name_names_the_new_one(capsys):
    from biasprobe.cli import main

    rc = main(["calibrate", "--arch", "skipnet", "--probe", "dip", "--preset", "quick", "--out", "/tmp/x"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "'quick' is now called 'lr-quick'" in err


def test_the_former_word_auto_fails_in_one_line_naming_calibrated(capsys):
    from biasprobe.cli import main

    with pytest.raises(SystemExit) as e:
        main(["dip", "--arch", "vit", "--lr", "auto"])
    assert e.value.code == 2 and "'auto' is now 'calibrated'" in capsys.readouterr().err


def test_choose_with_peak_by_counts_a_peak_near_the_cap_as_not_peaked():
    # vit[decoder=bilinear] on chelsea: 1e-4 peaked at step 9,825 of a 12,000 cap and scored best; with peak_by 6,000
    # (the zoo plan's peak_within 0.5) it ranks below the settings that peaked early, and without it is chosen
    t = table([("a", 1e-4, 0, 27.6), ("a", 3e-4, 0, 26.7), ("a", 1e-3, 0, 27.3)])
    t["peak_reached"] = True
    t["max_psnr_gt_step"] = [9825, 2003, 2204]
    assert cal.choose(t).iloc[0].lr == 1e-4
    ch = cal.choose(t, peak_by=6000).iloc[0]
    assert ch.lr == 1e-3 and ch.peaked and ch.second_lr == 3e-4
