"""`biasprobe dip`: fit a generator to one corrupted image (Deep Image Prior) and write one run dir per seed."""

from __future__ import annotations

import argparse

from biasprobe.cli.commands import (add_arch_args, add_device_arg, arch_kwargs, load_arch_modules, number_or_calibrated, out_dir,
                                parse_kv)


def add_parser(sub) -> None:
    p = sub.add_parser("dip", help="Deep Image Prior fit of one architecture (generative probe)",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arch_args(p)
    p.add_argument("--task", default="denoise", help="denoise, inpaint, sr, fit, noise, jpeg, blur, demosaic, deepinv")
    p.add_argument("--image", default="astronaut", help="image path or built-in name (skimage samples, DIP images)")
    p.add_argument("--size", type=int, default=128, help="resize short side to SIZE and centre-crop; 0 keeps size")
    p.add_argument("--sigma", type=float, help="denoise/blur: noise std on the 0-255 scale")
    p.add_argument("--mask", help="inpaint: mask file or built-in name, or random / block / text")
    p.add_argument("--drop", type=float, help="inpaint with --mask random: share of pixels dropped")
    p.add_argument("--factor", type=int, help="sr: downsampling factor (2, 4, 8)")
    p.add_argument("--task-param", nargs="*", default=[], metavar="KEY=VALUE", help="other task parameters")
    p.add_argument("--setting", default="dip", choices=["dip", "study"],
                   help="dip: Ulyanov 2018 (depth 32, lr 0.01, reg-noise 1/30, 3000 it); "
                        "study: transformer study (depth 3, lr 1e-4, no reg-noise, 5000 it)")
    p.add_argument("--iters", type=int, help="iterations (default from --setting)")
    p.add_argument("--lr", type=number_or_calibrated, help="Adam learning rate (default from --setting), or calibrated: the lr "
                                             "calibrated for this arch (biasprobe calibrate --probe dip)")
    p.add_argument("--calibration", default="runs/calibration/choices.csv", metavar="FILE",
                   help="choices.csv that --lr calibrated reads")
    p.add_argument("--input-depth", type=int, help="input channels (default from --setting)")
    p.add_argument("--input-kind", default="noise", choices=["noise", "meshgrid"])
    p.add_argument("--reg-noise-std", type=float, help="input perturbation std (default from --setting)")
    p.add_argument("--stop", default="fixed", choices=["fixed", "peak"],
                   help="fixed: run --iters steps; peak: stop --patience steps after both the psnr_gt peak and the "
                        "gap crossing (psnr_gt < psnr_obs), --iters being the cap")
    p.add_argument("--patience", type=int, default=300,
                   help="steps the peak (and the gap crossing) must lie before the stop to count as reached")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", help="several seeds, fitted together as one batch")
    p.add_argument("--no-spectral", action="store_true", help="skip FBC / grid-energy measures at log steps")
    p.add_argument("--eval-mode", action="store_true", help="BatchNorm/dropout in eval mode (DIP uses train mode)")
    p.add_argument("--no-backtrack", action="store_true", help="disable the divergence guard")
    p.add_argument("--amp", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--batching", default="auto", choices=["auto", "vmap", "loop"],
                   help="how a batch of seeds runs: auto = loop on CPU, vmap on GPU (benchmarks/bench_dip.py)")
    p.add_argument("--seed-threads", type=int, metavar="N",
                   help="CPU: fit the seeds in N groups side by side, sharing the torch threads (default: the "
                        "torch thread count, one thread per group; 1 = one batch on all threads)")
    add_device_arg(p)
    p.add_argument("--out", default="runs", help="output folder: one sub-folder per seed, named by arch, task, "
                                                 "image, seed and a hash of the config (never overwritten)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def resolve_lr(args) -> tuple:
    """(lr or None, lr_source) by the one resolver (``probes.base.resolve_lr``): ``calibrated:FILE`` for --lr calibrated,
    ``given`` for --lr X, ``setting:NAME`` (None: the setting's lr) else."""
    from biasprobe.probes.base import resolve_lr as resolve
    from biasprobe.probes.dip.probe import DIPProbe

    def calibrated(arch):
        from biasprobe.studies.calibrate import load_choices, lookup_lr

        return lookup_lr(load_choices(args.calibration), arch, DIPProbe.name)

    return resolve(args.lr, args.arch, calibrated, calibrated_source=f"calibrated:{args.calibration}",
                   default_source=f"setting:{args.setting}")


def config_from_args(args, lr: float | None = None):
    from biasprobe.probes.dip import DIPConfig

    task_params = parse_kv(args.task_param, "--task-param")
    for key in ("sigma", "mask", "drop", "factor"):
        if getattr(args, key) is not None:
            task_params[key] = getattr(args, key)
    return DIPConfig(
        arch=args.arch, image=args.image, task=args.task, task_params=task_params,
        arch_kwargs=arch_kwargs(args), size=args.size or None, setting=args.setting,
        input_depth=args.input_depth, input_kind=args.input_kind, lr=lr,
        reg_noise_std=args.reg_noise_std,
        iters=args.iters, stop=args.stop, patience=args.patience, log_every=args.log_every,
        seeds=args.seeds or [args.seed],
        backtrack_db=0.0 if args.no_backtrack else 5.0, train_mode=not args.eval_mode,
        spectral=not args.no_spectral, amp=args.amp, batching=args.batching, device=args.device,
    )


def run(args) -> None:
    from biasprobe.probes.dip import check_new, run_dip, save_result

    from biasprobe.preflight import check_dip_memory, check_finite, check_seed

    load_arch_modules(args)
    out = out_dir(args.out)
    for seed in args.seeds or [args.seed]:
        check_seed(seed, "--seeds" if args.seeds else "--seed")
    for flag in ("sigma", "drop", "lr", "reg_noise_std"):
        check_finite(getattr(args, flag), "--" + flag.replace("_", "-"))
    lr, lr_source = resolve_lr(args)  # --lr calibrated reads the choices file once
    cfg = config_from_args(args, lr)
    check_new(cfg.resolved(), out)  # before the fit: an existing run dir is refused, not overwritten
    check_dip_memory(cfg.resolved())  # a size that cannot fit is refused with the estimate, not OOM-killed
    result = run_dip(cfg, progress=not args.quiet, seed_threads=args.seed_threads)
    result.summary["lr_source"] = lr_source  # summary.json of each seed records where the lr came from
    dirs = save_result(result, out)
    print(f"lr {result.config.lr:g} ({lr_source})")
    cols = [c for c in ("seed", "baseline_psnr", "max_psnr_gt", "max_psnr_gt_step", "peak_reached", "stop_step",
                        "final_psnr_gt", "final_psnr_gt_ema", "gap_negative_step", "es_step", "es_psnr_gt",
                        "backtracks", "failed", "sec_per_step") if c in result.summary]
    print(result.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for d in dirs:
        print(f"wrote {d}")
