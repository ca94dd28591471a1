"""The study runner: a preset (plain JSON) -> each probe's grid of runs -> resumable sweeps -> tables.

A preset lists the architectures and, per probe, what to run: its plan, the preset's field named after the probe
(``"dip"``: :class:`~biasprobe.probes.dip.plan.DipPlan`, ``"classify"``:
:class:`~biasprobe.probes.classify.plan.ClassifyPlan`; see ``biasprobe/studies/presets/*.json``; copy one and edit
it). ``run_study`` optionally calibrates each architecture's learning rate first (``biasprobe.studies.calibrate``),
then runs every probe's grid (the DIP grid: arch x task x image, seeds fitted together as one batch; the
classification grid: arch x n_train x seed; each built by its probe) through ``biasprobe.studies.sweep`` into one
results store, so a killed study resumes where it stopped. It loops over ``biasprobe.probes.PROBES`` and names no
probe. It returns the tidy tables the analysis (``verdicts.py``, ``report.py``) reads.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from biasprobe.errors import BiasprobeError
from biasprobe.probes import PROBES, get_probe
from biasprobe.probes.base import CALIBRATED, per_arch
from biasprobe.probes.classify.plan import ClassifyPlan
from biasprobe.probes.dip.plan import DipPlan
from biasprobe.studies.presets import PRESET_DIR  # shipped with the package: a non-editable install finds them


@dataclass
class CalibrationPlan:
    enabled: bool = False
    preset: str = "lr-quick"  # a calibration preset (biasprobe/studies/presets/calibration/NAME.json)
    sensitivity: bool = False  # rerun the DIP/classify grids at each arch's second-best lr
    peak_within: float | None = None  # DIP: an lr counts as peaked only when its fits peak within this share of the
    #   cap (e.g. 0.5: by step 6,000 of 12,000), so the study's fits at the chosen lr have room to peak on other images
    iters: int | None = None  # DIP: the calibration fits' cap (None: the plan's dip.iters); a plan that raises an
    #   earlier plan's cap keeps that plan's calibration (and so its learning rates) by giving its cap here


@dataclass
class StudyPreset:
    name: str = "custom"
    description: str = ""
    archs: list[str] = field(default_factory=lambda: ["skipnet", "vit"])
    dip: DipPlan = field(default_factory=DipPlan)
    classify: ClassifyPlan | None = field(default_factory=ClassifyPlan)
    calibration: CalibrationPlan = field(default_factory=CalibrationPlan)
    executor: str = "local"
    jobs: int = 1
    threads_per_job: int | None = None
    slurm: dict | None = None  # submitit/Slurm options for executor "slurm", e.g. {"partition": "gpu"}
    device: str = "auto"
    study: dict = field(default_factory=dict)  # the study module's own options (see its docstring)
    reuse_from: str | None = None  # an earlier study's store folder (relative to the working directory): its runs
    #   are taken over first, the same run copied, or a DIP fit its stop rule ended before a lower cap
    #   (biasprobe.studies.reuse); its plan log is carried over, so each run keeps the plan it was made under
    analysis: dict = field(default_factory=dict)  # the analysis plan: claims, tests, alpha, margins, power (a
    #   study module that reads it says how); with the design above it is the study's plan, fixed before the runs
    plan_file: str = ""  # set by load_preset: the file this preset was read from
    plan_sha256: str = ""  # set by load_preset: sha256 of the file's canonical JSON (whitespace does not count)

    def plans(self) -> dict:
        """{probe name: its plan} for the probes this preset runs."""
        return {name: getattr(self, name) for name in PROBES if getattr(self, name) is not None}


_NESTED = {**{name: probe.plan_type for name, probe in PROBES.items()}, "calibration": CalibrationPlan}


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise BiasprobeError(f"{where}: expected an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise BiasprobeError(f"{where}: unknown field {key!r} (known: {', '.join(sorted(names))})")
    kw = {}
    for key, value in data.items():
        if key in _NESTED and cls is StudyPreset:
            kw[key] = None if value is None else _build(_NESTED[key], value, f"{where}.{key}")
        else:
            kw[key] = value
    return cls(**kw)


def load_preset(name_or_path: str) -> StudyPreset:
    """A preset by name (``biasprobe/studies/presets/NAME.json``) or path; unknown or ill-typed fields fail in one line."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.json"))
        raise BiasprobeError(f"no preset {name_or_path!r}: give a JSON file or one of {', '.join(known)}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BiasprobeError(f"preset {path}: not valid JSON ({exc})") from exc
    if isinstance(data, dict) and ({"plan_file", "plan_sha256"} & set(data)):
        raise BiasprobeError(f"preset {path}: plan_file and plan_sha256 are set when the file is read; remove them")
    _check_required(data, path.name)
    preset = _build(StudyPreset, data, f"preset {path.name}")
    _check_types(preset, path.name)
    preset.plan_file, preset.plan_sha256 = plan_identity(path, data)
    return preset


def plan_identity(path: Path, data: dict) -> tuple[str, str]:
    """(the plan file's path, relative to the checkout when inside it; sha256 of its canonical JSON)."""
    import hashlib

    from biasprobe.studies.sweep import canonical_json

    root = Path(__file__).resolve().parents[2]
    try:
        shown = str(path.resolve().relative_to(root))
    except ValueError:
        shown = str(path)
    return shown, hashlib.sha256(canonical_json(data).encode()).hexdigest()


def _check_required(data, where: str) -> None:
    """The fields a preset must give (a missing one is refused, not silently defaulted): archs and dip.images."""
    if not isinstance(data, dict):
        return  # _build names the type
    if "archs" not in data:
        raise BiasprobeError(f"preset {where}: field 'archs' is missing (the architectures to run; copy a shipped "
                             f"preset and edit it)")
    dip = data.get("dip")
    if not isinstance(dip, dict) or "images" not in dip:
        raise BiasprobeError(f"preset {where}: field 'dip.images' is missing (the images the DIP runs fit; copy a "
                             f"shipped preset and edit it)")


def _check_types(p: StudyPreset, where: str) -> None:
    def need(ok: bool, fld: str, what: str):
        if not ok:
            raise BiasprobeError(f"preset {where}: field {fld!r} must be {what}")

    need(isinstance(p.archs, list) and p.archs and all(isinstance(a, str) for a in p.archs), "archs",
         "a non-empty list of architecture names")
    need(p.executor in ("local", "pool", "slurm", "slurm-local", "slurm-debug"), "executor",
         "local, pool, slurm, slurm-local or slurm-debug")
    need(isinstance(p.jobs, int) and p.jobs >= 1, "jobs", "a positive integer")
    need(isinstance(p.study, dict), "study", "an object (the study's own options)")
    need(p.reuse_from is None or isinstance(p.reuse_from, str) and p.reuse_from, "reuse_from",
         "null or a store folder (a path string)")
    need(p.calibration.iters is None or isinstance(p.calibration.iters, int) and p.calibration.iters >= 1,
         "calibration.iters", "null or a positive integer")
    for name, plan in p.plans().items():
        probe = get_probe(name)
        known = probe.fields()
        for key in plan.extra:
            need(key in known, f"{name}.extra.{key}",
                 f"a {probe.config_type.__name__} field ({', '.join(sorted(known))})")
        plan.check(need, p.archs)
    if any(calibrated_archs(p, name, plan) for name, plan in p.plans().items()):
        need(p.calibration.enabled, "calibration.enabled", 'true when an lr is "calibrated"')


# ----------------------------------------------------------------------------------------------------------------
# Grids: each run is a plain dict (hashed into its run id by the sweep)


def by_arch(p: StudyPreset, runs: list[dict]) -> list[dict]:
    """The order runs are computed in. With a list of images: architecture by architecture (the preset's order,
    DIP-only extras last), each probe's runs in their grid order within, so a study stopped part-way has whole
    architectures. With drawn images (images are the sample): image by image (every architecture on an image, the
    plan's seeds before replicates), with the classifier runs of one seed (every architecture; the 2x-budget runs
    after the others) after every second image, so a study stopped part-way holds complete units of both probes,
    a smaller sample of the same population."""
    order = {a: i for i, a in enumerate(p.archs + p.dip.extra_archs)}
    if not isinstance(p.dip.images, dict):
        return sorted(runs, key=lambda r: order.get(r["config"]["arch"], len(order)))  # stable: grid order within
    drawn = {im: i for i, im in enumerate(p.dip.image_names())}
    batched = {name for name, probe in PROBES.items() if probe.seeds_batched}  # one run holds every seed
    batches = sorted({(r["config"].get("steps") or 0, r["config"]["seed"]) for r in runs
                      if r["probe"] not in batched})

    def key(r):
        c = r["config"]
        arch = order.get(c["arch"], len(order))
        if r["probe"] not in batched:
            return (0, 2 * batches.index((c.get("steps") or 0, c["seed"])) + 1.5, arch)
        replicate = len(c["seeds"]) == 1 and not p.dip.is_unit(c["image"], c["seeds"][0], list(drawn))
        return (int(replicate), drawn.get(c["image"], len(drawn)), arch)

    return sorted(runs, key=key)


def calibrated_archs(p: StudyPreset, probe: str, plan) -> list[str]:
    """The architectures whose lr under ``plan`` is "calibrated" (the plan's lr, or its table's entry for them); a
    plan's own extra architectures (the DIP plan's DIP-only extras) count too."""
    archs = p.archs + [a for a in getattr(plan, "extra_archs", []) if a not in p.archs]
    return [a for a in archs if per_arch(plan.lr, a, f"{probe}.lr") in CALIBRATED]


# ----------------------------------------------------------------------------------------------------------------
# What one sweep run does (module-level functions: picklable for process pools and Slurm)


def study_job(run: dict) -> dict[str, pd.DataFrame]:
    """Run one study run ({"probe": name, "config": fields}); the probe's tables."""
    probe = get_probe(run["probe"])
    return probe.run(probe.make_config(run["config"]))


# ----------------------------------------------------------------------------------------------------------------


def grid(p: StudyPreset, lrs: dict[str, dict[str, float]] | None = None) -> list[dict]:
    """Every probe's runs of preset ``p`` (probe by probe, each in its grid order); ``lrs``: {probe: {arch: lr}}
    for the probes whose lr is "calibrated"."""
    return [run for name in p.plans() for run in get_probe(name).grid(p, (lrs or {}).get(name))]


def check_data(p: StudyPreset) -> None:
    """Fail before any run when a probe cannot run at all (the predictive probe without data: a one-line error
    saying how to give it)."""
    for name, plan in p.plans().items():
        get_probe(name).check_plan(plan)


def run_study(p: StudyPreset, store_dir: str | Path, progress: bool = True, run: bool = True) -> dict:
    """Calibrate (if the preset says so), run both grids, and return the tables for the analysis. ``run=False``
    runs nothing: the tables hold the runs the store has (a study still running, or stopped part-way), and
    ``tables["missing"]`` counts the rest."""
    from biasprobe.studies.reuse import sweep_reusing as run_sweep
    from biasprobe.studies.sweep import ResultStore

    if not run:
        run_sweep = _no_sweep
    else:
        check_data(p)  # a report drawn from the store reads no data
    store = ResultStore(Path(store_dir) / "results")
    donor = reuse_source(p, store_dir) if run else None
    if run and p.plan_sha256:
        log_plan(Path(store_dir), p, donor)
    t0 = time.perf_counter()
    started = pd.Timestamp.now(tz="UTC").floor("s")
    tables: dict[str, pd.DataFrame] = {}
    lrs, second_lrs = {}, {}  # {probe: {arch: calibrated lr}}, and the second-best lrs
    if p.calibration.enabled:
        lrs, second_lrs = _calibrate(p, Path(store_dir) / "calibration", tables, progress, compute=run,
                                     donor=donor / "calibration" if donor else None)

    runs = by_arch(p, grid(p, lrs))
    sweep_kw = dict(executor=p.executor, jobs=p.jobs, threads_per_job=p.threads_per_job, slurm=p.slurm,
                    progress=progress, donors=[donor / "results"] if donor else [])
    run_sweep(runs, study_job, store, desc=f"study {p.name}", **sweep_kw)
    tables.update(collect(store, runs))

    if p.calibration.enabled and p.calibration.sensitivity:
        second = by_arch(p, grid(p, second_lrs))
        run_sweep(second, study_job, store, desc=f"study {p.name} @ 2nd-best lr", **sweep_kw)
        tables["second"] = collect(store, second)
        runs = runs + second
    tables["run_stats"] = run_stats(store, runs, started, Path(store_dir) / "calibration",
                                    tables.get("calibration"))
    tables["run_costs"] = tables["run_stats"].pop("costs")
    tables["missing"] = len(runs) - tables["run_stats"]["runs"] + (
        len(tables["calibration"].run_id.unique()) if "calibration" in tables and "run_id" in tables["calibration"]
        else 0)
    tables["wall_seconds"] = time.perf_counter() - t0
    return tables


PLAN_LOG = "plans.csv"  # in the store folder: which plan each study invocation ran under, from when


def reuse_source(p: StudyPreset, store_dir) -> Path | None:
    """The store folder ``p.reuse_from`` names (None when it names none, or names this study's own store); a folder
    that is not there is a one-line error."""
    if not p.reuse_from:
        return None
    src = Path(p.reuse_from)
    if not (src / "results").is_dir():
        raise BiasprobeError(f"reuse_from {p.reuse_from!r}: no study store there (no results/ folder); give the store "
                             f"folder of the study this plan continues, relative to the working directory")
    return None if src.resolve() == Path(store_dir).resolve() else src


def log_plan(store_dir: Path, p: StudyPreset, donor: Path | None = None) -> None:
    """Append (started_at, plan_file, plan_sha256) to the store's plan log before any run starts: a run finished
    after a line and before the next was made under that line's plan (``plan_of_runs``). A store that takes over
    runs from ``donor`` holds the donor's lines too, so those runs keep the plan they were made under."""
    from biasprobe.runinfo import write_atomic

    path = Path(store_dir) / PLAN_LOG
    logs = [q for q in ([donor / PLAN_LOG] if donor is not None else []) + [path] if q.is_file()]
    old = pd.concat([pd.read_csv(q) for q in logs], ignore_index=True) if logs else \
        pd.DataFrame(columns=["started_at", "plan_file", "plan_sha256"])
    old = old.drop_duplicates().sort_values("started_at", kind="stable")
    row = pd.DataFrame([dict(started_at=pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
                             plan_file=p.plan_file, plan_sha256=p.plan_sha256)])
    write_atomic(path, pd.concat([old, row], ignore_index=True).to_csv(index=False))


def plan_of_runs(store_dir: Path, finished_at: pd.Series) -> pd.Series:
    """The plan sha256 each run was made under (by its finished_at; "" when the log has no line before it: a run
    made before plans were logged)."""
    path = Path(store_dir) / PLAN_LOG
    if not path.is_file() or not len(finished_at):
        return pd.Series("", index=finished_at.index)
    log = pd.read_csv(path)
    t = pd.to_datetime(log.started_at, utc=True).to_numpy()
    at = pd.to_datetime(finished_at, utc=True).to_numpy()
    idx = np.searchsorted(t, at, side="right") - 1
    sha = log.plan_sha256.astype(str).to_numpy()
    return pd.Series(np.where(idx >= 0, sha[np.clip(idx, 0, None)], ""), index=finished_at.index)


def _no_sweep(*args, **kwargs) -> None:
    """run_sweep for ``run_study(run=False)``: nothing is run."""


def run_costs(store, runs: list[dict], calibration_root: Path | None = None,
              calibration: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per finished run of the study, calibration included: part ("study" or "calibration"), probe, arch,
    run_id, seconds (the run's own time, as stored), threads (torch's, recorded with the run; NaN for runs stored
    before threads were recorded), finished_at and taken_over (the run was taken over from the store the plan
    continues, ``biasprobe.studies.reuse``). The study's cost per architecture is read from it
    (``report.cost_table``)."""
    from biasprobe.studies.reuse import taken_over
    from biasprobe.studies.sweep import ResultStore, run_id

    who = {run_id(r): ("study", r["probe"], r["config"]["arch"]) for r in runs}
    parts = [(store, who)]
    if calibration is not None and "run_id" in calibration and calibration_root is not None:
        for probe, g in calibration.groupby("probe"):
            parts.append((ResultStore(calibration_root / probe),
                          {i: ("calibration", probe, a) for i, a in zip(g.run_id, g.arch)}))
    frames = []
    for st, ids in parts:
        idx = st.index()
        idx = idx[idx.run_id.isin(set(ids)) & (idx.status == "done")]
        part, probe, arch = zip(*[ids[i] for i in idx.run_id]) if len(idx) else ((), (), ())
        taken = taken_over(st.root)
        frames.append(pd.DataFrame(dict(part=part, probe=probe, arch=arch, run_id=list(idx.run_id),
                                        seconds=list(idx.seconds.astype(float)),
                                        threads=list(idx.threads),
                                        finished_at=list(idx.finished_at),
                                        taken_over=[r in taken for r in idx.run_id])))
    out = pd.concat(frames, ignore_index=True)
    order = {a: i for i, a in enumerate(dict.fromkeys(r["config"]["arch"] for r in runs))}
    return out.sort_values("arch", key=lambda a: a.map(order).fillna(len(order)), kind="stable",
                           ignore_index=True)


def run_stats(store, runs: list[dict], started: pd.Timestamp, calibration_root: Path | None = None,
              calibration: pd.DataFrame | None = None) -> dict:
    """How many of the study's runs (calibration included) there are, how many this invocation computed (finished
    at or after ``started``) rather than reused from the store, their summed run time (seconds as stored), and
    ``costs``: one row per run (:func:`run_costs`)."""
    from biasprobe.studies.sweep import run_id

    costs = run_costs(store, runs, calibration_root, calibration)
    ids = {run_id(r) for r in runs}
    recomputed = [r for r in getattr(store, "recomputed", []) if r["run_id"] in ids]
    n = len(costs)
    new = int((pd.to_datetime(costs.finished_at, utc=True) >= started).sum()) if n else 0
    return {"runs": n, "computed": new, "reused": n - new, "summed_run_seconds": float(costs.seconds.sum()),
            "recomputed_damaged": recomputed, "costs": costs}


def _calibrate(p: StudyPreset, root: Path, tables: dict, progress: bool,
               compute: bool = True, donor: Path | None = None) -> tuple[dict, dict]:
    """Calibrate the lr of every arch for each probe whose preset lr is "calibrated" (biasprobe.studies.calibrate),
    with the study's own architecture kwargs; returns ({probe: {arch: lr}}, {probe: {arch: second-best lr}}).
    ``compute=False`` (--report-only) reads a finished calibration from the store and runs nothing."""
    from biasprobe.studies import calibrate

    best, second = {}, {}
    curves, choices = [], []
    for probe, plan in p.plans().items():
        archs = calibrated_archs(p, probe, plan)
        if not archs:
            continue
        cal = calibrate.preset(p.calibration.preset, probe)
        # calibrate under the study's own protocol; only the data differ (calibration image / validation split)
        base = plan.calibration_base(cal["base"])
        if probe == "dip" and p.calibration.iters:
            base["iters"] = p.calibration.iters
        table = calibrate.calibrate(archs, probe, cal["grid"], base, root / probe, seeds=cal.get("seeds", (0,)),
                                    wd_grid=cal.get("wd_grid"), executor=p.executor, jobs=p.jobs,
                                    threads_per_job=p.threads_per_job, device=p.device, progress=progress,
                                    arch_kwargs={a: plan.arch_kwargs.get(a, {}) for a in archs},
                                    compute=compute, donors=[donor / probe] if donor else [])
        within = p.calibration.peak_within
        chosen = calibrate.choose(table, peak_by=within * base["iters"] if within and probe == "dip" else None)
        if compute:
            calibrate.save_choices(chosen, root / "choices.csv")
        curves.append(table)
        choices.append(chosen)
        best[probe] = {a: calibrate.lookup_lr(chosen, a, probe, rank=1) for a in archs}
        second[probe] = {a: calibrate.lookup_lr(chosen, a, probe, rank=2) for a in archs}
    if curves:
        tables["calibration"] = pd.concat(curves, ignore_index=True)
        tables["choices"] = pd.concat(choices, ignore_index=True)
    return best, second


def collect(store, runs: list[dict]) -> dict[str, pd.DataFrame]:
    """The study's tables, read from the store for exactly these runs. A planned run is never silently left out:
    runs that failed, and runs whose stored copy fails the store's check (seen by --report-only; a sweep moves them
    aside and computes them again), are listed in ``failed`` with the reason; a stored table that cannot be read
    back whole stops with one line naming the run (:func:`_load`)."""
    from biasprobe.studies.sweep import run_id

    done = set(store.run_ids())
    out, ids = {}, []
    for probe in PROBES.values():  # each probe's tables under the study's names for them
        mine = [run_id(r) for r in runs if r["probe"] == probe.name]
        ids += mine
        for table, key in probe.tables.items():
            out[key] = _load(store, table, [i for i in mine if i in done])
    failed_ids = set(store.failed_ids())
    damaged = store.damaged_ids() if hasattr(store, "damaged_ids") else {}
    failed = []
    for i in dict.fromkeys(ids):
        if i in done:
            continue
        if i in damaged:
            failed.append(dict(run_id=i, error=f"stored copy damaged ({damaged[i]}): rerun without --report-only "
                                               f"to move it aside and compute it again"))
        elif i in failed_ids:
            failed.append(dict(run_id=i, error=store.failure(i).get("error")))
    out["failed"] = pd.DataFrame(failed)
    return out


def _load(store, table: str, ids: list[str]) -> pd.DataFrame:
    """``table`` of these stored runs, each checked to read back with the rows it stored (a one-line
    BiasprobeError naming the run otherwise: a verdict never silently rests on fewer units than planned)."""
    if not ids:
        return pd.DataFrame()
    df = store.load(table, run_ids=ids)
    got = df.groupby("run_id").size() if len(df) else pd.Series(dtype=int)
    for i in ids:
        want = int(store.tables(i).get(table, 0)) if hasattr(store, "tables") else None
        if want is not None and int(got.get(i, 0)) != want:
            raise BiasprobeError(f"stored run {i}: table {table} read back {int(got.get(i, 0))} of its {want} rows; "
                                 f"move {store.runs_dir / i} aside (or delete it) and rerun the study to compute it "
                                 f"again")
    return df
