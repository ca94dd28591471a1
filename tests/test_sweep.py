"""Sweep engine: run ids, atomic store, resume, failures, executors (local / pool / submitit), kill-and-resume."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from biasprobe.errors import BiasprobeError
from biasprobe.studies.executors import _submitit_params
from biasprobe.studies.sweep import ResultStore, run_id, run_sweep

# The run functions live in a module written to a temp folder on sys.path and PYTHONPATH, so that spawned pool
# workers and submitit's subprocesses can import them by name, as they would a study's module.
FNS = '''
import os, uuid
import pandas as pd
import torch

def work(config):
    """Real torch work: a few Adam steps of a small conv net on seeded random data. Logs each call to a file."""
    if config.get("calls"):
        with open(os.path.join(config["calls"], f"{config['i']}-{uuid.uuid4().hex}"), "w"):
            pass
    if config["i"] == config.get("crash"):  # the process dies: no exception, no failure record from the run
        os._exit(3)
    if config["i"] == config.get("interrupt"):
        raise KeyboardInterrupt
    if config["i"] == config.get("bad"):
        raise ValueError(f"config {config['i']} is bad on purpose")
    torch.manual_seed(config["seed"])
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 3, 3, padding=1))
    x, y = torch.rand(8, 3, config["px"], config["px"]), torch.rand(8, 3, config["px"], config["px"])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for step in range(config["steps"]):
        loss = torch.nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    curves = pd.DataFrame({"step": range(len(losses)), "metric": "mse", "value": losses})
    summary = pd.DataFrame({"seed": [config["seed"]], "final_mse": [losses[-1]]})
    return {"curves": curves, "summary": summary}
'''


@pytest.fixture(scope="module")
def fns_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fns")
    (d / "sweep_test_fns.py").write_text(FNS)
    sys.path.insert(0, str(d))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(d), old) if p)
    yield d
    sys.path.remove(str(d))
    if old is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = old


@pytest.fixture
def work(fns_dir):
    import sweep_test_fns

    return sweep_test_fns.work


def grid(n, calls=None, bad=None, steps=3, px=16):
    return [dict(i=i, seed=100 + i, steps=steps, px=px, calls=str(calls) if calls else None, bad=bad)
            for i in range(n)]


def n_calls(calls_dir, i=None):
    names = os.listdir(calls_dir)
    return len(names) if i is None else sum(name.split("-")[0] == str(i) for name in names)


def temp_dirs(store):
    return [p for p in store.runs_dir.iterdir() if p.name.startswith(".tmp-")] if store.runs_dir.exists() else []


def test_run_id_stable_and_sensitive():
    config = dict(arch="skipnet", lr=0.01, steps=100, img_size=[64, 64], opts={"ema": True, "noise": 0.03},
                  seed=0, note=None)
    rid = run_id(config)
    assert len(rid) == 16 and int(rid, 16) >= 0
    assert run_id(dict(reversed(list(config.items())))) == rid  # key order does not matter
    assert run_id(json.loads(json.dumps(config))) == rid
    assert run_id({**config, "img_size": (64, 64)}) == rid  # JSON equality: tuple == list
    changed = [{**config, "arch": "vit"}, {**config, "lr": 0.011}, {**config, "steps": 101},
               {**config, "img_size": [64, 32]}, {**config, "opts": {"ema": False, "noise": 0.03}},
               {**config, "opts": {"ema": True, "noise": 0.031}}, {**config, "seed": 1}, {**config, "note": ""},
               {**config, "extra": 0}, {k: v for k, v in config.items() if k != "note"}]
    ids = {run_id(c) for c in changed}
    assert rid not in ids and len(ids) == len(changed)
    with pytest.raises(BiasprobeError):
        run_id({"x": object()})
    with pytest.raises(BiasprobeError):
        run_id({"x": float("nan")})


def test_store_write_load_index_and_atomic_duplicate(tmp_path):
    store = ResultStore(tmp_path)
    a, b = dict(i=0, seed=1, opts={"k": 2}), dict(i=1, seed=2, opts={"k": 3})
    t = {"curves": pd.DataFrame({"step": [0, 1], "value": [1.0, 0.5]}), "summary": pd.DataFrame({"seed": [1]})}
    assert store.write(a, t, seconds=1.5)
    assert not store.write(a, t)  # second writer of the same run: discarded, nothing duplicated
    assert store.write(b, {"curves": pd.DataFrame({"step": [0], "value": [2.0]})})
    assert store.done(run_id(a)) and store.run_ids() == sorted([run_id(a), run_id(b)]) and not temp_dirs(store)
    assert store.config(run_id(a)) == a
    curves = store.load("curves", with_config=True)
    assert len(curves) == 3 and set(curves.columns) == {"run_id", "step", "value", "i", "seed", "opts.k"}
    assert curves.groupby("run_id")["i"].nunique().eq(1).all()
    summary = store.load("summary", with_config=True)  # 'seed' is in both table and config
    assert list(summary["run_id"]) == [run_id(a)] and "config.seed" in summary.columns
    assert list(store.load("curves", run_ids=[run_id(b)])["value"]) == [2.0]
    assert store.load("nope").empty
    idx = store.index()
    assert len(idx) == 2 and set(idx["status"]) == {"done"} and {"i", "seed", "opts.k"} <= set(idx.columns)
    # a write that fails half way (second table cannot be stored) leaves no run and no temp dir behind
    with pytest.raises(Exception):
        store.write(dict(i=8), {"ok": pd.DataFrame({"x": [1]}), "bad": pd.DataFrame({"x": [object()]})})
    assert not store.done(run_id(dict(i=8))) and not temp_dirs(store)
    with pytest.raises(TypeError):
        store.write(dict(i=9), {"x": [1, 2]})
    with pytest.raises(ValueError):
        store.write(dict(i=9), {"../x": pd.DataFrame()})
    assert not temp_dirs(store) and len(store.run_ids()) == 2


def test_leftover_temp_dirs_ignored_and_cleaned(tmp_path, work):
    store = ResultStore(tmp_path)
    configs = grid(2)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    host = socket.gethostname()
    rid = run_id(configs[0])
    killed = store.runs_dir / f".tmp-{rid}-{host}-{dead.pid}-deadbeef"  # a writer killed mid-write
    killed.mkdir(parents=True)
    (killed / "config.json").write_text(json.dumps(configs[0]))
    alive = store.runs_dir / f".tmp-{rid}-{host}-{os.getpid()}-cafecafe"  # a live writer: left alone
    alive.mkdir()
    old = store.runs_dir / f".tmp-{rid}-otherhost-1-00000000"  # another host's, hours old
    old.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert store.run_ids() == [] and not store.done(rid) and store.index().empty
    index = run_sweep(configs, work, store, progress=False)
    assert list(index["status"]) == ["done", "done"]
    assert {p.name for p in temp_dirs(store)} == {alive.name}  # dead and stale removed
    alive.rmdir()


def test_resume_skips_finished_and_dedups(tmp_path, work, capsys):
    calls, store = tmp_path / "calls", ResultStore(tmp_path / "store")
    calls.mkdir()
    configs = grid(4, calls)
    index = run_sweep(configs[:2] + configs[:1], work, store, desc="halfway")  # duplicate config runs once
    assert len(index) == 2 and n_calls(calls) == 2
    assert "halfway" in capsys.readouterr().err  # the progress bar
    index = run_sweep(configs, work, store, progress=False)
    assert n_calls(calls) == 4 and all(n_calls(calls, i) == 1 for i in range(4))
    assert list(index["run_id"]) == [run_id(c) for c in configs] and list(index["i"]) == [0, 1, 2, 3]
    run_sweep(configs, work, store, progress=False)
    assert n_calls(calls) == 4
    assert (store.root / "index.parquet").exists() and len(pd.read_parquet(store.root / "index.parquet")) == 4
    assert len(store.load("curves")) == 4 * 3 and len(store.load("summary")) == 4


def test_a_stored_run_records_what_it_was_made_with_at_its_start(tmp_path, work):
    from biasprobe.runinfo import git_commit

    store = ResultStore(tmp_path / "store")
    run_sweep(grid(1), work, store, progress=False)
    meta = json.loads((store.runs_dir / store.run_ids()[0] / "meta.json").read_text())
    prov = meta["provenance"]
    assert prov["git_commit"] == git_commit() and torch.__version__.startswith(prov["versions"]["torch"])
    assert prov["started_at"] <= meta["finished_at"] and prov["cpu"] and prov["cpu_count"] >= 1


def test_failure_recorded_others_finish_and_retried(tmp_path, work):
    calls, store = tmp_path / "calls", ResultStore(tmp_path / "store")
    calls.mkdir()
    configs = grid(3, calls, bad=1)
    index = run_sweep(configs, work, store, progress=False)
    assert list(index["status"]) == ["done", "failed", "done"]
    assert "bad on purpose" in index["error"][1] and index["error"].isna()[[0, 2]].all()
    rec = store.failure(run_id(configs[1]))
    assert rec["config"] == configs[1] and "ValueError" in rec["traceback"] and rec["seconds"] >= 0
    assert store.load("summary")["run_id"].tolist() == sorted([run_id(configs[0]), run_id(configs[2])])
    index = run_sweep(configs, work, store, progress=False)  # a rerun retries only the failed run
    assert n_calls(calls) == 4 and n_calls(calls, 1) == 2 and list(index["status"]) == ["done", "failed", "done"]


@pytest.mark.parametrize("executor", ["local", "pool"])
def test_keyboard_interrupt_stops_cleanly(tmp_path, work, executor):
    store = ResultStore(tmp_path)
    configs = [{**c, "interrupt": 2} for c in grid(3)]
    with pytest.raises(KeyboardInterrupt):
        run_sweep(configs, work, store, executor=executor, jobs=1, progress=False)
    assert store.run_ids() == sorted(run_id(c) for c in configs[:2])  # finished before the interrupt: kept
    assert store.failed_ids() == [] and not temp_dirs(store)  # an interrupt is not a failure
    assert (store.root / "index.parquet").exists()


def test_failed_runs_are_retried(tmp_path, fns_dir, monkeypatch):
    import sweep_test_fns

    store = ResultStore(tmp_path)
    configs = grid(2)
    original = sweep_test_fns.work

    def flaky(config):
        raise RuntimeError("transient")

    run_sweep(configs, flaky, store, progress=False)
    assert store.failed_ids() == sorted(run_id(c) for c in configs)
    index = run_sweep(configs, original, store, progress=False)
    assert list(index["status"]) == ["done", "done"] and store.failed_ids() == []
    assert not list(store.failed_dir.glob("*.json"))


def test_pool_matches_local(tmp_path, work):
    configs = grid(4, steps=4)
    local = run_sweep(configs, work, tmp_path / "local", threads_per_job=1, progress=False)
    pool = run_sweep(configs, work, tmp_path / "pool", executor="pool", jobs=2, threads_per_job=1, progress=False)
    assert list(local["run_id"]) == list(pool["run_id"]) and set(pool["status"]) == {"done"}
    for table in ("curves", "summary"):
        a = ResultStore(tmp_path / "local").load(table).sort_values(["run_id"], kind="stable").reset_index(drop=True)
        b = ResultStore(tmp_path / "pool").load(table).sort_values(["run_id"], kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
    for where in ("local", "pool"):  # each run records the torch threads it computed with (its core-minutes)
        idx = ResultStore(tmp_path / where).index()
        assert list(idx.threads) == [1.0] * 4


def test_pool_records_failure_and_rejects_unpicklable(tmp_path, work):
    index = run_sweep(grid(2, bad=0), work, tmp_path, executor="pool", jobs=2, progress=False)
    assert list(index["status"]) == ["failed", "done"]
    with pytest.raises(TypeError, match="picklable"):
        run_sweep(grid(1), lambda c: {}, tmp_path, executor="pool", progress=False)


def test_pool_survives_a_worker_that_dies(tmp_path, work):
    """A run that kills its worker process (a native crash) fails alone: the pool restarts, retries the run that
    shared the pool with it, and every run not yet started runs once."""
    calls = tmp_path / "calls"
    calls.mkdir()
    configs = [{**c, "crash": 1} for c in grid(6, calls=calls)]
    index = run_sweep(configs, work, tmp_path / "store", executor="pool", jobs=2, threads_per_job=1, progress=False)
    assert list(index["status"]) == ["done", "failed", "done", "done", "done", "done"]
    assert "worker process died" in index["error"][1]
    assert n_calls(calls, 1) == 2  # once beside another run, once alone
    assert all(n_calls(calls, i) <= 2 for i in (0, 2)) and all(n_calls(calls, i) == 1 for i in (3, 4, 5))


def test_slurm_path_debug_and_local(tmp_path, work, monkeypatch):
    import submitit

    # submitit waits up to 15 s for a dead job's result file to show up (slow cluster file systems); not here
    monkeypatch.setattr(submitit.local.local.LocalJob, "_results_timeout_s", 1)
    configs = grid(2, bad=1)
    debug = run_sweep(configs, work, tmp_path / "debug", executor="slurm-debug", progress=False)
    assert list(debug["status"]) == ["done", "failed"] and "bad on purpose" in debug["error"][1]
    # submitit's LocalExecutor: each config a subprocess; config 1 kills its process, which the parent records
    configs = [{**c, "bad": None, "crash": 1} for c in configs]
    local = run_sweep(configs, work, tmp_path / "local", executor="slurm-local", threads_per_job=1,
                      slurm={"timeout_min": 5, "partition": "ignored-locally"}, progress=False)
    assert list(local["status"]) == ["done", "failed"] and isinstance(local["error"][1], str)
    assert ResultStore(tmp_path / "local").failure(run_id(configs[1]))["config"] == configs[1]
    a = ResultStore(tmp_path / "debug").load("curves").drop(columns="run_id")
    b = ResultStore(tmp_path / "local").load("curves").drop(columns="run_id")
    pd.testing.assert_frame_equal(a, b)  # same run, same numbers, whichever executor ran it
    assert (tmp_path / "local" / "submitit").is_dir()


def test_slurm_options_translate_and_errors(tmp_path, work, monkeypatch):
    import submitit

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # pretend srun exists

    params = _submitit_params({"partition": "gpu", "timeout_min": 30, "gpus_per_node": 1, "cpus_per_task": 4,
                               "account": "lab"}, threads=None)
    assert params["slurm_partition"] == "gpu" and params["slurm_account"] == "lab" and params["gpus_per_node"] == 1
    ex = submitit.AutoExecutor(folder=tmp_path / "s", cluster="slurm")
    ex.update_parameters(**params)
    assert ex._executor.parameters["partition"] == "gpu" and ex._executor.parameters["cpus_per_task"] == 4
    assert ex._executor.parameters["time"] == 30 and ex._executor.parameters["account"] == "lab"
    with pytest.raises(BiasprobeError, match="unknown executor"):
        run_sweep(grid(1), work, tmp_path, executor="dask", progress=False)
    with pytest.raises(BiasprobeError, match="slurm option"):
        run_sweep(grid(1), work, tmp_path, executor="slurm-debug", slurm={"timeout_min": "soon"}, progress=False)
    with pytest.raises(BiasprobeError, match="jobs"):
        run_sweep(grid(1), work, tmp_path, executor="pool", jobs=0, progress=False)
    if not any(os.access(os.path.join(p, "sbatch"), os.X_OK) for p in os.environ["PATH"].split(os.pathsep)):
        with pytest.raises(BiasprobeError, match="sbatch"):
            run_sweep(grid(1), work, tmp_path, executor="slurm", progress=False)


KILL_SCRIPT = '''
from biasprobe.studies.sweep import run_sweep
from sweep_test_fns import work
if __name__ == "__main__":
    configs = [dict(i=i, seed=100 + i, steps={steps}, px=32, calls={calls!r}, bad=None) for i in range(12)]
    run_sweep(configs, work, {store!r}, executor="pool", jobs=2, threads_per_job=1, progress=False)
'''


def session_pids(sid):
    """Processes in session ``sid`` (Linux /proc), to see that no worker outlives a killed sweep."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields after the name: state, ppid, pgrp, session
            pids.append(int(entry))
    return pids


def test_kill_and_resume(tmp_path, work):
    """SIGKILL a real pool sweep (the sweep process only) once some runs are stored; its workers must exit by
    themselves; rerunning must complete every config exactly once, with no temp dirs left."""
    calls, store = tmp_path / "calls", ResultStore(tmp_path / "store")
    calls.mkdir()
    steps = 40  # about 0.3 s of torch work per run on one CPU thread
    script = tmp_path / "sweep.py"
    script.write_text(KILL_SCRIPT.format(steps=steps, calls=str(calls), store=str(store.root)))
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240  # generous: on a loaded machine the workers' torch import alone takes a while
        while len(store.run_ids()) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "sweep subprocess made no progress"
            time.sleep(0.02)
        proc.kill()  # SIGKILL to the sweep process alone
        proc.wait()
        if sys.platform.startswith("linux"):
            deadline = time.time() + 60  # the workers poll for their parent; under load that takes longer
            while session_pids(proc.pid) and time.time() < deadline:
                time.sleep(0.1)
            assert session_pids(proc.pid) == [], "pool workers outlived the killed sweep"
    finally:  # on failure only: end what is left of our own subprocess's session
        if proc.poll() is None or (sys.platform.startswith("linux") and session_pids(proc.pid)):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    done_before = store.run_ids()
    assert 3 <= len(done_before) < 12, "kill came too late to test resuming"
    configs = [dict(i=i, seed=100 + i, steps=steps, px=32, calls=str(calls), bad=None) for i in range(12)]
    index = run_sweep(configs, work, store, threads_per_job=1, progress=False)
    assert list(index["status"]) == ["done"] * 12 and list(index["run_id"]) == [run_id(c) for c in configs]
    assert store.run_ids() == sorted(run_id(c) for c in configs) and not temp_dirs(store)
    summary = store.load("summary")
    assert len(summary) == 12 and summary["run_id"].is_unique
    assert len(store.load("curves")) == 12 * steps
    finished_first = {store.config(r)["i"] for r in done_before}
    for i in finished_first:  # finished before the kill: not run again
        assert n_calls(calls, i) == 1
    for i in set(range(12)) - finished_first:  # at most once before the kill (in flight) and once after
        assert 1 <= n_calls(calls, i) <= 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_zombie_writer_counts_as_dead(tmp_path):
    """A killed sweep's worker that has exited but is not yet reaped (a zombie) writes nothing more: its temp dir is
    cleaned like a dead writer's (test_kill_and_resume once found one left while the machine was busy)."""
    from biasprobe.studies.sweep import _pid_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while time.time() < deadline:  # exited, not waited for: a zombie
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.02)
    try:
        assert not _pid_alive(child.pid)
        store = ResultStore(tmp_path / "store")
        store.runs_dir.mkdir(parents=True)
        tmp = store.runs_dir / f".tmp-{'0' * 16}-{socket.gethostname()}-{child.pid}-abcdef12"
        tmp.mkdir()
        assert store.clean_temp() == 1 and not tmp.exists()
    finally:
        child.wait()
    assert _pid_alive(os.getpid())
