"""`biasprobe study NAME --preset P`: run (or resume) a study and write its report.

Studies (one module each in ``biasprobe/studies``): ``generative_vs_predictive`` (both probes on the preset's
architectures, cross-tab, verdicts on the five hypotheses), ``conv_placement`` (DIP only: T, 3c+T, T+1c, T+3c for T
in vit and swin — the original study's figure) and ``zoo`` (timm architectures from several families through both
probes: leaderboard, rho, the decoder ablation). Runs go to a results store (``--store``); a run already there is
never repeated, so an interrupted study resumes, and studies share the runs they have in common.

Before the first run the preset's contents are checked (architectures and their kwargs, images, masks, data, each
DIP run's memory estimate) and the report and store folders must be writable; each problem is one line (exit 2). A
study some of whose runs failed writes its report (which lists them as failed) and exits 1 with one line naming the
runs and where their errors are. A report folder holding another study's or preset's report is refused unless
--force.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import sys
from pathlib import Path

from biasprobe.cli.commands import CommandFailed, add_arch_module_arg, load_arch_modules
from biasprobe.errors import BiasprobeError

MARKER = ".biasprobe-report.json"  # in a report folder: which study and preset wrote it


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="run a study (both probes, verdicts, report)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(p)
    p.set_defaults(run=run)


def add_study_args(p: argparse.ArgumentParser, name: str | None = None) -> None:
    if name is None:
        from biasprobe import studies

        p.add_argument("name", choices=studies.names(), help="; ".join(
            f"{n}: {studies.describe(n)}" for n in studies.names()))
    else:
        p.set_defaults(name=name)
    from biasprobe.studies.presets import PRESET_DIR

    p.add_argument("--preset", default="standard",
                   help=f"{', '.join(sorted(x.stem for x in PRESET_DIR.glob('*.json')))}, or a preset JSON file "
                        f"(default standard)")
    p.add_argument("--out", help="report folder (default reports/<study>-<preset>)")
    p.add_argument("--store", help="results store folder (default <report folder>/store: the run tables are kept "
                                   "beside the report, so a committed report's runs are reused, not recomputed)")
    p.add_argument("--executor", choices=["local", "pool", "slurm", "slurm-local", "slurm-debug"],
                   help="override the preset's executor")
    p.add_argument("--jobs", type=int, help="parallel runs for the pool executor")
    p.add_argument("--threads", type=int, help="torch threads per run (overrides the preset's threads_per_job; e.g. "
                                               "--executor local --threads 2 gives one run both cores)")
    p.add_argument("--partition", help="Slurm partition (with --executor slurm)")
    p.add_argument("--data", help="CIFAR-10 ImageFolder (train/ test/) for the predictive probe")
    p.add_argument("--data-root", help="torchvision CIFAR-10 root (with --download to fetch it)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10")
    p.add_argument("--device", help="auto, cpu or cuda (overrides the preset). The device is part of each run's "
                                    "identity: a study resumed with another --device than its stored runs' "
                                    "computes its runs again (a committed store's runs are device auto)")
    p.add_argument("--sensitivity", action="store_true",
                   help="also rerun both grids at each arch's second-best calibrated lr and report whether each "
                        "verdict holds there (robust/sensitive); finished runs are reused")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: write the report from the runs already in the store (a study still running "
                        "or stopped part-way; the report says how many runs are missing)")
    p.add_argument("--force", action="store_true",
                   help="replace a report of another study or preset in --out (refused without it)")
    add_arch_module_arg(p)
    p.add_argument("--quiet", action="store_true")


def _apply_overrides(preset, args):
    if args.executor:
        preset.executor = args.executor
    if args.jobs:
        preset.jobs = args.jobs
    if args.threads is not None:
        if args.threads < 1:
            raise BiasprobeError(f"--threads must be at least 1 (got {args.threads})")
        preset.threads_per_job = args.threads
    if args.device:
        preset.device = args.device
    if args.partition:
        preset.slurm = {"partition": args.partition}
    if args.sensitivity:
        if not preset.calibration.enabled:
            raise BiasprobeError(f"--sensitivity needs calibrated learning rates; preset {preset.name!r} does not "
                                 "calibrate (set calibration.enabled and lr \"calibrated\" in a copy of it)")
        preset.calibration.sensitivity = True
    if preset.classify is not None:
        from biasprobe.probes.classify.cifar import default_data_dir

        default = default_data_dir()
        for key in ("data", "data_root"):
            if getattr(args, key):
                path = Path(getattr(args, key)).resolve()
                if key == "data" and default is not None and path == default.resolve():
                    continue  # the default subset named explicitly: same data, so the same runs (ids) as without
                setattr(preset.classify, key, str(path))
        if args.download:
            preset.classify.download = True
    return preset


def _run_stats_meta(stats: dict | None, store=None) -> dict:
    if not stats:
        return {}
    out = {}
    again = stats.get("recomputed_damaged") or []
    if again:
        ids = ", ".join(r["run_id"] for r in again)
        out["damaged runs recomputed"] = (f"{len(again)} (their stored copies failed the store's check, were moved "
                                          f"to {Path(store) / 'results' / 'damaged' if store else 'damaged/'} and "
                                          f"computed again: {ids})")
    return {**out, "runs": f"{stats['runs']} (computed by this command: {stats['computed']}; reused from the store: "
                    f"{stats['reused']})",
            "summed run time": f"{stats['summed_run_seconds']:.0f} s ({stats['summed_run_seconds'] / 60:.1f} min, "
                               f"all runs above, as each took when computed)"}


def _report_owner(out: Path) -> tuple[str | None, str | None] | None:
    """(study, preset name) of the report in ``out`` (its marker, else its provenance lines), None if none."""
    marker = out / MARKER
    if marker.is_file():
        try:
            m = json.loads(marker.read_text())
            return m.get("study"), m.get("preset")
        except (OSError, ValueError, AttributeError):
            pass
    report = out / "report.md"
    if not report.is_file():
        return None
    text = report.read_text(errors="replace")
    study = re.search(r"^- study: (\S+)$", text, re.M)
    preset = re.search(r"^- preset: (\S+)$", text, re.M)
    return (study.group(1) if study else None), (preset.group(1) if preset else None)


def _check_report_folder(out: Path, study: str, preset: str, force: bool) -> None:
    """Refuse to replace another study's or preset's report in ``out`` unless ``force``."""
    owner = _report_owner(out)
    if owner is None or force:
        return
    other_study, other_preset = owner
    if (other_study not in (None, study)) or (other_preset not in (None, preset)):
        raise BiasprobeError(f"--out {out} holds the report of study {other_study or '?'} with preset "
                             f"{other_preset or '?'}: give another --out, or --force to replace it")


def _failed_runs(tables: dict) -> list[dict]:
    """The failed runs of the study (and of its second-lr grids), each once."""
    import pandas as pd

    frames = [tables.get("failed")]
    second = tables.get("second")
    if isinstance(second, dict):
        frames.append(second.get("failed"))
    seen = {}
    for f in frames:
        if isinstance(f, pd.DataFrame) and len(f) and "run_id" in f:
            for row in f.to_dict("records"):
                seen.setdefault(row["run_id"], row)
    return list(seen.values())


def _command_line() -> str:
    """How this process was started: `python studies/x.py ...` or `biasprobe study ...`."""
    argv = list(sys.argv)
    head = ["python", argv[0]] if argv and argv[0].endswith(".py") else ["biasprobe"]
    return " ".join(shlex.quote(a) for a in head + argv[1:])


def run(args) -> None:
    from biasprobe import studies
    from biasprobe.preflight import check_study, check_writable
    from biasprobe.runinfo import provenance, resolve_device, write_json
    from biasprobe.studies.runner import load_preset, run_study

    load_arch_modules(args)
    study = studies.get(args.name)
    preset = study.prepare(_apply_overrides(load_preset(args.preset), args))
    out = check_writable(args.out or f"reports/{args.name}-{preset.name}", "--out")
    store = check_writable(args.store or str(Path(out) / "store"), "--store")
    _check_report_folder(out, args.name, preset.name, args.force)
    if args.report_only:  # nothing runs: the names must exist for the report to read their runs
        from biasprobe.archs.registry import get_arch

        for arch in preset.archs + list(preset.dip.extra_archs):
            get_arch(arch)
    else:
        check_study(preset)  # archs, kwargs, images, masks, memory: before the first run
    started = provenance(resolve_device(preset.device))  # the code and machine the runs start from
    try:
        tables = run_study(preset, store, progress=not args.quiet, run=not args.report_only)
    except OSError as e:  # the store (or a file the runner writes beside it) became unwritable
        raise BiasprobeError(f"cannot write under --store {store}: {e.strerror or type(e).__name__}"
                             f"{f' ({e.filename})' if e.filename else ''}; the runs stored so far are intact: fix it "
                             f"and rerun to resume") from None
    if args.report_only and not tables["run_stats"]["runs"]:
        raise BiasprobeError(f"the store {store} has none of this study's runs yet: run the study first (or give "
                             "--store)")
    failed = _failed_runs(tables)
    meta = {
        "study": args.name,
        "command": _command_line(),
        "preset": dataclasses.asdict(preset),
        "store": str(store),
        "wall_seconds": tables.pop("wall_seconds"),
        **_run_stats_meta(tables.pop("run_stats", None), store),
        "missing_runs": max(0, tables.pop("missing", 0) - len(failed)),  # failed runs are listed as failed
        "failed_runs": len(failed) or None,
        "report_only": bool(args.report_only),
        **started,
    }
    analysis = study.analyse(tables, preset)
    try:
        path = study.write_report(out, tables, analysis, meta)
        write_json(Path(out) / MARKER, {"study": args.name, "preset": preset.name})
    except OSError as e:
        raise BiasprobeError(f"cannot write the report into --out {out}: {e.strerror or type(e).__name__}"
                             f"{f' ({e.filename})' if e.filename else ''}; the runs are in the store {store}: rerun "
                             f"with a writable --out (or --report-only) to write it") from None
    print(f"wrote {path}")
    if failed:
        ids = [r["run_id"] for r in failed]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise CommandFailed(f"{len(ids)} run(s) of the study failed ({shown}); their errors are in "
                            f"{Path(store) / 'results' / 'failed'}/<run_id>.json and listed in {path}; fix the "
                            f"cause and rerun to retry them (finished runs are reused)")
