"""Sweeps: a grid of run configs -> run ids -> an atomic results store, run through an executor, resumable.

A run config is a plain JSON-able dict. ``run_id(config)`` is the first 16 hex digits of the SHA-256 of its
canonical JSON (sorted keys, no whitespace), so the same config always names the same run, and any change to any
field names a new one. (JSON decides equality: a tuple and a list are the same, ``1`` and ``1.0`` are not.)

The run function ``fn(config) -> {table_name: DataFrame}`` is generic (DIP, classification, anything); it must be
a picklable module-level function for the process and cluster executors. It receives the config exactly as
stored (a JSON round trip of what was passed). Table indexes are not kept: return tidy frames.

Store layout (the directories are the truth; ``index.parquet`` is a cache rebuilt at the end of each sweep)::

    root/runs/<run_id>/config.json        the config
    root/runs/<run_id>/meta.json          run_id, seconds, finished_at, host, tables (name -> rows), threads,
                                          provenance (taken at the start: started_at, git_commit, versions, cpu)
    root/runs/<run_id>/<table>.parquet    one file per returned table
    root/runs/<run_id>/manifest.json      written last: every other file's name, size and sha256
    root/damaged/<run_id>-<time>/         a stored run that failed its check, moved aside (never deleted)
    root/claims/<run_id>.claim            held while a process computes the run (pid, host, heartbeat)
    root/failed/<run_id>.json             config, error, traceback, seconds, finished_at (removed on success)
    root/partial/<run_id>/                a run's saved state while it is computed (``biasprobe.resume``): a
                                          killed run goes on from it; removed once the run is stored or failed
    root/at_cap/<run_id>/                 a stored DIP fit's state before its cap, when it ran to it (a higher
                                          cap goes on from there: ``reuse``)
    root/index.parquet                    one row per run: run_id, status, seconds, error, threads, config columns
    root/submitit/                        submitit's pickles and logs (slurm executors only)

A run directory is written as ``runs/.tmp-<run_id>-<host>-<pid>-<rand>/`` and then renamed into place, which is
atomic on POSIX: ``runs/<run_id>/`` exists complete or not at all. If two writers finish the same run, the first
rename wins and the second discards its copy, so a run is never stored twice. Each run is written by whichever
process ran it (the sweep process, a pool worker, a Slurm job), as soon as it finishes: killing the sweep loses only
the runs in flight, and rerunning it resumes; a run whose loop saves its state (a DIP fit, every ``resume.EVERY_S``
seconds) goes on from its last save, so a kill loses minutes, not the run. Temp dirs left by a killed writer are
removed on the next start.

What is reused is checked first: a run counts as stored (``done``, ``run_ids``, ``load``) only when its manifest
lists its files and every file matches its size and checksum (runs written before manifests existed: when config.json
and meta.json parse, the config hashes to the run id, and every table meta.json lists reads back with its row
count). A run folder that fails the check is never reused: the sweep moves it to ``root/damaged/`` and computes the
run again (``ResultStore.recomputed`` lists them). Two sweeps on one store share the work: a process claims a run
(``root/claims/<run_id>.claim``, created exclusively, its mtime refreshed while the run goes on) before computing
it; a sweep that finds a run claimed by a live process waits for it, and takes over the claim of a dead one (same
host: its pid is gone; any host: no heartbeat for ``CLAIM_STALE_S`` seconds).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from biasprobe import resume
from biasprobe.errors import BiasprobeError
from biasprobe.studies.executors import submit_all
from biasprobe.runinfo import run_provenance, write_json, write_parquet

RunFn = Callable[[dict], "dict[str, pd.DataFrame]"]
_RUN_ID = re.compile(r"^[0-9a-f]{16}$")
_TABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TMP = ".tmp-"
MANIFEST = "manifest.json"
CLAIM_STALE_S = 300.0  # a claim whose heartbeat (mtime) is older than this is abandoned, whatever its host
_HEARTBEAT_S = 30.0
WAIT_POLL_S = 1.0  # how often a sweep looks whether runs claimed by another process are stored


class StoreUnwritable(BiasprobeError):
    """The store could not be written (permissions, full disk): the sweep stops; the runs stored so far are intact."""

    @classmethod
    def from_oserror(cls, root, exc: OSError) -> "StoreUnwritable":
        what = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename else ""
        return cls(f"cannot write to the results store {root}: {what}{where}; the runs stored so far are intact: "
                   f"make it writable (or free space) and rerun to resume")


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
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def _torch_threads() -> int | None:
    """torch's intra-op threads in this process (what a run computed with, for its cost in core-minutes); None when
    the run never imported torch."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


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
    """Whether process ``pid`` exists and can still run: a zombie (exited, not yet reaped by its parent; an orphan
    waits on a container's init, which may reap late or never) writes nothing more, so it counts as dead."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:  # Linux: the state field follows the parenthesised name
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc (not Linux): existing is alive


class ResultStore:
    """One directory per finished run under ``root/runs``; failures under ``root/failed``. See module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.failed_dir = self.root / "failed"
        self.damaged_dir = self.root / "damaged"
        self.claims_dir = self.root / "claims"
        self.recomputed: list[dict] = []  # damaged runs a sweep through this object moved aside and computed again
        self._checked: dict[str, tuple] = {}  # run id -> (folder's inode, mtime, why it is not complete or "")

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    # ------------------------------------------------------------------ queries
    def check(self, rid: str) -> str | None:
        """None when run ``rid`` is stored complete (see the module docstring), else why not, in words."""
        path = self.runs_dir / rid
        try:
            st = path.stat()
        except OSError:
            return "not stored"
        if not path.is_dir():
            return "not a folder"
        key = (st.st_ino, st.st_mtime_ns)
        cached = self._checked.get(rid)
        if cached is not None and cached[:2] == key:
            return cached[2] or None
        why = _check_run(path, rid)
        self._checked[rid] = (*key, why or "")
        return why

    def done(self, rid: str) -> bool:
        """Whether run ``rid`` is stored complete (its files pass :meth:`check`)."""
        return self.check(rid) is None

    def _folders(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if _RUN_ID.match(p.name) and p.is_dir())

    def run_ids(self) -> list[str]:
        """Finished runs that pass :meth:`check` (temp dirs and damaged runs never count), sorted."""
        return [rid for rid in self._folders() if self.done(rid)]

    def damaged_ids(self) -> dict[str, str]:
        """Run folders that fail :meth:`check`: {run id: why}."""
        return {rid: why for rid in self._folders() if (why := self.check(rid)) is not None}

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
                             finished_at=meta.get("finished_at"), threads=meta.get("threads")))
            configs.append(self.config(rid))
        for rid in self.failed_ids():
            rec = self.failure(rid)
            rows.append(dict(run_id=rid, status="failed", seconds=rec.get("seconds"), error=rec.get("error"),
                             finished_at=rec.get("finished_at")))
            configs.append(rec["config"])
        cols = ["run_id", "status", "seconds", "error", "finished_at", "threads"]
        base = pd.DataFrame(rows, columns=cols).astype({"seconds": float, "threads": float})
        return pd.concat([base, _config_frame(configs, taken=set(cols))], axis=1)

    def tables(self, rid: str) -> dict[str, int]:
        """{table name: rows} of a stored run, as its meta.json lists them."""
        return dict(json.loads((self.runs_dir / rid / "meta.json").read_text()).get("tables", {}))

    def load(self, table: str, run_ids: Iterable[str] | None = None, with_config: bool = False) -> pd.DataFrame:
        """Concatenate ``table`` across finished runs (all, or those in ``run_ids``), with a leading ``run_id``
        column (the store's, replacing any the table had). ``with_config`` adds the run's config fields as
        columns (a field whose name is already a column of the table gets a 'config.' prefix). A stored table that
        cannot be read is a one-line BiasprobeError naming the run (never a run silently left out)."""
        ids = self.run_ids() if run_ids is None else [r for r in dict.fromkeys(run_ids) if self.done(r)]
        frames = []
        for rid in ids:
            path = self.runs_dir / rid / f"{table}.parquet"
            if path.exists():
                try:
                    df = pd.read_parquet(path).drop(columns="run_id", errors="ignore")
                except Exception as e:  # pyarrow raises several types for a damaged file
                    raise BiasprobeError(f"stored run {rid}: {path} cannot be read ({type(e).__name__}: "
                                         f"{str(e).splitlines()[0] if str(e) else ''}); rerun the sweep or study "
                                         f"to move it aside and compute it again") from e
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
    def write(self, config: Mapping, tables: Mapping[str, pd.DataFrame], seconds: float | None = None,
              raw: Mapping[str, bytes] | None = None, meta: Mapping | None = None) -> bool:
        """Store a finished run atomically, its manifest written last. Returns False (and stores nothing) if the
        run was already stored. ``raw``: tables given as parquet bytes, written as they are (a run adopted from
        another store keeps its files byte for byte); ``meta``: fields that replace or add to meta.json's (an
        adopted run keeps its donor's threads, host and finished_at, and says where it came from)."""
        _check_tables(tables)
        raw = dict(raw or {})
        if set(raw) & set(tables) or any(not _TABLE.match(n) for n in raw):
            raise ValueError(f"raw tables must have plain names distinct from the tables': {sorted(raw)}")
        rid = run_id(config)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.runs_dir / f"{_TMP}{rid}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        files: dict[str, dict] = {}

        def put(name: str, data: bytes) -> None:
            _write_synced(tmp / name, data)
            files[name] = dict(size=len(data), sha256=hashlib.sha256(data).hexdigest())

        try:
            put("config.json", (json.dumps(json.loads(canonical_json(config)), indent=2, sort_keys=True) + "\n")
                .encode())
            rows = {}
            for name, df in tables.items():
                put(f"{name}.parquet", df.to_parquet(index=False))
                rows[name] = len(df)
            for name, data in raw.items():
                put(f"{name}.parquet", data)
                rows[name] = _parquet_rows(data)
            info = dict(run_id=rid, seconds=seconds, finished_at=_now(), host=socket.gethostname(),
                        tables=dict(sorted(rows.items())), threads=_torch_threads())
            info.update(meta or {})
            put("meta.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
            manifest = dict(run_id=rid, files=files, written_at=_now())
            _write_synced(tmp / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
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

    def quarantine(self, rid: str, why: str = "") -> Path | None:
        """Move run ``rid``'s folder (one that failed :meth:`check`) to ``root/damaged/<rid>-<UTC time>/``, with
        the reason beside it (``.txt``); nothing is deleted. Returns where it went (None: it was gone already)."""
        src = self.runs_dir / rid
        self.damaged_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        dst = self.damaged_dir / f"{rid}-{stamp}"
        if dst.exists():
            dst = self.damaged_dir / f"{rid}-{stamp}-{uuid.uuid4().hex[:6]}"
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            return None
        self._checked.pop(rid, None)
        (dst.parent / f"{dst.name}.txt").write_text(f"run {rid} moved here from {src} at {_now()}: {why}\n")
        return dst

    # ------------------------------------------------------------------ claims
    def claim(self, rid: str, stale_after_s: float | None = None) -> "Claim | None":
        """Claim run ``rid`` for this process: a :class:`Claim` (release it when the run is stored), or None when
        a live process holds it. A dead claimant's claim is taken over (see :meth:`claim_holder`)."""
        self.claims_dir.mkdir(parents=True, exist_ok=True)
        path = self.claims_dir / f"{rid}.claim"
        token = uuid.uuid4().hex
        body = json.dumps(dict(run_id=rid, pid=os.getpid(), host=socket.gethostname(), token=token,
                               claimed_at=_now())).encode()
        for _ in range(5):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                if self.claim_holder(rid, stale_after_s) is not None:
                    return None
                aside = path.with_name(f"{path.name}.stale-{token}")  # take over: move the dead claim aside
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    continue
                aside.unlink(missing_ok=True)
                continue
            try:
                os.write(fd, body)
            finally:
                os.close(fd)
            return Claim(path, token)
        return None

    def claim_holder(self, rid: str, stale_after_s: float | None = None) -> dict | None:
        """The live claim on run ``rid`` ({pid, host, ...}), or None when there is none or its claimant is dead:
        on this host, its process is gone; on any host, its heartbeat (the file's mtime) is older than
        ``stale_after_s`` (default ``CLAIM_STALE_S``)."""
        path = self.claims_dir / f"{rid}.claim"
        stale_after_s = CLAIM_STALE_S if stale_after_s is None else stale_after_s
        try:
            age = time.time() - path.stat().st_mtime
            text = path.read_text()
        except FileNotFoundError:
            return None
        if age > stale_after_s:
            return None
        try:
            info = json.loads(text)
            pid, host = int(info["pid"]), str(info["host"])
        except (ValueError, KeyError, TypeError):
            return {"pid": None, "host": None}  # being written right now (or garbled): alive until it goes stale
        if host == socket.gethostname() and not _pid_alive(pid):
            return None
        return info

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
        partial = self.root / resume.FOLDER
        if partial.is_dir():  # the saved state of a run stored since (killed between its write and the cleanup)
            for path in partial.iterdir():
                if _RUN_ID.match(path.name) and self.done(path.name):
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
        return removed

    def write_index(self) -> pd.DataFrame:
        """Rebuild ``root/index.parquet`` from the directories (list-valued config cells stored as JSON text)."""
        index = self.index()
        if len(index):
            write_parquet(self.root / "index.parquet", _parquet_safe(index))
        return index


def _parquet_rows(data: bytes) -> int:
    import io

    import pyarrow.parquet as pq

    return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows


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


class Claim:
    """A held claim on one run: a heartbeat thread refreshes the claim file's mtime until :meth:`release`."""

    def __init__(self, path: Path, token: str, heartbeat_s: float = _HEARTBEAT_S):
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file if it is still this claim's."""
        self._stop.set()
        try:
            if json.loads(self.path.read_text()).get("token") == self.token:
                self.path.unlink()
        except (OSError, ValueError):
            pass


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_run(path: Path, rid: str) -> str | None:
    """Why the run folder ``path`` is not a complete run ``rid``, or None when it is (module docstring)."""
    try:
        manifest_path = path / MANIFEST
        if manifest_path.exists():
            files = json.loads(manifest_path.read_text())["files"]
            for name in ("config.json", "meta.json"):
                if name not in files:
                    return f"{MANIFEST} does not list {name}"
            for name, info in files.items():
                f = path / name
                if not f.is_file():
                    return f"{name} is missing"
                if f.stat().st_size != info["size"]:
                    return f"{name} has {f.stat().st_size} bytes, the manifest says {info['size']}"
                if _sha256_file(f) != info["sha256"]:
                    return f"{name} does not match its checksum in {MANIFEST}"
        config = json.loads((path / "config.json").read_text())
        if not isinstance(config, dict) or run_id(config) != rid:
            return "config.json does not hash to the run id"
        meta = json.loads((path / "meta.json").read_text())
        tables = meta["tables"]
        if not isinstance(tables, dict):
            return "meta.json lists no tables"
        for name, rows in tables.items():
            f = path / f"{name}.parquet"
            if not f.is_file():
                return f"{name}.parquet is missing"
            if not manifest_path.exists():  # a run stored before manifests: its tables must read back
                import pyarrow.parquet as pq

                n = pq.read_table(f).num_rows
                if n != rows:
                    return f"{name}.parquet has {n} rows, meta.json says {rows}"
            elif f"{name}.parquet" not in files:
                return f"{name}.parquet is not in {MANIFEST}"
    except FileNotFoundError as e:
        return f"{Path(e.filename).name if e.filename else 'a file'} is missing"
    except Exception as e:  # unreadable or malformed: JSON, parquet (pyarrow raises several types), keys
        text = (str(e).splitlines() or [""])[0]
        return f"cannot be read ({type(e).__name__}: {text})"
    return None


def _run_and_store(fn: RunFn, root: str, config: dict) -> dict:
    """The task every executor runs: claim the run, run ``fn(config)``, store the result (or the failure), return
    a status: 'done', 'failed', 'claimed' (a live process holds the run: nothing done) or 'store_error' (the store
    cannot be written). A damaged stored copy is moved aside first ('damaged' in the status says so). Exceptions
    from ``fn`` are recorded, not raised; KeyboardInterrupt propagates and stores nothing."""
    store = ResultStore(root)
    rid = run_id(config)
    if store.done(rid):  # finished by another writer since the sweep started
        return dict(run_id=rid, status="done", seconds=None, error=None)
    try:
        claim = store.claim(rid)
    except OSError as e:
        return dict(run_id=rid, status="store_error", seconds=None, error=str(StoreUnwritable.from_oserror(root, e)))
    if claim is None:
        return dict(run_id=rid, status="claimed", seconds=None, error=None)
    try:
        if store.done(rid):  # stored by the claimant before us
            return dict(run_id=rid, status="done", seconds=None, error=None)
        damaged = None
        if (store.runs_dir / rid).exists():
            why = store.check(rid)
            try:
                moved = store.quarantine(rid, why or "")
            except OSError as e:
                return dict(run_id=rid, status="store_error", seconds=None,
                            error=str(StoreUnwritable.from_oserror(root, e)))
            damaged = dict(run_id=rid, why=why, moved_to=str(moved) if moved else None)
        made = dict(provenance=run_provenance())  # at the start: the code the run was made with
        t0 = time.perf_counter()
        checkpoint = None
        try:
            # a loop that can resume saves into the run's partial folder; a killed attempt's save is picked up there
            with resume.scope(store.root / resume.FOLDER / rid) as checkpoint:
                tables = fn(config)
            seconds = time.perf_counter() - t0 + checkpoint.carried
            if checkpoint.carried:
                made["resumed"] = dict(carried_seconds=checkpoint.carried)
            store.write(config, tables, seconds, meta=made)
            checkpoint.discard(keep_to=store.root / resume.KEPT / rid)
            return dict(run_id=rid, status="done", seconds=seconds, error=None, damaged=damaged)
        except OSError as e:
            if "tables" in locals():  # fn finished: the store's write failed
                return dict(run_id=rid, status="store_error", seconds=None,
                            error=str(StoreUnwritable.from_oserror(root, e)), damaged=damaged)
            error_from = e
        except Exception as e:
            error_from = e
        seconds = time.perf_counter() - t0 + (checkpoint.carried if checkpoint is not None else 0.0)
        if checkpoint is not None:
            checkpoint.discard()  # a failed run is computed again from its start
        error = f"{type(error_from).__name__}: {error_from}"
        tb = "".join(traceback.format_exception(type(error_from), error_from, error_from.__traceback__))
        try:
            store.write_failure(config, error, tb, seconds)
        except OSError as e:
            return dict(run_id=rid, status="store_error", seconds=seconds,
                        error=str(StoreUnwritable.from_oserror(root, e)), damaged=damaged)
        return dict(run_id=rid, status="failed", seconds=seconds, error=error, damaged=damaged)
    finally:
        claim.release()


def run_sweep(configs: Iterable[Mapping], fn: RunFn, store: ResultStore | str | Path, executor: str = "local",
              jobs: int = 1, threads_per_job: int | None = None, slurm: dict | None = None, progress: bool = True,
              desc: str = "sweep") -> pd.DataFrame:
    """Run ``fn`` on every config not yet stored and return the index rows of these configs (one per distinct
    config, in first-seen order; status 'done' or 'failed', seconds, error, config columns).

    Identical configs run once; finished runs are skipped; failed runs are retried; a damaged stored run is moved
    aside and computed again (listed in ``store.recomputed`` and ``rows.attrs["recomputed"]``). A run claimed by
    another live sweep is waited for, not computed twice. Each result is stored as soon as it finishes; a failing
    config is recorded and the others go on; a store that cannot be written stops the sweep with
    :class:`StoreUnwritable`. One progress bar for the whole sweep (total = distinct configs, starting at those
    already done). KeyboardInterrupt stops the executor, rebuilds the index and propagates; rerun to resume.
    ``executor``, ``jobs``, ``threads_per_job``, ``slurm``: see ``biasprobe.studies.executors``. (To take runs over
    from an earlier store first: ``biasprobe.studies.reuse.sweep_reusing``.)
    """
    from tqdm.auto import tqdm

    resume.every_s()  # a bad BIASPROBE_CHECKPOINT_S is one line here, before any run (not a failure of each)

    store = store if isinstance(store, ResultStore) else ResultStore(store)
    unique: dict[str, dict] = {}
    for config in configs:
        unique.setdefault(run_id(config), json.loads(canonical_json(config)))
    try:
        store.clean_temp()
    except OSError as e:
        raise StoreUnwritable.from_oserror(store.root, e) from None
    todo = [c for rid, c in unique.items() if not store.done(rid)]
    task = functools.partial(_run_and_store, fn, str(store.root))
    kw = dict(jobs=jobs, threads_per_job=threads_per_job, slurm=slurm, folder=store.root / "submitit")
    results = submit_all(executor, task, todo, **kw)  # checks its arguments now, before anything runs
    bar = tqdm(total=len(unique), initial=len(unique) - len(todo), desc=desc, unit="run", disable=not progress,
               dynamic_ncols=True)
    failed, recomputed, stop = 0, [], None
    ok = False
    try:
        while True:
            busy = []
            try:
                for config, result in results:
                    if isinstance(result, BaseException):  # the executor itself failed (worker died, job killed)
                        tb = "".join(traceback.format_exception(type(result), result, result.__traceback__))
                        message = (str(result).strip().splitlines() or [""])[0]  # full text is in the traceback
                        try:
                            store.write_failure(config, f"{type(result).__name__}: {message}", tb)
                        except OSError as e:
                            stop = str(StoreUnwritable.from_oserror(store.root, e))
                            break
                        failed += not store.done(run_id(config))
                    elif result["status"] == "claimed":
                        busy.append(config)
                        continue
                    elif result["status"] == "store_error":
                        stop = result["error"]
                        break
                    else:
                        failed += result["status"] == "failed"
                        if result.get("damaged"):
                            recomputed.append(result["damaged"])
                    bar.update(1)
                    if failed:
                        bar.set_postfix(failed=failed)
            finally:
                results.close()
            if stop or not busy:
                break
            bar.set_postfix(failed=failed, waiting=len(busy))
            again = _wait_for_claims(store, busy, bar)
            if not again:
                break
            results = submit_all(executor, task, again, **kw)
        ok = True
    finally:
        bar.close()
        store.recomputed.extend(recomputed)
        try:
            index = store.write_index()
        except OSError as e:
            if ok and not stop:
                raise StoreUnwritable.from_oserror(store.root, e) from None
            index = store.index()
    if stop:
        raise StoreUnwritable(stop)
    if failed and progress:
        print(f"{desc}: {failed} of {len(todo)} runs failed; see {store.failed_dir}/*.json, rerun to retry",
              file=sys.stderr)
    rows = index.set_index("run_id", drop=False).reindex(list(unique))
    rows = rows[rows["status"].notna()].reset_index(drop=True)
    rows.attrs["recomputed"] = recomputed
    return rows


def _wait_for_claims(store: ResultStore, busy: list[dict], bar) -> list[dict]:
    """Wait until each run claimed by another process is stored (counted on ``bar``) or its claim is released or
    dead; return the runs still to compute (their claimant stopped or failed)."""
    again = []
    while busy:
        time.sleep(WAIT_POLL_S)
        still = []
        for config in busy:
            rid = run_id(config)
            if store.done(rid):
                bar.update(1)
            elif store.claim_holder(rid) is None:
                again.append(config)
            else:
                still.append(config)
        busy = still
    return again
