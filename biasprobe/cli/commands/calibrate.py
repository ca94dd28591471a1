"""``biasprobe calibrate``: pick each architecture's learning rate for one probe on calibration data.

Runs (or resumes) the calibration sweep into ``OUT/store`` (sweep result store: a finished run is never repeated),
then writes into ``OUT``: ``choices.csv`` (one row per arch and probe: chosen lr, its score, second-best lr and
score, grid, seeds, criterion; rows of other archs/probes already in the file are kept), ``scores_<probe>.csv``
(the long table: one row per arch, lr, weight decay, seed) and ``calibration_<probe>.png`` (score vs lr per arch);
the CSVs and the figure keep the rows of archs calibrated by earlier calls into the same OUT.
``biasprobe dip|classify --lr calibrated --calibration OUT/choices.csv`` then use the chosen values. See
``biasprobe.studies.calibrate`` for the protocol.
"""

from __future__ import annotations

import argparse
import json
import time

from biasprobe.cli.commands import add_arch_args, add_device_arg, arch_kwargs, load_arch_modules, out_dir, parse_kv
from biasprobe.probes import PROBES, get_probe


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="per-architecture learning-rate calibration for dip or classify",
                              description=__doc__.splitlines()[0])
    add_arch_args(p, multiple=True)
    p.add_argument("--probe", required=True, choices=list(PROBES),
                   help="; ".join(f"{q.name}: {q.kind} probe (score: {q.criterion})" for q in PROBES.values()))
    p.add_argument("--preset", default="lr-quick", metavar="NAME",
                   help="grid, seeds and run settings: lr-smoke, lr-quick or lr-paper "
                        "(biasprobe/studies/presets/calibration/), or a JSON file; default lr-quick")
    p.add_argument("--grid", nargs="+", type=float, metavar="LR", help="learning rates (default: the preset's)")
    p.add_argument("--wd-grid", nargs="+", type=float, metavar="WD",
                   help="classify: weight decays to calibrate together with the lr (default: the preset's)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="calibration seeds (default: the preset's)")
    p.add_argument("--image", help="dip: calibration image (default chelsea; keep it out of the study's images)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override a base field of the preset (a DIPConfig / ClassifyConfig field), e.g. iters=500")
    p.add_argument("--out", default="runs/calibration", metavar="DIR",
                   help="folder for store/, choices.csv, scores and figure (default runs/calibration)")
    p.add_argument("--executor", default="local", choices=["local", "pool"], help="where the runs execute")
    p.add_argument("--jobs", type=int, default=1, help="pool workers")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from biasprobe.studies import calibrate as cal
    from biasprobe.errors import BiasprobeError

    load_arch_modules(args)
    spec = cal.preset(args.preset, args.probe)
    base = dict(spec["base"])
    base.update(parse_kv(args.set, "--set"))
    if args.arch_kw:
        base["arch_kwargs"] = arch_kwargs(args)
    if args.image:
        if "image" not in get_probe(args.probe).fields():
            raise BiasprobeError(f"--image is the calibration image of a probe that fits an image (dip), not of "
                                 f"{args.probe}")
        base["image"] = args.image
    if args.threads is not None and args.threads < 1:
        raise BiasprobeError(f"--threads must be at least 1, got {args.threads}")
    wd_grid = args.wd_grid if args.wd_grid is not None else spec.get("wd_grid")
    out = out_dir(args.out)
    t0 = time.perf_counter()
    table = cal.calibrate(args.arch, args.probe, args.grid or spec["grid"], base, out / "store",
                          seeds=args.seeds or spec["seeds"], executor=args.executor, jobs=args.jobs,
                          progress=not args.quiet, wd_grid=wd_grid, device=args.device,
                          threads_per_job=args.threads)
    wall = time.perf_counter() - t0
    choices = cal.choose(table)
    choices["preset"] = args.preset
    choices["base"] = json.dumps(base, sort_keys=True)
    from biasprobe.runinfo import write_atomic

    scores_path = out / f"scores_{args.probe}.csv"
    if scores_path.exists():  # keep the other archs' rows of earlier calls; this call's archs are replaced
        import pandas as pd

        old = pd.read_csv(scores_path)
        table_all = pd.concat([old[~old.arch.isin(args.arch)], table], ignore_index=True)
    else:
        table_all = table
    write_atomic(scores_path, table_all.to_csv(index=False))
    merged = cal.save_choices(choices, out / "choices.csv")
    fig = cal.plot_curves(table_all, out / f"calibration_{args.probe}.png", merged[merged.probe == args.probe])
    cal.print_choices(choices)
    for _, r in choices[choices.at_edge].iterrows():
        print(f"note: {r.arch}'s best lr {r.lr:g} is at the edge of the grid ({r.grid}): the optimum may lie "
              f"outside it; widen the grid (--grid) to check")
    # one row per run (a DIP run holds all its seeds, and repeats its seconds on each seed's row)
    cost = table.drop_duplicates("run_id").groupby("arch").agg(
        runs=("run_id", "size"), cpu_s=("cpu_seconds", "sum"), wall_s=("wall_seconds", "sum"))
    print("cost of the calibration runs (whenever they ran):")
    print(cost.to_string(float_format=lambda v: f"{v:.0f}"))
    print(f"this call: {wall:.0f} s wall")
    print(f"wrote {out / 'choices.csv'}, {out / f'scores_{args.probe}.csv'}, {fig}")
