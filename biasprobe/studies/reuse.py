"""Runs an earlier store already holds: what a study whose plan continues another (``reuse_from``) takes over.

A sweep given donor stores (:func:`sweep_reusing`) first looks there for every run its own store lacks:

* **the same run** (a donor holds the run id, complete): its folder is copied whole, byte for byte (config, tables,
  meta with the donor's seconds, threads and finished_at, manifest), so the copy is that run;
* **the same run under a longer budget** (:meth:`Probe.extend`): a donor run whose config differs only in fields
  that cannot change what was computed up to where it stopped. For DIP: a fit that its stop rule ended before its
  cap is the same fit under any higher cap (the loop has no cap-dependent schedule, its log steps before the stop
  are the same, and the rule reads only those), so a higher cap reuses it; a fit that ran to its cap is computed
  again. The probe returns the run's tables (its summary with the new cap); the donor's other files are copied
  byte for byte, and the run's meta keeps the donor's seconds and threads, with ``reused_from`` naming it.

Each adoption is a row of ``<store>/reused.csv`` (run_id, donor store, donor run id, how, at). The cost of an
adopted run is its donor's (its ``seconds``): the compute its result took, made once.

A donor fit that ran to its cap cannot be taken over, but when it kept its state before the cap
(``<donor>/at_cap/<run_id>/``, ``biasprobe.resume``) that state is copied into the new run's save folder
(``<store>/partial/<run_id>/``): the sweep then computes the run, which goes on from the donor's last log step
before its cap instead of from step 0 (the DIP loop checks that the save is the same fit under a lower cap). Such a
run is computed here, not taken over: its row in ``reused.csv`` says "goes on from", and its seconds are the
donor's up to the save plus its own.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd

from biasprobe.probes import PROBES
from biasprobe.studies.sweep import _TMP, ResultStore, StoreUnwritable, _fsync_dir, _now, run_id, run_sweep

REUSED = "reused.csv"
GOES_ON = "goes on from"  # how a row of reused.csv begins when the run was seeded, not taken over (computed here)


def sweep_reusing(configs, fn, store, donors=(), **kw) -> pd.DataFrame:
    """``sweep.run_sweep`` after taking over from ``donors`` (earlier stores) every run they can give (:func:`adopt`);
    the adopted runs' rows (and those of runs seeded with a donor's state at its cap) are in
    ``rows.attrs["adopted"]``."""
    from biasprobe import resume

    resume.every_s()  # a bad BIASPROBE_CHECKPOINT_S stops here, before anything is copied
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    configs = list(configs)
    try:
        adopted = adopt(store, list(donors), configs) if donors else []
    except OSError as e:
        raise StoreUnwritable.from_oserror(store.root, e) from None
    rows = run_sweep(configs, fn, store, **kw)
    rows.attrs["adopted"] = adopted
    return rows


def adopt(store: ResultStore, donors, configs: list[dict]) -> list[dict]:
    """Copy into ``store`` each run of ``configs`` it does not hold complete and a donor can give (see the module
    docstring); return one row per run adopted by this call (run_id, donor, donor_run_id, how), each logged in
    ``reused.csv`` as soon as it is stored. A damaged copy in ``store`` is moved aside first (as a sweep would) and
    the run taken again; a run another process adopted or computed meanwhile is left to it."""
    donors = [d if isinstance(d, ResultStore) else ResultStore(d) for d in donors]
    donors = [d for d in donors if d.root.resolve() != store.root.resolve() and d.runs_dir.is_dir()]
    if not donors:
        return []
    rows, by_key = [], {}
    for config in configs:
        rid = run_id(config)
        if store.done(rid):
            continue
        row = None
        for donor in donors:
            if donor.done(rid):
                row = _take(store, rid, lambda: _copy_run(donor, store, rid))
                row = row and dict(run_id=rid, donor=str(donor.root), donor_run_id=rid, how="the same run")
            else:
                row = _extend(store, donor, config, rid, by_key) or _go_on(store, donor, config, rid, by_key)
            if row:
                _log(store, row)
                rows.append(row)
                break
    return rows


def _take(store: ResultStore, rid: str, put) -> bool:
    """Store run ``rid`` with ``put()`` (a damaged copy moved aside first); False when another writer stored it."""
    if (store.runs_dir / rid).exists() and not store.done(rid):
        store.quarantine(rid, store.check(rid) or "")
    return bool(put()) and store.done(rid)


def _same_fit(donor: ResultStore, config, by_key: dict) -> tuple:
    """(probe, fields, the donor's runs of the same fit under another budget: its probe's ``extend_key``), or
    (None, None, []) when ``config`` has no such key (calibration configs are flat: never). ``by_key`` caches each
    donor's index."""
    probe = PROBES.get(config.get("probe")) if isinstance(config, dict) else None
    fields = config.get("config") if probe is not None else None
    key = probe.extend_key(fields) if isinstance(fields, dict) else None
    if key is None:
        return None, None, []
    if (donor, probe.name) not in by_key:
        by_key[donor, probe.name] = _index_by_key(donor, probe)
    return probe, fields, by_key[donor, probe.name].get(key, [])


def _extend(store: ResultStore, donor: ResultStore, config, rid: str, by_key: dict) -> dict | None:
    """Store the run ``config`` asks as an extension of one of the donor's runs (its probe's ``extend``); the
    adoption's row, or None."""
    probe, fields, cands = _same_fit(donor, config, by_key)
    for cand in cands:
        got = probe.extend(donor, cand, fields)
        if got is None:
            continue
        tables, raw, how = got
        meta = json.loads((donor.runs_dir / cand / "meta.json").read_text())
        ok = _take(store, rid, lambda: store.write(
            config, tables, seconds=meta.get("seconds"), raw=raw,
            meta=dict(threads=meta.get("threads"), host=meta.get("host"), finished_at=meta.get("finished_at"),
                      provenance=meta.get("provenance"),
                      reused_from=dict(store=str(donor.root), run_id=cand, how=how))))
        return dict(run_id=rid, donor=str(donor.root), donor_run_id=cand, how=how) if ok else None
    return None


def _go_on(store: ResultStore, donor: ResultStore, config, rid: str, by_key: dict) -> dict | None:
    """Copy a donor fit's state at its cap into run ``rid``'s save folder when the donor is the same fit (its
    probe's extend key) and kept one (``resume.KEPT``); the row to log, or None. A save folder the run already has
    (a killed attempt of its own) is left as it is."""
    from biasprobe import resume

    target = store.root / resume.FOLDER / rid
    if target.exists():
        return None
    probe, fields, cands = _same_fit(donor, config, by_key)
    for cand in cands:
        kept = donor.root / resume.KEPT / cand
        if not kept.is_dir() or not any(kept.iterdir()) or not probe.goes_on(donor.config(cand)["config"], fields):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{rid}-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(kept, tmp)
            os.rename(tmp, target)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):  # another sweep seeded it first
                return None
            raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return dict(run_id=rid, donor=str(donor.root), donor_run_id=cand,
                    how=f"{GOES_ON} the donor's state at its cap (computed here past it)")
    return None


def _index_by_key(donor: ResultStore, probe) -> dict:
    """{the probe's extend key: [donor run ids]} over the donor's complete runs of this probe."""
    out: dict = {}
    for rid in donor.run_ids():
        cfg = donor.config(rid)
        if cfg.get("probe") == probe.name and isinstance(cfg.get("config"), dict):
            out.setdefault(probe.extend_key(cfg["config"]), []).append(rid)
    return out


def _copy_run(donor: ResultStore, store: ResultStore, rid: str) -> bool:
    """Copy a complete run folder, byte for byte and synced, into ``store`` atomically (temp folder, then rename);
    False when another writer stored the run first."""
    store.runs_dir.mkdir(parents=True, exist_ok=True)
    tmp = store.runs_dir / f"{_TMP}{rid}-adopt-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(donor.runs_dir / rid, tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        try:
            os.rename(tmp, store.runs_dir / rid)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and store.done(rid):
                return False
            raise
        _fsync_dir(store.runs_dir)
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _log(store: ResultStore, row: dict) -> None:
    """Append one adoption to ``reused.csv`` (one short write in append mode, so concurrent sweeps do not lose
    rows)."""
    cols = ["run_id", "donor", "donor_run_id", "how", "at"]
    line = pd.DataFrame([dict(row, at=_now())])[cols].to_csv(index=False, header=False)
    path = store.root / REUSED
    try:  # whoever creates the file writes the header with its row, in one write
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        data = ",".join(cols) + "\n" + line
    except FileExistsError:
        fd, data = os.open(path, os.O_WRONLY | os.O_APPEND), line
    try:
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def taken_over(root) -> set[str]:
    """The runs of the results store at ``root`` that are adoptions: listed in its ``reused.csv`` and not computed
    again here since (a copy found damaged later is moved aside and computed: that run finishes after its
    adoption, while an adopted run keeps its donor's finished_at, which is before it)."""
    path = Path(root) / REUSED
    if not path.is_file():
        return set()
    log = pd.read_csv(path, dtype=str).drop_duplicates("run_id", keep="last")
    log = log[~log["how"].fillna("").str.startswith(GOES_ON)]  # seeded from a donor's state: computed here
    store, out = ResultStore(root), set()
    for rid, at in zip(log.run_id, log["at"]):
        meta = store.runs_dir / rid / "meta.json"
        if store.done(rid) and json.loads(meta.read_text()).get("finished_at", "") <= at:
            out.add(rid)
    return out


def refits(root, donor_root, probe_name: str = "dip") -> pd.DataFrame:
    """The runs a store computed itself (not taken over) that stand for a donor run under another budget (the same
    extend key): one row per such pair, the donor's and the new run's summaries side by side (``_before`` and
    ``_after`` columns: iters, steps_run, peak_status, max_psnr_gt, max_psnr_gt_step, gain_db, gap_negative_step),
    so a reader sees what the larger budget changed. Empty when there are none."""
    from biasprobe.probes import get_probe

    probe, store, donor = get_probe(probe_name), ResultStore(root), ResultStore(donor_root)
    if not donor.runs_dir.is_dir() or not store.runs_dir.is_dir():
        return pd.DataFrame()
    by_key = _index_by_key(donor, probe)
    taken, pairs = taken_over(root), []
    for rid in store.run_ids():
        cfg = store.config(rid)
        if rid in taken or cfg.get("probe") != probe_name or not isinstance(cfg.get("config"), dict):
            continue
        key = probe.extend_key(cfg["config"])
        for old in by_key.get(key, []) if key is not None else []:
            if old != rid:
                pairs.append((old, rid))
    if not pairs:
        return pd.DataFrame()
    cols = ["iters", "steps_run", "peak_status", "max_psnr_gt", "max_psnr_gt_step", "gain_db", "gap_negative_step"]
    before = donor.load("summary", [o for o, _ in pairs]).set_index("run_id")
    after = store.load("summary", [n for _, n in pairs]).set_index("run_id")
    rows = []
    for old, new in pairs:
        b, a = before.loc[old], after.loc[new]
        row = dict(arch=a["arch"], image=a["image"], seed=a["seed"])
        row.update({f"{c}_before": b.get(c) for c in cols})
        row.update({f"{c}_after": a.get(c) for c in cols})
        row.update(run_id_before=old, run_id_after=new)
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["arch", "image"]).reset_index(drop=True)
