"""Runs taken over from an earlier store (``studies/reuse.py``, ``probes/dip/extend.py``) and the loop's dead check."""

import json

import pandas as pd
import pytest
import torch

from biasprobe import BiasprobeError
from biasprobe.archs import registry
from biasprobe.probes import get_probe
from biasprobe.probes.dip import DIPConfig, run_dip
from biasprobe.studies.reuse import sweep_reusing, taken_over
from biasprobe.studies.runner import study_job
from biasprobe.studies.sweep import ResultStore, run_id, run_sweep

TIMING = ["sec_per_step", "peak_mem_mb"]


@pytest.fixture
def nets(monkeypatch):
    """Two tiny generators: a per-pixel net (fast; its fits stop by the peak rule within ~50 steps) and a net whose
    output is one learned colour (dead by construction)."""
    registry.get_arch("skipnet").base()  # its builders registered before the copy (they go to the live registry)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register_arch("tmp_pixnet", family="cnn", description="two 1x1 convs")
    def pixnet(in_chans, out_chans):
        return torch.nn.Sequential(torch.nn.Conv2d(in_chans, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, out_chans, 1))

    class Colour(torch.nn.Module):
        def __init__(self, in_chans, out_chans):
            super().__init__()
            self.c = torch.nn.Parameter(torch.zeros(1, out_chans, 1, 1))

        def forward(self, z):
            return torch.sigmoid(self.c).expand(z.shape[0], -1, *z.shape[2:]) + 0 * z[:, :1]

    @registry.register_arch("tmp_colournet", family="cnn", description="one learned colour")
    def colournet(in_chans, out_chans):
        return Colour(in_chans, out_chans)


def pcfg(**kw):
    base = dict(arch="tmp_pixnet", image="astronaut", size=16, iters=400, log_every=2, device="cpu", es_window=4,
                es_patience=3, seeds=[0], stop="peak", patience=10, stop_on_gap=False, spectral=False, lr=0.01,
                setting="study")
    base.update(kw)
    return DIPConfig(**base)


def study_run(c: DIPConfig) -> dict:
    return {"probe": "dip", "config": c.identity()}


def test_a_fit_its_rule_ended_is_the_same_fit_under_a_higher_cap(tmp_path, nets):
    donor = ResultStore(tmp_path / "old")
    old = study_run(pcfg(iters=400))
    run_sweep([old], study_job, donor, progress=False)
    assert donor.load("summary").steps_run.max() < 400  # the rule ended it before its cap

    new = study_run(pcfg(iters=2000))
    store = ResultStore(tmp_path / "new")
    rows = sweep_reusing([new], _never_called, store, progress=False, donors=[donor.root])
    assert rows.status.tolist() == ["done"] and len(rows.attrs["adopted"]) == 1
    rid = run_id(new)
    meta = json.loads((store.runs_dir / rid / "meta.json").read_text())
    assert meta["reused_from"]["run_id"] == run_id(old) and meta["seconds"] == donor.index().seconds.iloc[0]
    assert pd.read_csv(store.root / "reused.csv").run_id.tolist() == [rid]

    # the same tables a fresh run of the new config makes (timings aside): the cap changed nothing before the stop
    fresh = get_probe("dip").run(DIPConfig(**new["config"]))
    got = {t: store.load(t, [rid]).drop(columns="run_id") for t in ("summary", "curves", "images")}
    pd.testing.assert_frame_equal(got["curves"], fresh["curves"])
    pd.testing.assert_frame_equal(got["images"], fresh["images"])
    pd.testing.assert_frame_equal(got["summary"].drop(columns=TIMING), fresh["summary"].drop(columns=TIMING),
                                  check_like=True)
    assert (got["summary"].iters == 2000).all()
    # the donor's other files are kept byte for byte
    assert (store.runs_dir / rid / "curves.parquet").read_bytes() == \
        (donor.runs_dir / run_id(old) / "curves.parquet").read_bytes()


def test_a_new_dead_check_takes_over_a_fit_alive_at_it_and_computes_one_dead_there(tmp_path, nets):
    alive = pcfg(input_kind="meshgrid", lr=0.05)  # fits a gradient: beats the constant colour, stops by its rule
    dead = pcfg()  # 1x1 convs of a noise input: a colour (its best psnr_obs is below the constant's + 0.5 dB)
    donor = ResultStore(tmp_path / "old")
    run_sweep([study_run(alive), study_run(dead)], study_job, donor, progress=False)
    assert (donor.load("summary").steps_run > 21).all()  # both ran past the check below without one

    new_alive, new_dead = (study_run(DIPConfig(**{**c.__dict__, "iters": 2000, "dead_after": 20})) for c in (alive, dead))
    store = ResultStore(tmp_path / "new")
    rows = sweep_reusing([new_alive, new_dead], study_job, store, progress=False, donors=[donor.root])
    assert [r["run_id"] for r in rows.attrs["adopted"]] == [run_id(new_alive)]
    assert "alive at the dead check (step 20)" in rows.attrs["adopted"][0]["how"]
    fresh = get_probe("dip").run(DIPConfig(**new_alive["config"]))
    pd.testing.assert_frame_equal(store.load("curves", [run_id(new_alive)]).drop(columns="run_id"), fresh["curves"])
    computed = store.load("summary", [run_id(new_dead)]).iloc[0]  # computed: stopped dead at the check
    assert computed.dead_stop and computed.steps_run == 21


def test_calibration_configs_are_copied_or_computed_never_extended(tmp_path, nets):
    """Calibration runs are flat configs (no "config" field): a donor can only give the same run."""
    from biasprobe.studies.reuse import adopt

    donor = ResultStore(tmp_path / "old")
    flat = [{"probe": "dip", "arch": "tmp_pixnet", "lr": lr} for lr in (0.1, 0.2)]
    run_sweep(flat[:1], _table_of_lr, donor, progress=False)
    store = ResultStore(tmp_path / "new")
    assert [r["run_id"] for r in adopt(store, [donor.root], flat)] == [run_id(flat[0])]


def test_each_adoption_is_logged_when_it_is_stored(tmp_path, monkeypatch):
    from biasprobe.studies import reuse

    donor = ResultStore(tmp_path / "old")
    configs = [{"x": i} for i in range(3)]
    run_sweep(configs, _table, donor, progress=False)
    real, n = reuse._copy_run, []

    def copy_then_die(d, s, rid):
        if n:
            raise KeyboardInterrupt
        n.append(rid)
        return real(d, s, rid)

    monkeypatch.setattr(reuse, "_copy_run", copy_then_die)
    store = ResultStore(tmp_path / "new")
    with pytest.raises(KeyboardInterrupt):
        sweep_reusing(configs, _table, store, progress=False, donors=[donor.root])
    assert pd.read_csv(store.root / "reused.csv").run_id.tolist() == n == store.run_ids()
    assert reuse.taken_over(store.root) == set(n)


def test_a_fit_that_ran_to_its_cap_or_differs_otherwise_is_computed_again(tmp_path, nets):
    donor = ResultStore(tmp_path / "old")
    capped, other = study_run(pcfg(iters=20)), study_run(pcfg(iters=400, lr=0.02))
    run_sweep([capped, other], study_job, donor, progress=False)
    assert donor.load("summary", [run_id(capped)]).steps_run.max() == 20  # hit its cap
    store = ResultStore(tmp_path / "new")
    rows = sweep_reusing([study_run(pcfg(iters=2000))], study_job, store, progress=False, donors=[donor.root])
    assert rows.status.tolist() == ["done"]  # computed: neither donor is that fit taken over; the capped one's
    assert [r["donor_run_id"] for r in rows.attrs["adopted"]] == [run_id(capped)]  # kept state is gone on from
    assert "goes on from" in rows.attrs["adopted"][0]["how"]
    from biasprobe.studies.reuse import refits

    r = refits(store.root, donor.root)  # the computed fit beside the capped one it stands for (not the other lr)
    assert len(r) == 1 and r.run_id_before[0] == run_id(capped) and (r.iters_before[0], r.iters_after[0]) == (20, 2000)
    assert r.steps_run_before[0] == 20 and r.steps_run_after[0] < 2000
    # a lower cap is never served by a longer fit
    store2 = ResultStore(tmp_path / "new2")
    sweep_reusing([study_run(pcfg(iters=10))], study_job, store2, progress=False, donors=[donor.root])
    assert not (store2.root / "reused.csv").exists()


def test_the_same_run_is_copied_byte_for_byte_and_never_computed(tmp_path):
    donor = ResultStore(tmp_path / "old")
    configs = [{"x": i} for i in range(3)]
    run_sweep(configs, _table, donor, progress=False)
    store = ResultStore(tmp_path / "new")
    rows = sweep_reusing(configs + [{"x": 9}], _table, store, progress=False, donors=[donor.root])
    assert len(rows) == 4 and len(rows.attrs["adopted"]) == 3
    for c in configs:
        rid = run_id(c)
        for name in ("config.json", "meta.json", "t.parquet", "manifest.json"):
            assert (store.runs_dir / rid / name).read_bytes() == (donor.runs_dir / rid / name).read_bytes()
    assert sorted(store.load("t").x) == [0, 1, 2, 9]
    # a second sweep adopts nothing more (the runs are its own now)
    again = sweep_reusing(configs, _never_called, store, progress=False, donors=[donor.root])
    assert again.attrs["adopted"] == []


def test_the_dead_check_stops_a_colour_and_not_an_image(nets):
    dead = run_dip(pcfg(arch="tmp_colournet", seeds=[0], dead_after=20, patience=1000, lr=0.05), progress=False)
    s = dead.summary.iloc[0]
    assert s.dead_stop and s.peak_status == "dead" and not s.peak_reached and s.failed
    assert s.steps_run == 21 and dead.curves.step.max() == 20  # the first log step at or after step 19, logged
    from biasprobe.probes.dip.extend import const_psnr

    best = dead.curves[dead.curves.metric == "psnr_obs"].value.max()
    assert best < const_psnr(pcfg(arch="tmp_colournet", seeds=[0], dead_after=20))[0] + 0.5

    live = run_dip(DIPConfig(arch="skipnet", arch_kwargs=dict(channels_down=8, channels_up=8, channels_skip=2,
                                                               num_scales=3), image="astronaut", size=32, iters=40,
                             log_every=4, device="cpu", es_window=4, es_patience=3, seeds=[0], stop="peak",
                             patience=1000, dead_after=8, spectral=False), progress=False)
    assert not live.summary.dead_stop.any() and live.summary.steps_run.iloc[0] == 40


def test_dead_check_fields_are_checked_and_stay_out_of_old_ids():
    with pytest.raises(BiasprobeError, match="needs --stop peak"):
        DIPConfig(dead_after=10).resolved()
    with pytest.raises(BiasprobeError, match="dead_after must be"):
        DIPConfig(stop="peak", dead_after=-1).resolved()
    with pytest.raises(BiasprobeError, match="dead_db must be"):
        DIPConfig(stop="peak", dead_after=10, dead_db=0).resolved()
    assert not {"dead_after", "dead_db"} & set(DIPConfig().identity())  # stored runs keep their ids
    assert "dead_after" in DIPConfig(stop="peak", dead_after=10).identity()


def test_a_plan_that_continues_a_store_takes_its_plan_log_and_refuses_a_missing_one(tmp_path, monkeypatch):
    from biasprobe.studies.runner import PLAN_LOG, StudyPreset, log_plan, reuse_source

    p = StudyPreset(reuse_from=str(tmp_path / "nowhere"))
    with pytest.raises(BiasprobeError, match="no study store there"):
        reuse_source(p, tmp_path / "store")
    (tmp_path / "old" / "results").mkdir(parents=True)
    pd.DataFrame([dict(started_at="2026-01-01T00:00:00+00:00", plan_file="a.json", plan_sha256="aaa")]).to_csv(
        tmp_path / "old" / PLAN_LOG, index=False)
    p = StudyPreset(reuse_from=str(tmp_path / "old"), plan_file="b.json", plan_sha256="bbb")
    donor = reuse_source(p, tmp_path / "store")
    (tmp_path / "store").mkdir()
    log_plan(tmp_path / "store", p, donor)
    log = pd.read_csv(tmp_path / "store" / PLAN_LOG)
    assert log.plan_sha256.tolist() == ["aaa", "bbb"]  # the donor's runs keep the plan they were made under
    assert reuse_source(StudyPreset(reuse_from=str(tmp_path / "old")), tmp_path / "old") is None  # its own store


def _table(config):
    return {"t": pd.DataFrame({"x": [config["x"]]})}


def _table_of_lr(config):
    return {"t": pd.DataFrame({"lr": [config["lr"]]})}


def _never_called(config):
    raise AssertionError(f"computed {config}, which the donor store holds")


def test_a_fit_that_ran_to_its_cap_goes_on_from_its_kept_state_under_a_higher_cap(tmp_path, nets, monkeypatch):
    monkeypatch.setenv("BIASPROBE_CHECKPOINT_S", "0")  # no timed saves: only the one kept at the cap
    capped = dict(stop_on_gap=True, patience=10_000, iters=40, log_every=4)  # never stops by its rule
    donor = ResultStore(tmp_path / "old")
    old = study_run(pcfg(**capped))
    run_sweep([old], study_job, donor, progress=False)
    assert donor.load("summary").steps_run.max() == 40  # ran to its cap
    kept = donor.root / "at_cap" / run_id(old)
    assert [p.name for p in kept.iterdir()] == ["dip-seeds-0.pt"]  # its state at step 36, the last log step before
    assert torch.load(kept / "dip-seeds-0.pt", weights_only=False)["step"] == 36
    assert not (donor.root / "partial").exists() or not any((donor.root / "partial").iterdir())

    new = study_run(pcfg(**{**capped, "iters": 100}))
    store = ResultStore(tmp_path / "new")
    rows = sweep_reusing([new], study_job, store, progress=False, donors=[donor.root])
    assert rows.status.tolist() == ["done"]
    assert "goes on from" in rows.attrs["adopted"][0]["how"]
    rid = run_id(new)
    meta = json.loads((store.runs_dir / rid / "meta.json").read_text())
    assert meta["resumed"]["carried_seconds"] > 0  # the donor's time up to its save counts in this run's
    assert rid not in taken_over(store.root)  # computed here, not taken over

    fresh = get_probe("dip").run(DIPConfig(**new["config"]))
    got = {t: store.load(t, [rid]).drop(columns="run_id") for t in ("summary", "curves", "images")}
    pd.testing.assert_frame_equal(got["curves"], fresh["curves"])
    pd.testing.assert_frame_equal(got["images"], fresh["images"])
    pd.testing.assert_frame_equal(got["summary"].drop(columns=TIMING), fresh["summary"].drop(columns=TIMING))
