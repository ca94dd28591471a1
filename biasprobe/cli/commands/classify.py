"""``biasprobe classify``: the predictive probe, small-data CIFAR-10 classification from random init.

Runs every (arch, n_train, seed) of the grid in turn; each writes ``OUT/<arch>-n<N>-s<seed>-<hash>/``
(config.json, epochs.parquet or with --steps steps.parquet, summary.json, learning_curve.png). A grid also
writes ``OUT/runs.csv`` (one row per run: its summary), and, with several --n-train, ``OUT/sample_efficiency.csv`` (arch, auc, ci_low, ci_high:
final accuracy against log N, see ``biasprobe.probes.classify.measures.sample_efficiency_auc``).
"""

from __future__ import annotations

import argparse

from biasprobe.cli.commands import add_arch_args, add_device_arg, arch_kwargs, load_arch_modules, number_or_calibrated, out_dir


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("classify", help="train classifiers on a small CIFAR-10 subset (predictive probe)",
                              description=__doc__.splitlines()[0])
    add_arch_args(p, multiple=True)
    p.add_argument("--n-train", nargs="+", type=int, default=[1000], metavar="N",
                   help="training images, class-balanced (several: a sample-efficiency grid); default 1000")
    p.add_argument("--seed", "--seeds", dest="seeds", nargs="+", type=int, default=[0], metavar="SEED",
                   help="seed(s): subset, init, augmentation order; default 0")
    p.add_argument("--steps", type=int, default=None,
                   help="budget in AdamW updates, the same for every arch and N (what studies should use)")
    p.add_argument("--epochs", type=int, default=None, help="budget in passes over the subset (default 30; "
                                                            "not with --steps)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=number_or_calibrated, default=1e-3,
                   help="AdamW peak learning rate (default 1e-3), or calibrated: each arch's calibrated lr "
                        "(biasprobe calibrate --probe classify)")
    p.add_argument("--weight-decay", type=number_or_calibrated, default=0.05,
                   help="default 0.05, or calibrated: the weight decay calibrated with the lr (if a wd grid was used)")
    p.add_argument("--calibration", default="runs/calibration/choices.csv", metavar="FILE",
                   help="choices.csv that --lr calibrated / --weight-decay calibrated read")
    p.add_argument("--warmup-epochs", type=float, default=2.0, help="linear warm-up, then cosine decay")
    p.add_argument("--warmup-frac", type=float, default=0.05,
                   help="with --steps: warm-up over this fraction of the steps (default 0.05)")
    p.add_argument("--eval-every-steps", type=int, default=None, metavar="K",
                   help="with --steps: evaluate every K steps (default steps // 10), at 90%% and at the end")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random crop / flip")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="ImageFolder with train/ and test/ (default: shared/data/cifar10-subset next to the repo)")
    p.add_argument("--data-root", default=None, metavar="DIR", help="torchvision CIFAR-10 root instead of --data")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10 into --data-root")
    p.add_argument("--eval-split", choices=("test", "val"), default="test",
                   help="evaluate on the test split, or on --val-size images held out of the training pool")
    p.add_argument("--val-size", type=int, default=500)
    p.add_argument("--weights", default=None, metavar="FILE", help="start from this local state_dict checkpoint")
    p.add_argument("--attr-samples", type=int, default=64, help="eval images for attribution maps (0: skip)")
    p.add_argument("--out", default="runs", metavar="DIR", help="parent folder of the run folders (default runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (on a busy shared machine 1 can be several times faster than 2)")
    add_device_arg(p)
    p.set_defaults(run=run)


def resolve_hparams(args, arch: str) -> tuple[float, float, str]:
    """(lr, weight decay, lr_source) for one arch: ``calibrated:FILE`` when --lr calibrated, else ``given``."""
    from biasprobe.probes.base import resolve_lr
    from biasprobe.probes.classify.probe import ClassifyProbe

    wd, found = args.weight_decay, {}
    if "calibrated" in (args.lr, args.weight_decay):
        from biasprobe.studies.calibrate import load_choices, lookup
        from biasprobe.errors import BiasprobeError

        found = lookup(load_choices(args.calibration), arch, ClassifyProbe.name)
        if wd == "calibrated":
            if found["weight_decay"] is None:
                raise BiasprobeError(f"no calibrated weight decay for {arch}/classify in {args.calibration}; "
                                     f"give --weight-decay")
            wd = found["weight_decay"]
    lr, source = resolve_lr(args.lr, arch, lambda a: found["lr"], calibrated_source=f"calibrated:{args.calibration}")
    return float(lr), float(wd), source


def run(args: argparse.Namespace) -> None:
    import pandas as pd

    from biasprobe import runinfo
    from biasprobe.probes.classify.train import ClassifyConfig, run_classify
    from biasprobe.errors import BiasprobeError
    from biasprobe.probes.classify.measures import sample_efficiency_auc

    load_arch_modules(args)
    if args.threads is not None:
        if args.threads < 1:
            raise BiasprobeError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.steps is not None and args.epochs is not None:
        raise BiasprobeError("give --steps or --epochs, not both")
    from biasprobe.preflight import check_finite, check_seed

    for seed in args.seeds:
        check_seed(seed, "--seed")
    for flag in ("lr", "weight_decay", "warmup_epochs", "warmup_frac", "label_smoothing"):
        check_finite(getattr(args, flag), "--" + flag.replace("_", "-"))
    arch_kw = arch_kwargs(args)  # unknown names and bad kwargs fail before any training
    out = out_dir(args.out)
    hparams = {arch: resolve_hparams(args, arch) for arch in args.arch}  # a missing calibration fails first
    configs = [
        ClassifyConfig(arch=arch, n_train=n, steps=args.steps, epochs=30 if args.epochs is None else args.epochs,
                       batch_size=args.batch_size, lr=hparams[arch][0],
                       weight_decay=hparams[arch][1], warmup_epochs=args.warmup_epochs, warmup_frac=args.warmup_frac,
                       eval_every_steps=args.eval_every_steps,
                       label_smoothing=args.label_smoothing, augment=args.augment, seed=seed, data=args.data,
                       data_root=args.data_root, download=args.download, device=args.device,
                       eval_split=args.eval_split, val_size=args.val_size, weights=args.weights,
                       arch_kwargs=dict(arch_kw), attr_samples=args.attr_samples)
        for arch in args.arch for n in args.n_train for seed in args.seeds
    ]
    for cfg in configs:
        cfg.validate()
    names = [cfg.run_name() for cfg in configs]
    for name in names:  # before any training: nothing a user ran is overwritten
        if (out / name).exists():
            raise BiasprobeError(f"{out / name} exists: this run ran already; remove that folder or use another "
                                 "--out")
    if len(set(names)) < len(names):
        raise BiasprobeError("the grid names the same run twice (repeated --arch, --n-train or --seed)")
    summaries = []
    for i, cfg in enumerate(configs, 1):
        run_dir = out / cfg.run_name()
        # the run records which lr it used and where from (in summary.json, written with the run folder)
        _, s = run_classify(cfg, out_dir=run_dir, progress=not args.quiet,
                            extra_summary=dict(lr=cfg.lr, weight_decay=cfg.weight_decay,
                                               lr_source=hparams[cfg.arch][2]))
        summaries.append(s)
        ev = cfg.eval_split
        plateau = (f", {s['steps_run']} steps, last-tenth gain {s['plateau_gain']:+.4f}"
                   f"{'' if s['plateaued'] else ' (NOT plateaued)'}" if cfg.steps is not None else "")
        print(f"[{i}/{len(configs)}] {cfg.run_name()}: lr {cfg.lr:g} ({s['lr_source']}), {ev} acc {s[f'final_{ev}_acc']:.4f} "
              f"(best {s[f'best_{ev}_acc']:.4f}){plateau}, ECE {s['ece']:.4f}, "
              f"shift consistency {s['shift_consistency_circular']:.3f}/{s['shift_consistency_padded']:.3f}, "
              f"{s['train_images_per_s']:.0f} img/s, {s['wall_seconds']:.0f}s -> {run_dir}", flush=True)
    if len(configs) > 1:
        table = pd.DataFrame(summaries)
        runinfo.write_atomic(out / "runs.csv", table.to_csv(index=False))
        print(f"runs table: {out / 'runs.csv'}")
        if len(set(args.n_train)) > 1:
            ev = args.eval_split
            auc = sample_efficiency_auc(table, acc=f"final_{ev}_acc")
            runinfo.write_atomic(out / "sample_efficiency.csv", auc.to_csv(index=False))
            print(auc.to_string(index=False))
            print(f"sample efficiency: {out / 'sample_efficiency.csv'}")
