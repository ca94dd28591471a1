"""Sweeps: a grid of run configs -> run ids -> an atomic results store, run through an executor, resumable.

A run config is a plain JSON-able dict. ``run_id(config)`` is the first 16 hex digits of the SHA-256 of its
canonical JSON (sorted keys, no whitespace), so the same config always names the same run, and any change to any
field names a new one. (JSON decides equality: a tuple and a list are the same, ``1`` and ``1.0`` are not.)

The run function ``fn(config) -> {table_name: DataFrame}`` is generic (DIP, classification, anything); it must be
a picklable module-level function for the process and cluster executors. It receives the config exactly as
stored (a JSON round trip of what was passed). Table indexes are not kept: return tidy frames.

Store layout (the directories are the truth; ``index.parquet`` is a cache rebuilt at the end of each sweep)::

    root/runs/<run_id>/config.json        the config
    root/runs/<run_id>/meta.json          run_id, seconds, finished_at, host, tables (name -> rows)
    root/runs/<run_id>/<table>.parquet    one file per returned table
    root/failed/<run_id>.json             config, error, traceback, seconds, finished_at (removed on success)
    root/index.parquet                    one row per run: run_id, status, seconds, error, config columns
    root/submitit/                        submitit's pickles and logs (slurm executors only)

A run directory is written as ``runs/.tmp-<run_id>-<host>-<pid>-<rand>/`` and then renamed into place, which is
atomic on POSIX: ``runs/<run_id>/`` exists complete or not at all. If two writers finish the same run, the first
rename wins and the second discards its copy, so a run is never stored twice. Each run is written by whichever
process ran it (the sweep process, a pool worker, a Slurm job), as soon as it finishes: killing the sweep loses only
the runs in flight, and rerunning it resumes. Temp dirs left by a killed writer are removed on the next start.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import shutil
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from biasprobe.errors import BiasprobeError
from biasprobe.executors import submit_all
from biasprobe.runinfo import write_json, write_parquet

RunFn = Callable[[dict], "dict[str, pd.DataFrame]"]
_RUN_ID = re.compile(r"^[0-9a-f]{16}$")
_TABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TMP = ".tmp-"


def _plain(x):
    if isinstance(x, np.generic):  # numpy scalars hash like the Python number they hold
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON")


def canonical_json(config: Mapping) -> str:
    """Sorted keys, no whitespace, no NaN/inf: the text that ``run_id`` hashes."""
    if not isinstance(config, Mapping):
        raise BiasprobeError(f"a run config must be a dict, got {type(config).__name__}")
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
                          default=_plain)
    except (TypeError, ValueError) as e:
        raise BiasprobeError(f"run config is not plain JSON ({e}): use str, int, float, bool, None, lists and "
                             f"dicts with str keys") from e


def run_id(config: Mapping) -> str:
    """sha256(canonical JSON of the full config), first 16 hex digits."""
    import hashlib

    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not fsync directories
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ResultStore:
    """One directory per finished run under ``root/runs``; failures under ``root/failed``. See module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.failed_dir = self.root / "failed"

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    # ------------------------------------------------------------------ queries
    def done(self, rid: str) -> bool:
        return (self.runs_dir / rid).is_dir()

    def run_ids(self) -> list[str]:
        """Finished runs (temp dirs never count), sorted."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if _RUN_ID.match(p.name) and p.is_dir())

    def failed_ids(self) -> list[str]:
        """Runs with a failure record and no finished result, sorted."""
        if not self.failed_dir.is_dir():
            return []
        ids = (p.stem for p in self.failed_dir.glob("*.json") if _RUN_ID.match(p.stem))
        return sorted(rid for rid in ids if not self.done(rid))

    def config(self, rid: str) -> dict:
        return json.loads((self.runs_dir / rid / "config.json").read_text())

    def failure(self, rid: str) -> dict:
        return json.loads((self.failed_dir / f"{rid}.json").read_text())

    def index(self) -> pd.DataFrame:
        """One row per run, rebuilt from the directories: run_id, status ('done'/'failed'), seconds, error,
        finished_at, then the config fields flattened (nested dicts as 'a.b'; a field whose name clashes with
        one of those columns gets a 'config.' prefix)."""
        rows, configs = [], []
        for rid in self.run_ids():
            meta = json.loads((self.runs_dir / rid / "meta.json").read_text())
            rows.append(dict(run_id=rid, status="done", seconds=meta.get("seconds"), error=None,
                             finished_at=meta.get("finished_at")))
            configs.append(self.config(rid))
        for rid in self.failed_ids():
            rec = self.failure(rid)
            rows.append(dict(run_id=rid, status="failed", seconds=rec.get("seconds"), error=rec.get("error"),
                             finished_at=rec.get("finished_at")))
            configs.append(rec["config"])
        cols = ["run_id", "status", "seconds", "error", "finished_at"]
        base = pd.DataFrame(rows, columns=cols).astype({"seconds": float})
        return pd.concat([base, _config_frame(configs, taken=set(cols))], axis=1)

    def load(self, table: str, run_ids: Iterable[str] | None = None, with_config: bool = False) -> pd.DataFrame:
        """Concatenate ``table`` across finished runs (all, or those in ``run_ids``), with a leading ``run_id``
        column (the store's, replacing any the table had). ``with_config`` adds the run's config fields as
        columns (a field whose name is already a column of the table gets a 'config.' prefix)."""
        ids = self.run_ids() if run_ids is None else [r for r in dict.fromkeys(run_ids) if self.done(r)]
        frames = []
        for rid in ids:
            path = self.runs_dir / rid / f"{table}.parquet"
            if path.exists():
                df = pd.read_parquet(path).drop(columns="run_id", errors="ignore")
                df.insert(0, "run_id", rid)
                frames.append(df)
        if not frames:
            return pd.DataFrame({"run_id": pd.Series(dtype=str)})
        out = pd.concat(frames, ignore_index=True)
        if with_config:
            used = list(dict.fromkeys(out["run_id"]))
            cfg = _config_frame([self.config(r) for r in used], taken=set(out.columns))
            cfg.insert(0, "run_id", used)
            out = out.merge(cfg, on="run_id", how="left", validate="many_to_one")
        return out

    # ------------------------------------------------------------------ writes
    def write(self, config: Mapping, tables: Mapping[str, pd.DataFrame], seconds: float | None = None) -> bool:
        """Store a finished run atomically. Returns False (and stores nothing) if the run was already stored."""
        _check_tables(tables)
        rid = run_id(config)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.runs_dir / f"{_TMP}{rid}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            _write_synced(tmp / "config.json",
                          (json.dumps(json.loads(canonical_json(config)), indent=2, sort_keys=True) + "\n").encode())
            for name, df in tables.items():
                _write_synced(tmp / f"{name}.parquet", df.to_parquet(index=False))
            meta = dict(run_id=rid, seconds=seconds, finished_at=_now(), host=socket.gethostname(),
                        tables={name: len(df) for name, df in tables.items()})
            _write_synced(tmp / "meta.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
            _fsync_dir(tmp)
            try:
                os.rename(tmp, self.runs_dir / rid)
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and self.done(rid):
                    return False  # someone else stored this run first
                raise
            _fsync_dir(self.runs_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        (self.failed_dir / f"{rid}.json").unlink(missing_ok=True)
        return True

    def write_failure(self, config: Mapping, error: str, tb: str = "", seconds: float | None = None) -> None:
        rid = run_id(config)
        if self.done(rid):
            return
        write_json(self.failed_dir / f"{rid}.json",
                   dict(run_id=rid, config=json.loads(canonical_json(config)), error=error, traceback=tb,
                        seconds=seconds, finished_at=_now(), host=socket.gethostname()))

    def clean_temp(self, stale_after_s: float = 3600.0) -> int:
        """Remove temp dirs left by killed writers: those of a dead process on this host, or older than
        ``stale_after_s`` (a temp dir lives only while one run's files are written). Returns how many."""
        if not self.runs_dir.is_dir():
            return 0
        host, removed = socket.gethostname(), 0
        for path in self.runs_dir.glob(f"{_TMP}*"):
            rest = path.name[len(_TMP) + 17:]  # "<host>-<pid>-<rand>"
            parts = rest.rsplit("-", 2)
            try:
                dead = len(parts) == 3 and parts[0] == host and not _pid_alive(int(parts[1]))
                stale = time.time() - path.stat().st_mtime > stale_after_s
            except (ValueError, FileNotFoundError):
                dead, stale = False, True
            if dead or stale:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed

    def write_index(self) -> pd.DataFrame:
        """Rebuild ``root/index.parquet`` from the directories (list-valued config cells stored as JSON text)."""
        index = self.index()
        if len(index):
            write_parquet(self.root / "index.parquet", _parquet_safe(index))
        return index


def _config_frame(configs: list[dict], taken: set[str]) -> pd.DataFrame:
    frame = pd.json_normalize(configs) if configs else pd.DataFrame()
    frame.index = range(len(configs))
    return frame.rename(columns={c: f"config.{c}" for c in frame.columns if c in taken})


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object and df[col].map(lambda v: isinstance(v, (list, dict))).any():
            df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return df


def _check_tables(tables) -> None:
    if not isinstance(tables, Mapping) or not all(isinstance(df, pd.DataFrame) for df in tables.values()):
        raise TypeError(f"the run function must return a dict of table name -> pandas DataFrame, got "
                        f"{type(tables).__name__}")
    for name in tables:
        if not isinstance(name, str) or not _TABLE.match(name):
            raise ValueError(f"table name {name!r} is not a safe file name (letters, digits, _ . -)")


def _run_and_store(fn: RunFn, root: str, config: dict) -> dict:
    """The task every executor runs: run ``fn(config)``, store the result (or the failure), return a status.
    Exceptions from ``fn`` are recorded, not raised; KeyboardInterrupt propagates and stores nothing."""
    store = ResultStore(root)
    rid = run_id(config)
    if store.done(rid):  # finished by another writer since the sweep started
        return dict(run_id=rid, status="done", seconds=None, error=None)
    t0 = time.perf_counter()
    try:
        tables = fn(config)
        seconds = time.perf_counter() - t0
        store.write(config, tables, seconds)
        return dict(run_id=rid, status="done", seconds=seconds, error=None)
    except Exception as e:
        seconds = time.perf_counter() - t0
        error = f"{type(e).__name__}: {e}"
        store.write_failure(config, error, traceback.format_exc(), seconds)
        return dict(run_id=rid, status="failed", seconds=seconds, error=error)


def run_sweep(configs: Iterable[Mapping], fn: RunFn, store: ResultStore | str | Path, executor: str = "local",
              jobs: int = 1, threads_per_job: int | None = None, slurm: dict | None = None, progress: bool = True,
              desc: str = "sweep") -> pd.DataFrame:
    """Run ``fn`` on every config not yet stored and return the index rows of these configs (one per distinct
    config, in first-seen order; status 'done' or 'failed', seconds, error, config columns).

    Identical configs run once; finished runs are skipped; failed runs are retried. Each result is stored as
    soon as it finishes; a failing config is recorded and the others go on. One progress bar for the whole
    sweep (total = distinct configs, starting at those already done). KeyboardInterrupt stops the executor,
    rebuilds the index and propagates; rerun to resume. ``executor``, ``jobs``, ``threads_per_job``, ``slurm``:
    see ``biasprobe.executors``.
    """
    from tqdm.auto import tqdm

    store = store if isinstance(store, ResultStore) else ResultStore(store)
    unique: dict[str, dict] = {}
    for config in configs:
        unique.setdefault(run_id(config), json.loads(canonical_json(config)))
    store.clean_temp()
    todo = [c for rid, c in unique.items() if not store.done(rid)]
    results = submit_all(executor, functools.partial(_run_and_store, fn, str(store.root)), todo, jobs=jobs,
                         threads_per_job=threads_per_job, slurm=slurm, folder=store.root / "submitit")
    bar = tqdm(total=len(unique), initial=len(unique) - len(todo), desc=desc, unit="run", disable=not progress,
               dynamic_ncols=True)
    failed = 0
    try:
        for config, result in results:
            if isinstance(result, BaseException):  # the executor itself failed (worker died, job killed, ...)
                tb = "".join(traceback.format_exception(type(result), result, result.__traceback__))
                message = (str(result).strip().splitlines() or [""])[0]  # full text is in the traceback
                store.write_failure(config, f"{type(result).__name__}: {message}", tb)
                failed += not store.done(run_id(config))
            else:
                failed += result["status"] == "failed"
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed)
    finally:
        results.close()
        bar.close()
        index = store.write_index()
    if failed and progress:
        print(f"{desc}: {failed} of {len(todo)} runs failed; see {store.failed_dir}/*.json, rerun to retry",
              file=sys.stderr)
    rows = index.set_index("run_id", drop=False).reindex(list(unique))
    return rows[rows["status"].notna()].reset_index(drop=True)
