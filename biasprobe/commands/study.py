"""`biasprobe study NAME --preset P`: run (or resume) a study and write its report.

Studies (one module each in ``biasprobe/studies``): ``generative_vs_predictive`` (both probes on the preset's
architectures, cross-tab, verdicts on the five hypotheses), ``conv_placement`` (DIP only: T, 3c+T, T+1c, T+3c for T
in vit and swin — the original study's figure) and ``zoo`` (timm architectures from several families through both
probes: leaderboard, rho, the decoder ablation). Runs go to a results store (``--store``); a run already there is
never repeated, so an interrupted study resumes, and studies share the runs they have in common.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from biasprobe.commands import add_arch_module_arg, load_arch_modules, out_dir
from biasprobe.errors import BiasprobeError



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
    from biasprobe.presets import PRESET_DIR

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
    p.add_argument("--device", help="auto, cpu or cuda (overrides the preset)")
    p.add_argument("--sensitivity", action="store_true",
                   help="also rerun both grids at each arch's second-best calibrated lr and report whether each "
                        "verdict holds there (robust/sensitive); finished runs are reused")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: write the report from the runs already in the store (a study still running "
                        "or stopped part-way; the report says how many runs are missing)")
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
        for key in ("data", "data_root"):
            if getattr(args, key):
                setattr(preset.classify, key, str(Path(getattr(args, key)).resolve()))
        if args.download:
            preset.classify.download = True
    return preset


def _run_stats_meta(stats: dict | None) -> dict:
    if not stats:
        return {}
    return {"runs": f"{stats['runs']} (computed by this command: {stats['computed']}; reused from the store: "
                    f"{stats['reused']})",
            "summed run time": f"{stats['summed_run_seconds']:.0f} s ({stats['summed_run_seconds'] / 60:.1f} min, "
                               f"all runs above, as each took when computed)"}


def _command_line() -> str:
    """How this process was started: `python studies/x.py ...` or `biasprobe study ...`."""
    argv = list(sys.argv)
    head = ["python", argv[0]] if argv and argv[0].endswith(".py") else ["biasprobe"]
    return " ".join(shlex.quote(a) for a in head + argv[1:])


def run(args) -> None:
    from biasprobe import studies
    from biasprobe.runinfo import provenance, resolve_device
    from biasprobe.study import load_preset, run_study

    load_arch_modules(args)
    study = studies.get(args.name)
    preset = study.prepare(_apply_overrides(load_preset(args.preset), args))
    out = out_dir(args.out or f"reports/{args.name}-{preset.name}")
    store = out_dir(args.store or str(Path(out) / "store"), "--store")
    started = provenance(resolve_device(preset.device))  # the code and machine the runs start from
    tables = run_study(preset, store, progress=not args.quiet, run=not args.report_only)
    if args.report_only and not tables["run_stats"]["runs"]:
        raise BiasprobeError(f"the store {store} has none of this study's runs yet: run the study first (or give "
                             "--store)")
    meta = {
        "study": args.name,
        "command": _command_line(),
        "preset": dataclasses.asdict(preset),
        "store": str(store),
        "wall_seconds": tables.pop("wall_seconds"),
        **_run_stats_meta(tables.pop("run_stats", None)),
        "missing_runs": tables.pop("missing", 0),
        "report_only": bool(args.report_only),
        **started,
    }
    path = study.write_report(out, tables, study.analyse(tables, preset), meta)
    print(f"wrote {path}")
