"""Resumable runs (``biasprobe.resume``): a killed DIP fit goes on from its last save and ends as the uninterrupted
fit, number for number; a save of another fit is not used; the sweep gives each run its folder, carries a killed
attempt's time into the run's, and removes the folder once the run is stored."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from biasprobe import BiasprobeError, resume
from biasprobe.probes.dip import DIPConfig, run_dip
from biasprobe.probes.dip import checkpoint as saved_state
from biasprobe.studies.sweep import ResultStore, run_id, run_sweep

TINY = dict(channels_down=8, channels_up=8, channels_skip=2, num_scales=3)
TIMING = ["sec_per_step", "peak_mem_mb", "seconds", "wall_seconds"]


def cfg(**kw):
    base = dict(arch="skipnet", arch_kwargs=TINY, image="astronaut", size=32, iters=40, log_every=4,
                device="cpu", es_window=4, es_patience=3, spectral=False)
    base.update(kw)
    return DIPConfig(**base)


class Killed(BaseException):
    """A kill: not an Exception, so nothing on the way records it as a failure."""


def kill_after(monkeypatch, saves: int) -> dict:
    """Make the ``saves``-th checkpoint save raise Killed right after it is written."""
    real, seen = resume.Checkpoint.save, {"n": 0, "steps": []}

    def save(self, name, state):
        real(self, name, state)
        seen["n"] += 1
        seen["steps"].append(state["step"])
        if seen["n"] >= saves:
            raise Killed

    monkeypatch.setattr(resume.Checkpoint, "save", save)
    return seen


def same_result(a, b):
    pd.testing.assert_frame_equal(a.curves, b.curves)
    keep = [c for c in a.summary.columns if c not in TIMING]
    pd.testing.assert_frame_equal(a.summary[keep], b.summary[keep])
    for seed in a.images:
        for kind in ("best", "final", "ema"):
            np.testing.assert_array_equal(a.images[seed][kind], b.images[seed][kind])


@pytest.mark.parametrize("kw", [
    # two seeds, reg-noise draws, a guard that backtracks (lr 1.0), a fixed budget
    dict(seeds=[0, 1], lr=1.0, backtrack_db=1.0, reg_noise_std=1 / 30),
    # the stop rule and dead check carried across the kill, and a fit that stops by its rule after the resume
    dict(seeds=[2], lr=0.01, stop="peak", patience=8, gap_window=2, collapse_db=5.0, dead_after=8, iters=400),
])
def test_a_killed_fit_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, kw):
    c = cfg(**kw)
    whole = run_dip(c, progress=False)
    assert whole.summary.steps_run.max() > 12  # the kill below falls inside the fit
    seen = kill_after(monkeypatch, 3)
    with resume.scope(tmp_path, every=1e-9), pytest.raises(Killed):  # a save at every regular log step
        run_dip(c, progress=False)
    monkeypatch.undo()
    assert seen["steps"] == [0, 4, 8]
    assert (tmp_path / f"{saved_state.name(c.seeds)}.pt").is_file()
    with resume.scope(tmp_path, every=0) as checkpoint:  # resume, save nothing more
        again = run_dip(c, progress=False)
    assert checkpoint.carried > 0
    same_result(again, whole)
    if "backtrack_db" in kw:
        assert (whole.summary.backtracks > 0).all()  # the guard's state really was carried


def test_a_save_of_another_fit_is_not_used(tmp_path, monkeypatch):
    kill_after(monkeypatch, 2)
    with resume.scope(tmp_path, every=1e-9), pytest.raises(Killed):
        run_dip(cfg(seeds=[0], lr=0.02), progress=False)
    monkeypatch.undo()
    other = cfg(seeds=[0], lr=0.01)
    with resume.scope(tmp_path, every=0) as checkpoint, pytest.warns(UserWarning, match="differs in config"):
        got = run_dip(other, progress=False)
    assert checkpoint.carried == 0
    same_result(got, run_dip(other, progress=False))


def test_a_damaged_save_starts_the_fit_over(tmp_path):
    c = cfg(seeds=[0])
    (tmp_path / f"{saved_state.name(c.seeds)}.pt").write_bytes(b"not a checkpoint")
    with resume.scope(tmp_path, every=0) as checkpoint, pytest.warns(UserWarning, match="starts over"):
        got = run_dip(c, progress=False)
    assert checkpoint.carried == 0
    same_result(got, run_dip(c, progress=False))


def test_no_save_outside_a_scope_or_when_turned_off(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(resume.Checkpoint, "save", lambda self, name, state: calls.append(name))
    run_dip(cfg(seeds=[0], iters=12), progress=False)
    with resume.scope(tmp_path, every=0):
        run_dip(cfg(seeds=[0], iters=12), progress=False)
    assert calls == []
    monkeypatch.setenv("BIASPROBE_CHECKPOINT_S", "soon")
    with pytest.raises(BiasprobeError, match="BIASPROBE_CHECKPOINT_S"):
        resume.every_s()
    with pytest.raises(BiasprobeError, match="BIASPROBE_CHECKPOINT_S"):  # before any run of a sweep
        run_sweep([dict(n=1, kill_at=-1, flag=str(tmp_path / "f"))], count, ResultStore(tmp_path / "s"),
                  progress=False)
    assert not (tmp_path / "s" / "runs").exists()


# ---------------------------------------------------------------------------------------------------- the sweep


def count(config: dict) -> dict:
    """A resumable toy run: counts to config['n'], saving after each number; killed once at config['kill_at'] (the
    flag file config['flag'] marks that the kill happened)."""
    checkpoint = resume.current()
    state = checkpoint.load("count") or {"i": 0, "spent": 0.0}
    if state["i"]:
        checkpoint.carry("count", state["spent"])
    for i in range(state["i"], config["n"]):
        if i == config["kill_at"] and not os.path.exists(config["flag"]):
            open(config["flag"], "w").close()
            raise Killed
        checkpoint.save("count", {"i": i + 1, "spent": 7.0})
    return {"out": pd.DataFrame({"n": [config["n"]], "resumed_from": [state["i"]]})}


def test_the_sweep_resumes_a_killed_run_and_removes_its_save(tmp_path):
    store = ResultStore(tmp_path / "store")
    config = dict(n=5, kill_at=3, flag=str(tmp_path / "killed"))
    rid = run_id(config)
    with pytest.raises(Killed):
        run_sweep([config], count, store, progress=False)
    assert (store.root / "partial" / rid / "count.pt").is_file()  # the kill leaves the save
    run_sweep([config], count, store, progress=False)
    assert store.load("out").resumed_from.tolist() == [3]
    meta = json.loads((store.runs_dir / rid / "meta.json").read_text())
    assert meta["resumed"] == {"carried_seconds": 7.0}
    assert meta["seconds"] >= 7.0  # the killed attempt's time counts in the run's
    assert not (store.root / "partial" / rid).exists()  # removed once stored


def test_a_save_left_beside_a_stored_run_is_cleaned(tmp_path):
    store = ResultStore(tmp_path / "store")
    config = dict(n=2, kill_at=-1, flag=str(tmp_path / "f"))
    run_sweep([config], count, store, progress=False)
    left = store.root / "partial" / run_id(config)
    left.mkdir(parents=True)
    (left / "count.pt").write_bytes(b"x")
    assert store.clean_temp() == 1 and not left.exists()
