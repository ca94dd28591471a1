"""The predictive probe: data, training loop, measures and CLI. Tiny sizes (CPU, shared machine)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from biasprobe.probes.classify import cifar
from biasprobe.probes.classify import measures as predictive
from biasprobe.probes.classify.train import ClassifyConfig, lr_factor, plateau, run_classify, step_batches
from biasprobe.cli import main
from biasprobe.errors import BiasprobeError

# 4 classes told apart by colour (plus noise and a random bright square): learnable in a few epochs
COLOURS = {"blue": (40, 60, 200), "green": (40, 180, 60), "red": (200, 50, 40), "yellow": (210, 200, 50)}
FAST = dict(attr_samples=4, ig_steps=4, device="cpu")


def _write_folder(root, n_train=40, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for name, rgb in COLOURS.items():
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(rgb) + rng.normal(0, 35, (32, 32, 3)), 0, 255)
                y, x = rng.integers(0, 24, 2)
                img[y : y + 8, x : x + 8] = rng.integers(0, 256, 3)
                Image.fromarray(img.astype(np.uint8)).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("colours"))


# ----------------------------------------------------------------------------------------------
# data


def test_balanced_subset_is_balanced_seeded_and_nested():
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([30, 25, 40, 33])])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    a = cifar.balanced_indices(labels, 40, seed=3)
    assert torch.bincount(labels[a], minlength=4).tolist() == [10, 10, 10, 10]
    assert len(set(a.tolist())) == 40
    assert torch.equal(a, cifar.balanced_indices(labels, 40, seed=3))
    assert not torch.equal(a, cifar.balanced_indices(labels, 40, seed=4))
    odd = cifar.balanced_indices(labels, 42, seed=3)
    assert sorted(torch.bincount(labels[odd], minlength=4).tolist()) == [10, 10, 11, 11]
    small = cifar.balanced_indices(labels, 20, seed=3)
    assert set(small.tolist()) <= set(a.tolist())  # nested for the same seed
    rest = cifar.balanced_indices(labels, 20, seed=5, exclude=a)
    assert not set(rest.tolist()) & set(a.tolist())


def test_subset_too_large_names_the_max():
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([30, 25, 40])])
    assert cifar.max_balanced(labels, 3) == 75
    with pytest.raises(BiasprobeError, match="at most 75"):
        cifar.balanced_indices(labels, 76, seed=0)
    with pytest.raises(BiasprobeError, match="at most 60"):  # excluding 10 of class 0 leaves it 20
        cifar.balanced_indices(labels, 61, seed=0, exclude=torch.arange(10))


def test_missing_data_offline_says_how_to_pass_data(monkeypatch, tmp_path):
    monkeypatch.setattr(cifar, "default_data_dir", lambda: None)
    with pytest.raises(BiasprobeError, match="--data"):
        cifar.load_split("train")
    with pytest.raises(BiasprobeError, match="--download"):
        cifar.load_split("train", data_root=tmp_path)
    with pytest.raises(BiasprobeError, match="train/"):
        cifar.load_split("train", data=tmp_path)


def test_imagefolder_loads_uint8_and_resizes(folder, tmp_path):
    split = cifar.load_split("train", data=folder)
    assert split.images.shape == (160, 3, 32, 32) and split.images.dtype == torch.uint8
    assert split.classes == ("blue", "green", "red", "yellow")
    assert torch.bincount(split.labels).tolist() == [40] * 4
    assert cifar.load_split("train", data=folder) is split  # decoded once per process
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.fromarray(np.full((64, 48, 3), 200, np.uint8)).save(tmp_path / "train" / "a" / "big.png")
    big = cifar.load_split("train", data=tmp_path)
    assert big.images.shape == (1, 3, 32, 32) and int(big.images.float().mean().round()) == 200


def test_shared_subset_if_present():
    if cifar.default_data_dir() is None:
        pytest.skip("no shared cifar10-subset here")
    train, test = cifar.load_split("train"), cifar.load_split("test")
    assert (len(train), len(test)) == (5482, 1017)
    assert train.classes[:2] == ("airplane", "automobile") and train.num_classes == 10
    idx = cifar.balanced_indices(train.labels, 5000, seed=0)
    assert torch.bincount(train.labels[idx]).tolist() == [500] * 10
    with pytest.raises(BiasprobeError, match="at most 5270"):
        cifar.balanced_indices(train.labels, 6000, seed=0)


def test_augment_is_seeded_crop_and_flip():
    x = torch.rand(16, 3, 32, 32)
    a = cifar.augment(x, torch.Generator().manual_seed(0))
    b = cifar.augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    flips = cifar.augment(x, torch.Generator().manual_seed(0), pad=0)  # pad 0: only the flip is left
    for i in range(16):
        assert torch.equal(flips[i], x[i]) or torch.equal(flips[i], x[i].flip(-1))
    assert not torch.equal(flips, x)
    dy, dx = torch.tensor([3, -2]), torch.tensor([-4, 1])
    circ = cifar.shift(x[:2], dy, dx, "circular")
    for i in range(2):
        assert torch.equal(circ[i], torch.roll(x[i], (int(dy[i]), int(dx[i])), dims=(1, 2)))
    pad = cifar.shift(x[:2], dy, dx, "zeros")
    assert torch.equal(pad[0, :, 3:, :28], x[0, :, :29, 4:]) and pad[0, :, :3].abs().sum() == 0


# ----------------------------------------------------------------------------------------------
# measures


class Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.tensor([0.0, 1.0, 0.5]))

    def forward(self, x):
        return self.b.expand(len(x), 3) + 0 * x.sum()


class PointwiseGAP(nn.Module):
    """1x1 conv, ReLU, global average: blind to where things are, so circular shifts change nothing."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 1)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))


def test_shift_consistency_is_one_for_position_blind_models():
    torch.manual_seed(0)
    x = torch.rand(50, 3, 32, 32)
    for mode in ("circular", "zeros", "reflect"):
        assert predictive.shift_consistency(Constant(), x, mode=mode) == 1.0
    assert predictive.shift_consistency(PointwiseGAP(), x, mode="circular") == 1.0
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))  # position-bound: shifts change its mind
    c = predictive.shift_consistency(flat, x, mode="circular", seed=1)
    assert 0.0 <= c < 1.0


def test_ece_of_a_calibrated_toy_is_zero_and_of_an_overconfident_one_is_not():
    n = 400
    probs = torch.tensor([[0.75, 0.25]]).repeat(n, 1)
    labels = torch.zeros(n, dtype=torch.long)
    labels[: n // 4] = 1  # 75% are class 0: confidence 0.75 = accuracy 0.75
    assert predictive.ece(probs, labels) == pytest.approx(0.0, abs=1e-6)
    over = torch.tensor([[0.95, 0.05]]).repeat(n, 1)
    assert predictive.ece(over, labels) == pytest.approx(0.20, abs=1e-5)


def test_locality_of_known_maps():
    uniform = torch.ones(2, 32, 32)
    loc = predictive.locality(uniform)
    assert loc["center_share"] == pytest.approx(0.25) and loc["entropy"] == pytest.approx(1.0)
    point = torch.zeros(1, 32, 32)
    point[0, 16, 16] = 3.0
    loc = predictive.locality(point)
    assert loc["center_share"] == pytest.approx(1.0) and loc["entropy"] == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(predictive.locality(torch.zeros(1, 32, 32))["center_share"])


def test_attribution_shares_in_unit_interval():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    x = torch.rand(6, 3, 32, 32)
    for method in ("saliency", "ig", "smoothgrad"):
        loc = predictive.attribution_locality(net, x, method=method, ig_steps=4, nt_samples=2)
        assert 0.0 <= loc["center_share"] <= 1.0 and 0.0 <= loc["entropy"] <= 1.0
    with pytest.raises(BiasprobeError):
        predictive.attribution_maps(net, x, method="deeplift")


def test_sample_efficiency_auc_on_a_hand_made_table():
    rows = [("a", 100, s, 0.3) for s in range(3)] + [("a", 10000, s, 0.5) for s in range(3)]
    rows += [("b", 100, 0, 0.2), ("b", 100, 1, 0.4), ("b", 1000, 0, 0.5), ("b", 1000, 1, 0.5),
             ("b", 10000, 0, 0.6), ("b", 10000, 1, 0.6)]
    df = pd.DataFrame(rows, columns=["arch", "n_train", "seed", "test_acc"])
    out = predictive.sample_efficiency_auc(df).set_index("arch")
    assert out.loc["a", "auc"] == pytest.approx(0.4)  # straight line in log N: the mean of the ends
    assert out.loc["a", "ci_low"] == pytest.approx(0.4) and out.loc["a", "ci_high"] == pytest.approx(0.4)
    # b: means 0.3, 0.5, 0.6 at equal log steps -> (0.3 + 2 * 0.5 + 0.6) / 4 = 0.475
    assert out.loc["b", "auc"] == pytest.approx(0.475)
    assert out.loc["b", "ci_low"] < 0.475 < out.loc["b", "ci_high"]
    assert out.loc["b", "ci_low"] >= (0.2 + 2 * 0.5 + 0.6) / 4 - 1e-9  # the CI stays within the seed extremes
    with pytest.raises(BiasprobeError, match="two or more"):
        predictive.sample_efficiency_auc(df[df.n_train == 100])


# ----------------------------------------------------------------------------------------------
# training


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, 4, 20) for s in range(20)]
    assert f[0] == pytest.approx(0.25) and f[3] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[3:], f[4:])) and f[-1] < 0.05


def test_same_seed_same_epochs_table(folder):
    cfg = dict(arch="skipnet", n_train=40, epochs=2, batch_size=16, data=str(folder), attr_samples=0)
    a, sa = run_classify(ClassifyConfig(**cfg, seed=1), progress=False)
    b, sb = run_classify(ClassifyConfig(**cfg, seed=1), progress=False)
    c, _ = run_classify(ClassifyConfig(**cfg, seed=2), progress=False)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    assert sa["final_test_acc"] == sb["final_test_acc"] and sa["ece"] == sb["ece"]
    assert not a["train_loss"].equals(c["train_loss"])
    assert list(a.columns) == ["arch", "n_train", "seed", "epoch", "train_loss", "train_acc", "test_acc",
                               "test_nll", "lr", "seconds"]


def test_training_learns_the_colours(folder, tmp_path):
    cfg = ClassifyConfig(arch="skipnet", n_train=100, epochs=4, batch_size=20, warmup_epochs=1, data=str(folder),
                         **FAST)
    df, s = run_classify(cfg, out_dir=tmp_path / "run", progress=False)
    assert df["train_loss"].iloc[-1] < df["train_loss"].iloc[0]
    assert s["final_test_acc"] > 0.5  # chance is 0.25
    for key in ("ece", "shift_consistency_circular", "shift_consistency_padded", "attr_center_share_saliency",
                "attr_center_share_ig", "attr_entropy_ig"):
        assert 0.0 <= s[key] <= 1.0, key
    assert s["n_params"] > 0 and s["train_images_per_s"] > 0
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "epochs.parquet", "summary.json", "learning_curve.png"} <= files
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["seed"] == 0 and saved["config"]["n_train"] == 100 and "versions" in saved["provenance"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "run" / "epochs.parquet"), df)


def test_val_split_comes_from_outside_the_subset(folder):
    cfg = ClassifyConfig(arch="skipnet", n_train=40, epochs=1, data=str(folder), eval_split="val", val_size=40,
                         attr_samples=0)
    df, s = run_classify(cfg, progress=False)
    assert "val_acc" in df and s["n_eval"] == 40 and "final_val_acc" in s
    with pytest.raises(BiasprobeError, match="--val-size"):
        run_classify(ClassifyConfig(arch="skipnet", n_train=120, epochs=1, data=str(folder), eval_split="val",
                                    val_size=80), progress=False)


def test_weights_checkpoint(folder, tmp_path):
    from biasprobe import create_classifier

    torch.save(create_classifier("skipnet", num_classes=4).state_dict(), tmp_path / "w.pt")
    cfg = dict(arch="skipnet", n_train=8, epochs=1, data=str(folder), attr_samples=0)
    run_classify(ClassifyConfig(**cfg, weights=str(tmp_path / "w.pt")), progress=False)
    torch.save(create_classifier("skipnet", num_classes=7).state_dict(), tmp_path / "bad.pt")
    with pytest.raises(BiasprobeError, match="does not fit"):
        run_classify(ClassifyConfig(**cfg, weights=str(tmp_path / "bad.pt")), progress=False)
    with pytest.raises(BiasprobeError, match="no such file"):
        run_classify(ClassifyConfig(**cfg, weights=str(tmp_path / "none.pt")), progress=False)


# ----------------------------------------------------------------------------------------------
# CLI


def test_cli_grid_writes_runs_and_sample_efficiency(folder, tmp_path, capsys):
    out = tmp_path / "runs"
    rc = main(["classify", "--arch", "skipnet", "--n-train", "8", "16", "--seeds", "0", "--epochs", "1",
               "--data", str(folder), "--out", str(out), "--attr-samples", "2", "--device", "cpu", "--quiet"])
    assert rc == 0
    dirs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [d.name.split("-")[:3] for d in dirs] == [["skipnet", "n16", "s0"], ["skipnet", "n8", "s0"]]
    for d in dirs:
        assert {"config.json", "epochs.parquet", "summary.json", "learning_curve.png"} <= {p.name for p in d.iterdir()}
    assert len(pd.read_csv(out / "runs.csv")) == 2
    auc = pd.read_csv(out / "sample_efficiency.csv")
    assert list(auc.columns[:4]) == ["arch", "auc", "ci_low", "ci_high"] and auc.arch.tolist() == ["skipnet"]


@pytest.mark.parametrize("argv", [
    ["--arch", "no_such_net"],
    ["--arch", "skipnet", "--n-train", "100000"],
    ["--arch", "skipnet", "--epochs", "0"],
    ["--arch", "skipnet", "--weights", "/no/such/file.pt"],
    ["--arch", "skipnet", "--arch-kw", "bogus"],
    ["--arch", "skipnet", "--steps", "0"],
    ["--arch", "skipnet", "--steps", "5", "--epochs", "1"],
    ["--arch", "skipnet", "--steps", "5", "--warmup-frac", "1.5"],
    ["--arch", "skipnet", "--seed", str(2**63)],
    ["--arch", "skipnet", "--seed", "-1"],
    ["--arch", "skipnet", "--lr", "nan"],
    ["--arch", "skipnet", "--weight-decay", "inf"],
])
def test_cli_bad_input_exits_2(folder, tmp_path, argv, capsys):
    extra = [] if "--epochs" in argv or "--steps" in argv else ["--epochs", "1"]
    rc = main(["classify", *argv, *extra, "--data", str(folder), "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("biasprobe: error:") and len(err.strip().splitlines()) == 1


def test_cli_refuses_an_existing_run_folder_and_writes_whole_folders(folder, tmp_path, capsys):
    import os

    out = tmp_path / "runs"
    argv = ["classify", "--arch", "skipnet", "--n-train", "8", "--seeds", "0", "--epochs", "1", "--data", str(folder),
            "--out", str(out), "--attr-samples", "0", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]  # written in a temp folder, renamed
    umask = os.umask(0)
    os.umask(umask)
    assert run.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert (run / "summary.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    summary = json.loads((run / "summary.json").read_text())
    assert summary["lr_source"] == "given" and summary["lr"] == 1e-3
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    capsys.readouterr()
    assert main(argv) == 2  # the same run again: refused before training, nothing rewritten
    err = capsys.readouterr().err
    assert "exists" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    with pytest.raises(BiasprobeError, match="exists"):
        run_classify(ClassifyConfig(arch="skipnet", n_train=8, epochs=1, data=str(folder)), out_dir=run,
                     progress=False)


def test_cli_argparse_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["classify", "--arch", "skipnet", "--epochs", "many"])
    assert exc.value.code == 2


def test_eval_every_skips_intermediate_evaluations(folder):
    cfg = dict(arch="skipnet", n_train=40, epochs=3, batch_size=16, data=str(folder), attr_samples=0, seed=1)
    every, s_every = run_classify(ClassifyConfig(**cfg), progress=False)
    sparse, s_sparse = run_classify(ClassifyConfig(**cfg, eval_every=2), progress=False)
    assert sparse.test_acc.isna().tolist() == [True, False, False]
    # evaluation does not touch training: the same weights, so the same final numbers
    assert s_sparse["final_test_acc"] == s_every["final_test_acc"]
    pd.testing.assert_series_equal(sparse.train_loss, every.train_loss)


def test_measures_off_keeps_accuracy_and_drops_shift_and_attribution(folder):
    cfg = dict(arch="skipnet", n_train=40, epochs=1, batch_size=16, data=str(folder), attr_samples=4, ig_steps=2,
               seed=1)
    _, on = run_classify(ClassifyConfig(**cfg), progress=False)
    _, off = run_classify(ClassifyConfig(**cfg, measures=False), progress=False)
    assert "shift_consistency_circular" in on and "attr_center_share_ig" in on
    assert not any(k.startswith(("shift_", "attr_")) for k in off)
    assert off["final_test_acc"] == on["final_test_acc"] and off["ece"] == on["ece"]


# ----------------------------------------------------------------------------------------------
# step budgets


def test_step_batches_are_exact_and_cover_the_subset():
    batches = list(step_batches(10, 4, 7, torch.Generator().manual_seed(0)))
    assert len(batches) == 7 and all(len(b) == 4 for b in batches)
    flat = torch.cat(batches)
    assert sorted(flat[:10].tolist()) == list(range(10)) and sorted(flat[10:20].tolist()) == list(range(10))
    again = torch.cat(list(step_batches(10, 4, 7, torch.Generator().manual_seed(0))))
    assert torch.equal(flat, again)


def test_plateau_flags_a_curve_still_rising_in_the_last_tenth():
    steps = list(range(10, 101, 10))
    flat = pd.DataFrame(dict(step=steps, test_acc=[0.1, 0.3, 0.4, 0.45, 0.5, 0.52, 0.53, 0.54, 0.55, 0.555]))
    rising = flat.assign(test_acc=[0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6])
    p = plateau(flat, "test_acc", 100, tol=0.01)
    assert p["plateau_step"] == 90 and p["plateau_gain"] == pytest.approx(0.005) and p["plateaued"]
    p = plateau(rising, "test_acc", 100, tol=0.01)
    assert p["plateau_gain"] == pytest.approx(0.05) and not p["plateaued"]


def test_step_budget_is_the_same_number_of_updates_at_every_n(folder, tmp_path):
    cfg = dict(arch="skipnet", steps=7, batch_size=16, eval_every_steps=3, data=str(folder), attr_samples=0,
               measures=False, seed=1)
    counts = {}
    for n in (40, 100):
        df, s = run_classify(ClassifyConfig(**cfg, n_train=n), out_dir=tmp_path / f"n{n}", progress=False)
        assert df.step.tolist() == [3, 6, 7]  # every 3 steps, at 90% (round(6.3) = 6) and at the end
        assert s["steps_run"] == 7 and s["images_seen"] == 7 * 16
        assert df.epoch.iloc[-1] == pytest.approx(7 * 16 / n)
        assert {"plateau_gain", "plateaued", "plateau_step"} <= set(s) and s["plateau_step"] == 6
        assert s["plateau_gain"] == pytest.approx(df.test_acc.iloc[-1] - df.test_acc.iloc[1])
        assert (tmp_path / f"n{n}" / "steps.parquet").is_file()
        counts[n] = s["steps_run"]
    assert counts[40] == counts[100] == 7


def test_step_budget_counts_optimizer_updates(folder, monkeypatch):
    calls = []
    real = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: (calls.append(1), real(self, *a, **k))[1])
    run_classify(ClassifyConfig(arch="skipnet", n_train=40, steps=5, batch_size=16, data=str(folder),
                                attr_samples=0, measures=False), progress=False)
    assert len(calls) == 5


def test_epoch_mode_keeps_its_run_names():
    import dataclasses
    import hashlib

    cfg = ClassifyConfig(arch="skipnet")
    old = dataclasses.asdict(cfg)
    for k in ("device", "steps", "warmup_frac", "eval_every_steps", "plateau_tol"):
        old.pop(k)
    old["attr_methods"] = list(old["attr_methods"])
    assert cfg.short_hash() == hashlib.sha1(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:8]
    # in step mode the epoch fields do not change the run
    assert (ClassifyConfig(arch="skipnet", steps=10, epochs=3).short_hash()
            == ClassifyConfig(arch="skipnet", steps=10, epochs=30).short_hash())
