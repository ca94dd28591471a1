"""Studies: a preset (plain JSON) -> grids of DIP and classification runs -> resumable sweeps -> tables.

A preset lists the architectures and, per probe, what to run (see ``biasprobe/presets/*.json``; copy one and edit
it). ``run_study`` optionally calibrates each architecture's learning rate first (``biasprobe.calibrate``), then
runs the DIP grid (arch x task x image, seeds fitted together as one batch) and the classification grid
(arch x n_train x seed) through ``biasprobe.sweep`` into one results store, so a killed study resumes where it
stopped. It returns the tidy tables the analysis (``verdicts.py``, ``report.py``) reads.
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
from biasprobe.presets import PRESET_DIR  # shipped with the package: a non-editable install finds them
from biasprobe.probes import PROBES, get_probe


@dataclass
class DipPlan:
    tasks: list[dict] = field(default_factory=lambda: [{"task": "denoise", "task_params": {"sigma": 25}}])
    images: list[str] | dict = field(default_factory=lambda: ["astronaut"])  # names, or {"draw": {"n": N,
    #   "seed": S, "sets": ["Kodak24", "CBSD68"]}}: a random sample of the standard colour sets (images.draw_images)
    size: int = 64
    setting: str = "dip"
    iters: int | dict = 600  # the cap (stop "peak") or count; a number, or {arch pattern: iters} like lr
    log_every: int = 25
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    lr: float | str | dict | None = None  # None: the setting's lr; a number; "calibrated"; or {arch pattern: lr}
    input_depth: int | None = None
    reg_noise_std: float | None = None
    spectral: bool = True
    arch_kwargs: dict = field(default_factory=dict)  # per arch name: {"swin": {"embed_dim": 192}}
    extra: dict = field(default_factory=dict)  # other DIPConfig fields, e.g. {"es_patience": 300}
    extra_archs: list[str] = field(default_factory=list)  # run by DIP only, after the preset's archs
    replicate: dict = field(default_factory=dict)  # {"images": n, "seeds": [1]}: the first n images also run
    #   these seeds (one run each), to estimate the seed-to-seed spread

    def image_names(self) -> list[str]:
        """The plan's images: the list given, or the images its draw picks (in the order drawn)."""
        if isinstance(self.images, dict):
            from biasprobe.images import IMAGE_SETS, draw_images

            d = self.images.get("draw")
            if not isinstance(d, dict) or set(d) - {"n", "seed", "sets"} or not {"n", "seed"} <= set(d):
                raise BiasprobeError('dip.images: give a list of images or {"draw": {"n": N, "seed": S, '
                                     '"sets": [...]}}')
            return draw_images(d["n"], d["seed"], tuple(d.get("sets", IMAGE_SETS)))
        return list(self.images)

    def seed_lists(self, image: str, images: list[str]) -> list[list[int]]:
        """The seed batches run on ``image``: the plan's seeds, then each replicate seed on its own for the first
        ``replicate["images"]`` images."""
        out = [list(self.seeds)]
        if self.replicate and image in images[: int(self.replicate.get("images", 0))]:
            out += [[s] for s in self.replicate.get("seeds", []) if s not in self.seeds]
        return out

    def calibration_base(self, base: dict) -> dict:
        """The calibration preset's base under this plan's protocol; only the image differs (and must)."""
        iters = self.iters if isinstance(self.iters, int) else max(self.iters.values())  # a table: its longest
        base = dict(base, size=self.size, iters=iters, setting=self.setting, **{
            k: getattr(self, k) for k in ("input_depth", "reg_noise_std") if getattr(self, k) is not None})
        if self.extra.get("stop") == "peak":  # the criterion is the peak: a calibration fit stops after it
            base.update(stop="peak", stop_on_gap=False, **{k: self.extra[k] for k in ("patience", "collapse_db")
                                                           if k in self.extra and not isinstance(self.extra[k], dict)})
        if base["image"] in self.image_names() or any(base["image"] in t.get("images", []) for t in self.tasks):
            raise BiasprobeError(f"the calibration image {base['image']!r} is one of the study's images")
        return base


@dataclass
class ClassifyPlan:
    n_train: list[int] = field(default_factory=lambda: [500, 1000, 2000])
    fixed_n: int = 1000  # the N at which the predictive score is read
    measures_at: str = "fixed_n"  # shift consistency, attribution: "fixed_n" (what the cross-tab reads) or "all"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 10  # the budget when ``steps`` is None (epoch mode)
    steps: int | None = None  # the budget in AdamW updates, the same for every arch and N (what studies should use)
    batch_size: int = 128
    lr: float | str | None = None  # None: ClassifyConfig's default; a number; or "calibrated"
    weight_decay: float | None = None
    data: str | None = None
    data_root: str | None = None
    download: bool = False
    arch_kwargs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # other ClassifyConfig fields, e.g. {"attr_samples": 32}
    double_seeds: list[int] = field(default_factory=list)  # the budget check: these seeds also run at 2x steps
    #   (at fixed_n), so a contrast can be read again at twice the budget

    def calibration_base(self, base: dict) -> dict:
        """The calibration preset's base under this plan's protocol; only the data split differs (validation)."""
        return dict(base, epochs=self.epochs, steps=self.steps, batch_size=self.batch_size, data=self.data,
                    data_root=self.data_root, download=self.download)


@dataclass
class CalibrationPlan:
    enabled: bool = False
    preset: str = "quick"  # biasprobe.calibrate.CALIBRATION_PRESETS entry
    sensitivity: bool = False  # rerun the DIP/classify grids at each arch's second-best lr


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
    analysis: dict = field(default_factory=dict)  # the analysis plan: claims, tests, alpha, margins, power (a
    #   study module that reads it says how); with the design above it is the study's plan, fixed before the runs
    plan_file: str = ""  # set by load_preset: the file this preset was read from
    plan_sha256: str = ""  # set by load_preset: sha256 of the file's canonical JSON (whitespace does not count)

    def plans(self) -> dict:
        """{probe name: its plan} for the probes this preset runs."""
        return {name: plan for name, plan in (("dip", self.dip), ("classify", self.classify)) if plan is not None}


_NESTED = {"dip": DipPlan, "classify": ClassifyPlan, "calibration": CalibrationPlan}


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
    """A preset by name (``biasprobe/presets/NAME.json``) or path; unknown or ill-typed fields fail in one line."""
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

    from biasprobe.sweep import canonical_json

    root = Path(__file__).resolve().parent.parent
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
    d = p.dip
    need(isinstance(d.extra_archs, list) and all(isinstance(a, str) for a in d.extra_archs), "dip.extra_archs",
         "a list of architecture names")
    need(isinstance(d.tasks, list) and d.tasks and all(isinstance(t, dict) and "task" in t for t in d.tasks),
         "dip.tasks", 'a list of {"task": ..., "task_params": {...}} objects')
    for t in d.tasks:
        for key in t:
            need(key in ("task", "task_params", "images"), f"dip.tasks[].{key}", "one of task, task_params, images")
    need(isinstance(d.images, list) and d.images or isinstance(d.images, dict), "dip.images",
         'a non-empty list of images or {"draw": {...}}')
    need(isinstance(d.replicate, dict) and set(d.replicate) <= {"images", "seeds"}, "dip.replicate",
         '{"images": n, "seeds": [...]}')
    for name, plan in p.plans().items():
        probe = get_probe(name)
        known = probe.fields()
        for key in plan.extra:
            need(key in known, f"{name}.extra.{key}",
                 f"a {probe.config_type.__name__} field ({', '.join(sorted(known))})")
    need(isinstance(d.iters, int) and d.iters >= 1 or isinstance(d.iters, dict) and d.iters and all(
        isinstance(v, int) and v >= 1 for v in d.iters.values()), "dip.iters",
        'a positive integer or {"arch pattern": iters, ...}')
    need(isinstance(d.size, int) and d.size >= 16, "dip.size", "an integer >= 16")
    need(isinstance(d.seeds, list) and d.seeds and all(isinstance(s, int) for s in d.seeds), "dip.seeds",
         "a non-empty list of integers")
    need(d.lr is None or d.lr == "calibrated" or isinstance(d.lr, (int, float)) or isinstance(d.lr, dict) and all(
        isinstance(v, (int, float)) and v > 0 or v == "calibrated" for v in d.lr.values()), "dip.lr",
         'null, a number, "calibrated" or {"arch pattern": lr or "calibrated", ...}')
    for arch in p.archs + d.extra_archs:
        _per_arch(d.lr, arch, "dip.lr")
        _per_arch(d.iters, arch, "dip.iters")
        for key, value in d.extra.items():
            _per_arch(value, arch, f"dip.extra.{key}")
    c = p.classify
    if c is not None:
        need(isinstance(c.n_train, list) and c.n_train and all(isinstance(n, int) and n > 0 for n in c.n_train),
             "classify.n_train", "a non-empty list of positive integers")
        need(c.fixed_n in c.n_train, "classify.fixed_n", f"one of classify.n_train {c.n_train}")
        need(c.measures_at in ("fixed_n", "all"), "classify.measures_at", '"fixed_n" or "all"')
        need(isinstance(c.epochs, int) and c.epochs >= 1, "classify.epochs", "a positive integer")
        need(c.steps is None or isinstance(c.steps, int) and c.steps >= 1, "classify.steps",
             "null or a positive integer")
        need(c.lr is None or c.lr == "calibrated" or isinstance(c.lr, (int, float)), "classify.lr",
             'null, a number or "calibrated"')
    if "calibrated" in (d.lr, getattr(c, "lr", None)) or isinstance(d.lr, dict) and "calibrated" in d.lr.values():
        need(p.calibration.enabled, "calibration.enabled", 'true when an lr is "calibrated"')


# ----------------------------------------------------------------------------------------------------------------
# Grids: each run is a plain dict (hashed into its run id by the sweep)


def dip_configs(p: StudyPreset, lrs: dict[str, float] | None = None) -> list[dict]:
    from biasprobe.dip import DIPConfig

    out = []
    drawn = p.dip.image_names()
    for arch in p.archs + [a for a in p.dip.extra_archs if a not in p.archs]:
        extra = {k: _per_arch(v, arch, f"dip.extra.{k}") for k, v in p.dip.extra.items()}
        for t in p.dip.tasks:
            for image in t.get("images", drawn):
                for seeds in p.dip.seed_lists(image, drawn):
                    cfg = DIPConfig(
                        arch=arch, image=image, task=t["task"], task_params=dict(t.get("task_params", {})),
                        arch_kwargs=dict(p.dip.arch_kwargs.get(arch, {})), size=p.dip.size, setting=p.dip.setting,
                        input_depth=p.dip.input_depth, reg_noise_std=p.dip.reg_noise_std,
                        iters=_per_arch(p.dip.iters, arch, "dip.iters"),
                        log_every=p.dip.log_every, seeds=seeds, spectral=p.dip.spectral,
                        lr=_lr(p.dip.lr, lrs, arch), device=p.device, **extra,
                    )
                    out.append({"probe": "dip", "config": cfg.identity()})
    return out


def classify_configs(p: StudyPreset, lrs: dict[str, float] | None = None) -> list[dict]:
    from biasprobe.classify import ClassifyConfig

    if p.classify is None:
        return []
    c = p.classify
    out = []
    for arch in p.archs:
        for n in c.n_train:
            for seed in c.seeds:
                kw = dict(arch=arch, n_train=n, epochs=c.epochs, steps=c.steps, batch_size=c.batch_size, seed=seed,
                          data=c.data,
                          data_root=c.data_root, download=c.download, device=p.device,
                          arch_kwargs=dict(c.arch_kwargs.get(arch, {})),
                          measures=c.measures_at == "all" or n == c.fixed_n)
                kw.update(c.extra)
                lr = _lr(c.lr, lrs, arch)
                if lr is not None:
                    kw["lr"] = lr
                if c.weight_decay is not None:
                    kw["weight_decay"] = c.weight_decay
                out.append({"probe": "classify", "config": dataclasses.asdict(ClassifyConfig(**kw))})
                if n == c.fixed_n and seed in c.double_seeds:  # the budget check: the same run at 2x the steps
                    if c.steps is None:
                        raise BiasprobeError("classify.double_seeds needs a step budget (classify.steps)")
                    twice = dict(kw, steps=2 * c.steps)
                    if "eval_every_steps" in twice and twice["eval_every_steps"]:
                        twice["eval_every_steps"] = 2 * twice["eval_every_steps"]
                    out.append({"probe": "classify", "config": dataclasses.asdict(ClassifyConfig(**twice))})
    return out


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
    batches = sorted({(r["config"].get("steps") or 0, r["config"]["seed"]) for r in runs if r["probe"] != "dip"})

    def key(r):
        c = r["config"]
        arch = order.get(c["arch"], len(order))
        if r["probe"] != "dip":
            return (0, 2 * batches.index((c.get("steps") or 0, c["seed"])) + 1.5, arch)
        replicate = len(c["seeds"]) == 1 and c["seeds"][0] not in p.dip.seeds
        return (int(replicate), drawn.get(c["image"], len(drawn)), arch)

    return sorted(runs, key=key)


def _lr(value, lrs, arch):
    """The lr of ``arch`` under a plan's ``lr``: None, a number, "calibrated" (``lrs``), or a table (:func:`_per_arch`,
    e.g. {"skipnet": 0.01, "*": 1e-4})."""
    value = _per_arch(value, arch, "lr")
    if value == "calibrated":
        return float(lrs[arch])
    return None if value is None else float(value)


def calibrated_archs(p: StudyPreset, probe: str, plan) -> list[str]:
    """The architectures whose lr for ``probe`` is "calibrated" (the plan's lr, or its table's entry for them);
    the DIP probe's DIP-only extras count too."""
    archs = p.archs + ([a for a in p.dip.extra_archs if a not in p.archs] if probe == "dip" else [])
    return [a for a in archs if _per_arch(plan.lr, a, f"{probe}.lr") == "calibrated"]


def _per_arch(value, arch: str, what: str):
    """A preset value that may differ by architecture: a plain value, or a table {pattern: value} whose first
    pattern equal to ``arch`` or matching it (fnmatch, e.g. "*") wins."""
    if not isinstance(value, dict):
        return value
    import fnmatch

    for pattern, v in value.items():
        if pattern == arch or fnmatch.fnmatchcase(arch, pattern):
            return v
    raise BiasprobeError(f"no {what} for {arch!r} in the preset's table {value}: add it or a '*' entry")


# ----------------------------------------------------------------------------------------------------------------
# What one sweep run does (module-level functions: picklable for process pools and Slurm)


def study_job(run: dict) -> dict[str, pd.DataFrame]:
    """Run one study run ({"probe": name, "config": fields}); the probe's tables."""
    probe = get_probe(run["probe"])
    return probe.run(probe.make_config(run["config"]))


# ----------------------------------------------------------------------------------------------------------------


def check_classify_data(p: StudyPreset) -> None:
    """Fail before any run when the predictive probe has no data (a one-line error saying how to give it)."""
    if p.classify is None:
        return
    from biasprobe import cifar

    cifar.load_split("test", data=p.classify.data, data_root=p.classify.data_root, download=p.classify.download)


def run_study(p: StudyPreset, store_dir: str | Path, progress: bool = True, run: bool = True) -> dict:
    """Calibrate (if the preset says so), run both grids, and return the tables for the analysis. ``run=False``
    runs nothing: the tables hold the runs the store has (a study still running, or stopped part-way), and
    ``tables["missing"]`` counts the rest."""
    from biasprobe.sweep import ResultStore, run_sweep

    if not run:
        if p.calibration.enabled:
            raise BiasprobeError("--report-only reads the runs a study has stored; this preset calibrates its "
                                 "learning rates first: run the study (it resumes) instead")
        run_sweep = _no_sweep

    check_classify_data(p)
    store = ResultStore(Path(store_dir) / "results")
    if run and p.plan_sha256:
        log_plan(Path(store_dir), p)
    t0 = time.perf_counter()
    started = pd.Timestamp.now(tz="UTC").floor("s")
    tables: dict[str, pd.DataFrame] = {}
    lrs = {"dip": None, "classify": None, "dip_second": None, "classify_second": None}
    if p.calibration.enabled:
        lrs.update(_calibrate(p, Path(store_dir) / "calibration", tables, progress))

    runs = by_arch(p, dip_configs(p, lrs["dip"]) + classify_configs(p, lrs["classify"]))
    sweep_kw = dict(executor=p.executor, jobs=p.jobs, threads_per_job=p.threads_per_job, slurm=p.slurm,
                    progress=progress)
    run_sweep(runs, study_job, store, desc=f"study {p.name}", **sweep_kw)
    tables.update(collect(store, runs))

    if p.calibration.enabled and p.calibration.sensitivity:
        second = by_arch(p, dip_configs(p, lrs["dip_second"]) + classify_configs(p, lrs["classify_second"]))
        run_sweep(second, study_job, store, desc=f"study {p.name} @ 2nd-best lr", **sweep_kw)
        tables["second"] = collect(store, second)
        runs = runs + second
    tables["run_stats"] = run_stats(store, runs, started, Path(store_dir) / "calibration",
                                    tables.get("calibration"))
    tables["missing"] = len(runs) - tables["run_stats"]["runs"] + (
        len(tables["calibration"].run_id.unique()) if "calibration" in tables and "run_id" in tables["calibration"]
        else 0)
    tables["wall_seconds"] = time.perf_counter() - t0
    return tables


PLAN_LOG = "plans.csv"  # in the store folder: which plan each study invocation ran under, from when


def log_plan(store_dir: Path, p: StudyPreset) -> None:
    """Append (started_at, plan_file, plan_sha256) to the store's plan log before any run starts: a run finished
    after a line and before the next was made under that line's plan (``plan_of_runs``)."""
    from biasprobe.runinfo import write_atomic

    path = Path(store_dir) / PLAN_LOG
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["started_at", "plan_file", "plan_sha256"])
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


def run_stats(store, runs: list[dict], started: pd.Timestamp, calibration_root: Path | None = None,
              calibration: pd.DataFrame | None = None) -> dict:
    """How many of the study's runs (calibration included) there are, how many this invocation computed (finished
    at or after ``started``) rather than reused from the store, and their summed run time (seconds as stored)."""
    from biasprobe.sweep import ResultStore, run_id

    parts = [(store, {run_id(r) for r in runs})]
    if calibration is not None and "run_id" in calibration and calibration_root is not None:
        for probe, ids in calibration.groupby("probe").run_id:
            parts.append((ResultStore(calibration_root / probe), set(ids)))
    n = new = 0
    seconds = 0.0
    recomputed = [r for r in getattr(store, "recomputed", []) if r["run_id"] in parts[0][1]]
    for st, ids in parts:
        idx = st.index()
        idx = idx[idx.run_id.isin(ids) & (idx.status == "done")]
        n += len(idx)
        new += int((pd.to_datetime(idx.finished_at, utc=True) >= started).sum())
        seconds += float(idx.seconds.sum())
    return {"runs": n, "computed": new, "reused": n - new, "summed_run_seconds": seconds,
            "recomputed_damaged": recomputed}


def _calibrate(p: StudyPreset, root: Path, tables: dict, progress: bool) -> dict:
    """Calibrate the lr of every arch for each probe whose preset lr is "calibrated" (biasprobe.calibrate), with
    the study's own architecture kwargs; returns {probe: {arch: lr}, probe_second: {arch: second-best lr}}."""
    from biasprobe import calibrate

    out = {}
    curves, choices = [], []
    for probe, plan in p.plans().items():
        archs = calibrated_archs(p, probe, plan)
        if not archs:
            continue
        cal = calibrate.preset(p.calibration.preset, probe)
        # calibrate under the study's own protocol; only the data differ (calibration image / validation split)
        base = plan.calibration_base(cal["base"])
        table = calibrate.calibrate(archs, probe, cal["grid"], base, root / probe, seeds=cal.get("seeds", (0,)),
                                    wd_grid=cal.get("wd_grid"), executor=p.executor, jobs=p.jobs,
                                    threads_per_job=p.threads_per_job, device=p.device, progress=progress,
                                    arch_kwargs={a: plan.arch_kwargs.get(a, {}) for a in archs})
        chosen = calibrate.choose(table)
        calibrate.save_choices(chosen, root / "choices.csv")
        curves.append(table)
        choices.append(chosen)
        out[probe] = {a: calibrate.lookup_lr(chosen, a, probe, rank=1) for a in archs}
        out[f"{probe}_second"] = {a: calibrate.lookup_lr(chosen, a, probe, rank=2) for a in archs}
    if curves:
        tables["calibration"] = pd.concat(curves, ignore_index=True)
        tables["choices"] = pd.concat(choices, ignore_index=True)
    return out


def collect(store, runs: list[dict]) -> dict[str, pd.DataFrame]:
    """The study's tables, read from the store for exactly these runs. A planned run is never silently left out:
    runs that failed, and runs whose stored copy fails the store's check (seen by --report-only; a sweep moves them
    aside and computes them again), are listed in ``failed`` with the reason; a stored table that cannot be read
    back whole stops with one line naming the run (:func:`_load`)."""
    from biasprobe.sweep import run_id

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
