"""Runs an earlier store already holds: what a study whose plan continues another (``reuse_from``) takes over.

A sweep given donor stores (``run_sweep(..., donors=[...])``) first looks there for every run its own store lacks:

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
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pandas as pd

from biasprobe.probes import PROBES
from biasprobe.runinfo import write_atomic
from biasprobe.studies.sweep import _TMP, ResultStore, _fsync_dir, _now, canonical_json, run_id

REUSED = "reused.csv"


def adopt(store: ResultStore, donors, configs: list[dict]) -> list[dict]:
    """Copy into ``store`` each run of ``configs`` it does not hold complete and a donor can give (see the module
    docstring); return one row per adopted run (run_id, donor, donor_run_id, how)."""
    donors = [d if isinstance(d, ResultStore) else ResultStore(d) for d in donors]
    donors = [d for d in donors if d.root.resolve() != store.root.resolve() and d.runs_dir.is_dir()]
    if not donors:
        return []
    rows, by_key = [], {}
    for config in configs:
        rid = run_id(config)
        if store.done(rid) or (store.runs_dir / rid).exists():
            continue  # stored, or a damaged copy the sweep moves aside and computes again
        for donor in donors:
            if donor.done(rid):
                _copy_run(donor, store, rid)
                rows.append(dict(run_id=rid, donor=str(donor.root), donor_run_id=rid, how="the same run"))
                break
            probe = PROBES.get(config.get("probe")) if isinstance(config, dict) else None
            key = probe.extend_key(config["config"]) if probe is not None else None
            if key is None:
                continue
            if (donor, probe.name) not in by_key:
                by_key[donor, probe.name] = _index_by_key(donor, probe)
            got = None
            for cand in by_key[donor, probe.name].get(key, []):
                got = probe.extend(donor, cand, config["config"])
                if got is not None:
                    tables, raw, how = got
                    meta = json.loads((donor.runs_dir / cand / "meta.json").read_text())
                    store.write(config, tables, seconds=meta.get("seconds"), raw=raw,
                                meta=dict(threads=meta.get("threads"), host=meta.get("host"),
                                          finished_at=meta.get("finished_at"), provenance=meta.get("provenance"),
                                          reused_from=dict(store=str(donor.root), run_id=cand, how=how)))
                    rows.append(dict(run_id=rid, donor=str(donor.root), donor_run_id=cand, how=how))
                    break
            if got is not None:
                break
    if rows:
        _log(store, rows)
    return rows


def _index_by_key(donor: ResultStore, probe) -> dict:
    """{the probe's extend key: [donor run ids]} over the donor's complete runs of this probe."""
    out: dict = {}
    for rid in donor.run_ids():
        cfg = donor.config(rid)
        if cfg.get("probe") == probe.name and isinstance(cfg.get("config"), dict):
            out.setdefault(probe.extend_key(cfg["config"]), []).append(rid)
    return out


def _copy_run(donor: ResultStore, store: ResultStore, rid: str) -> None:
    """Copy a complete run folder, byte for byte, into ``store`` atomically (temp folder, then rename)."""
    store.runs_dir.mkdir(parents=True, exist_ok=True)
    tmp = store.runs_dir / f"{_TMP}{rid}-adopt-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(donor.runs_dir / rid, tmp)
        _fsync_dir(tmp)
        tmp.rename(store.runs_dir / rid)
        _fsync_dir(store.runs_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _log(store: ResultStore, rows: list[dict]) -> None:
    path = store.root / REUSED
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    new = pd.DataFrame(rows).assign(at=_now())
    write_atomic(path, pd.concat([old, new], ignore_index=True).to_csv(index=False))


def extend_key(config: dict, budget_fields: tuple[str, ...]) -> str:
    """A config's canonical JSON without the budget fields: the configs an extension may match."""
    return canonical_json({k: v for k, v in config.items() if k not in budget_fields})
