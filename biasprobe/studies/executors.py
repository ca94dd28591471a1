"""Executors: run one picklable task over many items and yield ``(item, result_or_exception)`` as each finishes.

The sweep engine (``biasprobe.studies.sweep``) hands every executor the same task, a function of one run config that does
the run *and* writes its result into the store (so a run that finishes is kept even if this process dies).
The executors only differ in where that function runs:

    local        in this process, one item after another
    pool         a local process pool (forkserver, else spawn) of ``jobs`` workers; each worker sets
                 ``torch.set_num_threads(threads_per_job or max(1, cpu_count // jobs))``
    slurm        a submitit job array on a Slurm cluster; ``slurm={"partition": ..., "timeout_min": ...,
                 "gpus_per_node": ..., "cpus_per_task": ..., "mem_gb": ..., "array_parallelism": ...}``
                 (shared submitit names pass through, anything else becomes ``slurm_<key>``)
    slurm-local  the same submitit code path, through submitit's LocalExecutor (one subprocess per item)
    slurm-debug  the same, through submitit's DebugExecutor (in this process; for debugging)

An exception raised by the task comes back as the result; KeyboardInterrupt is never swallowed: it stops the
executor (pool workers are terminated, unfinished submitit jobs cancelled) and propagates. A pool worker that dies
(a native crash) costs only its own item: the pool restarts and retries the items it took down, one at a time. Pool
workers also exit by themselves if the sweep process is killed. The pool and submitit executors import the task by
name: a script that starts a pool must guard its work with ``if __name__ == "__main__":``. Slurm jobs write into the
store themselves, so the store must be on a file system the compute nodes share; a sweep process that dies leaves
its array running (rerunning the sweep keeps what finished and resubmits the rest: a run still in flight may be
computed twice, but is stored once).
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import pickle
import shutil
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from biasprobe.errors import BiasprobeError

EXECUTORS = ("local", "pool", "slurm", "slurm-local", "slurm-debug")
_SUBMITIT_CLUSTER = {"slurm": "slurm", "slurm-local": "local", "slurm-debug": "debug"}
# submitit's AutoExecutor names shared by every cluster; other keys in ``slurm=`` are Slurm-specific.
_SUBMITIT_SHARED = {"name", "timeout_min", "mem_gb", "nodes", "cpus_per_task", "gpus_per_node", "tasks_per_node",
                    "stderr_to_stdout"}


def cpu_count() -> int:
    """CPUs this process may use (affinity / cgroup-aware where the OS tells us)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def submit_all(executor: str, task: Callable[[Any], Any], items: Sequence[Any], *, jobs: int = 1,
               threads_per_job: int | None = None, slurm: dict | None = None,
               folder: str | Path | None = None, poll_s: float | None = None) -> Iterator[tuple[Any, Any]]:
    """Run ``task(item)`` for every item on ``executor``; return an iterator of ``(item, result_or_exception)``
    in completion order. Arguments are checked here, before anything runs; close the iterator to stop early.

    ``folder``: where submitit keeps its pickles and logs (required for the slurm executors).
    ``poll_s``: how often submitit jobs are polled (default 10 s on Slurm, 0.5 s locally).
    """
    items = list(items)
    if executor not in EXECUTORS:
        raise BiasprobeError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    if not isinstance(jobs, int) or jobs < 1:
        raise BiasprobeError(f"jobs must be a whole number >= 1, got {jobs!r}")
    if threads_per_job is not None and (not isinstance(threads_per_job, int) or threads_per_job < 1):
        raise BiasprobeError(f"threads_per_job must be a whole number >= 1, got {threads_per_job!r}")
    if slurm is not None and executor not in _SUBMITIT_CLUSTER:
        raise BiasprobeError(f"slurm options were given but executor is {executor!r}: use executor='slurm'")
    if executor == "local":
        return _local(task, items, threads_per_job)
    _check_picklable(task)
    if executor == "pool":
        return _pool(task, items, jobs, threads_per_job or max(1, cpu_count() // jobs))
    if folder is None:
        raise ValueError("submit_all: the slurm executors need a folder for submitit's files")
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise BiasprobeError("executor 'slurm' needs Slurm (no sbatch on PATH here): use executor 'pool', "
                             "or 'slurm-local' to try the Slurm code path locally")
    cluster = _SUBMITIT_CLUSTER[executor]
    params = _submitit_params(slurm or {}, threads_per_job)
    poll = poll_s if poll_s is not None else (10.0 if cluster == "slurm" else 0.5)
    return _submitit(task, items, cluster, params, threads_per_job, Path(folder), poll)


def _check_picklable(task) -> None:
    try:
        pickle.dumps(task)
    except Exception as e:  # pickling raises several types (PicklingError, AttributeError, TypeError)
        raise TypeError(f"the run function must be picklable (a module-level function) for process or "
                        f"cluster executors: {e}") from e


# ---------------------------------------------------------------------------------------------------- local
def _local(task, items, threads):
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for item in items:
            try:
                result = task(item)
            except Exception as e:  # a failed item is a result; KeyboardInterrupt propagates
                result = e
            yield item, result
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------- pool
def _init_worker(threads: int) -> None:
    """Pool worker start-up: fix torch's intra-op threads, and exit when the sweep process goes away
    (a SIGKILLed sweep would otherwise leave its workers, and the forkserver, blocked forever)."""
    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, daemon=True).start()


def _exit_with_parent() -> None:
    parent = mp.parent_process()  # the sweep process (also under forkserver, where the OS parent is the server)
    if parent is not None:
        mp_connection.wait([parent.sentinel])  # becomes ready (EOF) when the sweep process has died
        os._exit(1)


def _mp_context():
    """forkserver where the OS has it (workers fork from a server that has imported biasprobe and torch once,
    so starting a pool is cheap; no fork of a threaded parent), else spawn. Both need run functions that
    can be imported by name, and a script guarded by ``if __name__ == "__main__":``."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["biasprobe.studies.sweep"])
        return ctx
    return mp.get_context("spawn")


class WorkerDied(RuntimeError):
    """The worker process running this item died (a native crash, out of memory, os._exit): no exception came back."""


def _pool(task, items, jobs, threads):
    """At most ``jobs`` items in flight. A worker that dies breaks a ``ProcessPoolExecutor`` and every item in
    flight with it, so the pool is then restarted and those items are retried one at a time, alone in the pool:
    the item that kills its worker when alone fails (with :class:`WorkerDied`), the others run, and the items not
    yet started never see the crash."""
    queue, suspects = deque(items), deque()
    inflight: dict = {}  # future -> (item, ran alone)
    pool = None
    finished = False
    try:
        while queue or suspects or inflight:
            if pool is None:
                pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_mp_context(), initializer=_init_worker,
                                           initargs=(threads,))
            if suspects:  # isolate: one suspect, nothing beside it
                if not inflight:
                    item = suspects.popleft()
                    inflight[pool.submit(task, item)] = (item, True)
            else:
                while queue and len(inflight) < jobs:
                    item = queue.popleft()
                    inflight[pool.submit(task, item)] = (item, False)
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                done = set(wait(inflight).done)  # the pool is broken: every future in flight ends now
                pool.shutdown(wait=True)
                pool = None
            for fut in done:
                item, alone = inflight.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    if not alone:
                        suspects.append(item)
                        continue
                    result = WorkerDied("the worker process died while running this item alone (a native crash "
                                        "or running out of memory; run it with the local executor to see why)")
                except Exception as e:
                    result = e
                yield item, result
        finished = True
    finally:
        if pool is not None:
            if finished:
                pool.shutdown(wait=True)
            else:  # interrupted or closed early: stop now, runs in flight are lost (their writes are atomic)
                workers = list((pool._processes or {}).values())
                pool.shutdown(wait=False, cancel_futures=True)
                for proc in workers:
                    proc.terminate()


# ---------------------------------------------------------------------------------------------------- submitit
def _submitit_params(slurm: dict, threads: int | None) -> dict:
    params = {}
    for key, value in slurm.items():
        if key in _SUBMITIT_SHARED or key.split("_", 1)[0] in ("slurm", "local", "debug"):
            params[key] = value
        else:  # partition, account, qos, constraint, array_parallelism, ...
            params[f"slurm_{key}"] = value
    params.setdefault("name", "biasprobe")
    params.setdefault("timeout_min", 60)
    if threads:
        params.setdefault("cpus_per_task", threads)
    return params


def _with_threads(task, threads, item):
    """Runs inside a submitit job: torch threads = threads_per_job, else the CPUs Slurm gave the task."""
    import torch

    n = threads or int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or None
    if n:
        torch.set_num_threads(n)
    return task(item)


def _submitit(task, items, cluster, params, threads, folder, poll_s):
    """Build and configure the submitit executor now (so bad options fail before anything runs)."""
    import submitit

    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    try:
        ex.update_parameters(**params)
    except (AssertionError, NameError, ValueError, TypeError) as e:
        raise BiasprobeError(f"bad slurm option: {str(e).splitlines()[0]}") from e
    return _submitit_wait(ex, functools.partial(_with_threads, task, threads), items, poll_s)


def _submitit_wait(ex, task, items, poll_s):
    import submitit

    submitted = ex.map_array(task, items) if items else []
    item_of = {id(job): item for job, item in zip(submitted, items)}
    seen: set[int] = set()
    try:
        for job in submitit.helpers.as_completed(submitted, poll_frequency=poll_s):
            seen.add(id(job))
            try:
                result = job.result()
            except Exception as e:  # job failed, timed out, was cancelled or pre-empted
                result = e
            yield item_of[id(job)], result
    finally:
        for job in submitted:  # only those not yet finished (asking a debug job if done would run it)
            if id(job) not in seen:
                try:
                    job.cancel(check=False)
                except Exception:  # best effort: the job may have ended meanwhile
                    pass
