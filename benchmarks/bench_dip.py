"""Benchmark of the DIP engine against a straightforward DIP loop written here, on this machine, in one run.

The reference (:func:`reference_fit`) is the loop of the original DIP notebooks: one seed at a time, batch 1, a
plain ``nn.Module`` and ``torch.optim.Adam``, reg-noise on the input, the EMA of the output, and the PSNR against
the clean image pulled to the host with ``.item()`` every step. biasprobe's :func:`run_dip` fits the same seeds
(same nets, inputs, observation, setting) as one seed batch, with its divergence guard, ES-WMV and logging on.
Throughput is image-steps per second (seeds x steps / loop seconds, set-up excluded for both).

Sections (each a table in reports/bench_dip.md):

1. ratios: biasprobe / reference, 4 seeds at 128 x 128, skipnet, vit, swin, vit+3c (float32), and skipnet with
   ``amp="bf16"`` autocast against the float32 reference. Each float32 round also times :func:`bare_fit`, the
   ceiling: nothing but reg-noise, forward, backward and a fused Adam step, the seeds on threads as biasprobe's
   groups run (bare_ratio: the most this design reaches here). Rounds interleave the contenders, each going first
   in turn, and the table gives medians (the machine is shared: the load average is reported).
2. bf16 accuracy: max |psnr_gt(bf16) - psnr_gt(fp32)| over every step of one skipnet seed, next to the same for
   float32 on another thread count (the rounding floor).
3. machine limit: float32 GFLOP/s of a large ``torch.mm``, and each architecture's achieved GFLOP/s
   (FLOPs of one batch-1 forward + backward counted with ``torch.utils.flop_counter.FlopCounterMode``, times
   image-steps/s), as a percentage of the matmul rate.
4. logging overhead: biasprobe step time with ``log_every=1`` vs ``log_every=50``.
5. peak memory: skipnet at 512 x 512, one seed, a few steps, peak RSS of a fresh process.
6. scaling: step time vs image size (64-512, one seed) and vs seeds (1-8), table and reports/bench_dip_scaling.png.
7. ``--options`` (instead of 1-6): each performance option (seed groups on threads, batching vmap/loop,
   channels_last, guard, torch threads, bf16) against the default, and torch.compile's compile time and step
   time; reports/bench_dip_options.md.

    python benchmarks/bench_dip.py [--quick] [--options] [--threads N] [--out reports/bench_dip.md]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from biasprobe.probes.dip import loop as diploop  # the loop looks up channels_last in its own namespace
from biasprobe import seeding
from biasprobe.probes.dip import tasks
from biasprobe.probes.dip import DIPConfig, make_input, prepare_image, run_dip
from biasprobe.archs.factory import create_generator

ARCHS = ["skipnet", "vit", "swin", "vit+3c"]


# ----------------------------------------------------------------------------------------------------------------
# The reference: DIP's notebook loop


def plain_seeds(arch: str, seeds: list[int], size: int, setting: str = "dip", arch_kwargs: dict | None = None):
    """The resolved config and, per seed, what a plain loop needs: a plain ``nn.Module`` in training mode
    (initialised from the seed's init stream, as biasprobe does), its input z and the task's observation."""
    arch_kwargs = arch_kwargs or {}
    cfg = DIPConfig(arch=arch, size=size, seeds=seeds, setting=setting, device="cpu",
                    arch_kwargs=arch_kwargs).resolved()
    clean, params = prepare_image(cfg)
    hw = tuple(clean.shape[-2:])
    out = []
    for seed in seeds:
        with seeding.manual_seed(seed, "init"):
            net = create_generator(arch, in_chans=cfg.input_depth, out_chans=3, img_size=hw, **arch_kwargs).train()
        out.append((net, make_input(cfg.input_kind, cfg.input_depth, hw, seed),
                    tasks.make_task(cfg.task, clean, seed, **params)))
    return cfg, out


def reference_fit(arch: str, seeds: list[int], size: int, iters: int, setting: str = "dip",
                  arch_kwargs: dict | None = None) -> dict:
    """Fit each seed in turn, batch 1, as the DIP notebooks do; return loop seconds and per-step psnr_gt."""
    cfg, plain = plain_seeds(arch, seeds, size, setting, arch_kwargs)
    seconds, curves = 0.0, {}
    for seed, (net, net_input, obs) in zip(seeds, plain):
        noise = net_input.clone()
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        out_avg, psnrs = None, []
        t0 = time.perf_counter()
        for _ in range(iters):
            inp = net_input + noise.normal_() * cfg.reg_noise_std if cfg.reg_noise_std > 0 else net_input
            out = net(inp)
            loss = torch.nn.functional.mse_loss(out, obs.observed)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                out_avg = out.detach() if out_avg is None else out_avg * cfg.ema_weight + out.detach() * (
                    1 - cfg.ema_weight)
                psnrs.append((-10 * torch.log10(((out.clamp(0, 1) - obs.clean) ** 2).mean())).item())
        seconds += time.perf_counter() - t0
        curves[seed] = psnrs
    return {"seconds": seconds, "image_steps_per_s": len(seeds) * iters / seconds, "psnr_gt": curves}


def bare_fit(arch: str, seeds: list[int], size: int, iters: int, groups: int | None = None,
             arch_kwargs: dict | None = None) -> dict:
    """The ceiling: only what every DIP step must do (reg-noise, forward, MSE, backward, fused Adam), with no
    metric, guard, EMA or log, each seed a batch-1 net, the seeds split over ``groups`` threads (default: the torch
    threads) sharing the torch threads, as biasprobe's seed groups run. Loop seconds = first start to last end."""
    import threading

    cfg, plain = plain_seeds(arch, seeds, size, arch_kwargs=arch_kwargs)
    work = [(net, z, obs.observed, torch.optim.Adam(net.parameters(), lr=cfg.lr, fused=True))
            for net, z, obs in plain]
    spans, errors, before = [], [], torch.get_num_threads()
    groups = min(groups or before, len(seeds))

    def run(chunk):
        try:
            torch.set_num_threads(max(1, before // groups))
            t0 = time.perf_counter()
            for _ in range(iters):
                for net, z, y, opt in chunk:
                    out = net(z + torch.randn_like(z) * cfg.reg_noise_std)
                    loss = torch.nn.functional.mse_loss(out, y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            spans.append((t0, time.perf_counter()))
        except BaseException as e:  # a thread's failure must fail the measurement, not inflate it
            errors.append(e)

    threads = [threading.Thread(target=run, args=(work[g::groups],)) for g in range(groups)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        torch.set_num_threads(before)
    if errors:
        raise errors[0]
    seconds = max(b for _, b in spans) - min(a for a, _ in spans)
    return {"seconds": seconds, "image_steps_per_s": len(seeds) * iters / seconds}


def biasprobe_fit(arch: str, seeds: list[int], size: int, iters: int, seed_threads: int | None = None,
                  **kw) -> dict:
    """biasprobe's run_dip on the seeds, as a user calls it (seed groups on threads: auto = the torch threads)."""
    cfg = DIPConfig(arch=arch, size=size, seeds=seeds, iters=iters, device="cpu", **kw)
    r = run_dip(cfg, progress=False, seed_threads=seed_threads)
    seconds = float(r.summary.sec_per_step.iloc[0]) * iters
    return {"seconds": seconds, "image_steps_per_s": len(seeds) * iters / seconds, "result": r,
            "seed_threads": r.meta["seed_threads"]}


# ----------------------------------------------------------------------------------------------------------------
# Measurements


def machine_info() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "torch": torch.__version__, "python": platform.python_version(), "load_avg": os.getloadavg()}


def matmul_gflops(n: int = 4096, reps: int = 3) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def step_flops(arch: str, size: int, setting: str = "dip") -> float:
    """FLOPs of one batch-1 training step's forward + backward (the Adam update is not counted)."""
    cfg = DIPConfig(arch=arch, size=size, setting=setting).resolved()
    torch.manual_seed(0)
    net = create_generator(arch, in_chans=cfg.input_depth, out_chans=3, img_size=(size, size)).train()
    z = make_input(cfg.input_kind, cfg.input_depth, (size, size), 0)
    with FlopCounterMode(display=False) as counter:
        net(z).mean().backward()
    return float(counter.get_total_flops())


def ratio_rows(archs, seeds, size, iters, rounds, amp_archs) -> list[dict]:
    """Interleaved rounds of reference and biasprobe; one row per (arch, amp, round)."""
    rows = []
    for arch in archs:
        n = iters[arch] if isinstance(iters, dict) else iters
        for amp in ["fp32"] + (["bf16"] if arch in amp_archs else []):
            for rnd in range(rounds):
                order = ["ref", "bp", "bare"] if amp == "fp32" else ["ref", "bp"]
                order = order[rnd % len(order):] + order[:rnd % len(order)]  # each goes first in turn
                got = {"bare": math.nan}
                for who in order:
                    if who == "ref":
                        got[who] = reference_fit(arch, seeds, size, n)["image_steps_per_s"]
                    elif who == "bare":
                        got[who] = bare_fit(arch, seeds, size, n)["image_steps_per_s"]
                    else:
                        bp = biasprobe_fit(arch, seeds, size, n, amp=amp)
                        got[who], seed_threads = bp["image_steps_per_s"], bp["seed_threads"]
                rows.append({"arch": arch, "amp": amp, "round": rnd, "seed_threads": seed_threads,
                             "reference_ips": got["ref"], "biasprobe_ips": got["bp"], "bare_ips": got["bare"],
                             "ratio": got["bp"] / got["ref"], "bare_ratio": got["bare"] / got["ref"],
                             "load_avg_1min": os.getloadavg()[0]})
                print(rows[-1], flush=True)
    return rows


def summarise_ratios(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    return df.groupby(["arch", "amp"], sort=False).agg(
        reference_image_steps_per_s=("reference_ips", "median"), biasprobe_image_steps_per_s=("biasprobe_ips", "median"),
        ratio_median=("ratio", "median"), ratio_min=("ratio", "min"), ratio_max=("ratio", "max"),
        bare_ratio_median=("bare_ratio", "median"), rounds=("ratio", "size")).reset_index()


def bf16_accuracy(size: int, iters: int) -> list[dict]:
    """Same seed, same everything, psnr_gt and psnr_gt_ema logged every step: bf16 autocast against float32, and,
    as the yardstick, float32 against float32 on another torch thread count (the same maths summed in another
    order). DIP at lr 0.01 amplifies any rounding difference, so the second row is the floor of what "the same
    curve" can mean."""
    kw = dict(arch="skipnet", size=size, seeds=[0], iters=iters, log_every=1, spectral=False, device="cpu")
    threads = torch.get_num_threads()
    other = 1 if threads > 1 else 2
    runs = {}
    try:
        for name, amp, n in (("fp32", "fp32", threads), ("bf16", "bf16", threads),
                             (f"fp32@{other}t", "fp32", other)):
            torch.set_num_threads(n)
            runs[name] = run_dip(DIPConfig(amp=amp, **kw), progress=False, seed_threads=1).curves.pivot(
                index="step", columns="metric", values="value")
    finally:
        torch.set_num_threads(threads)
    rows = []
    for name in ("bf16", f"fp32@{other}t"):
        for metric in ("psnr_gt", "psnr_gt_ema"):
            diff = (runs[name][metric] - runs["fp32"][metric]).abs()
            rows.append({"compared": f"{name} vs fp32@{threads}t", "metric": metric, "size": size, "iters": iters,
                         "max_abs_diff_db": float(diff.max()), "mean_abs_diff_db": float(diff.mean()),
                         "max_abs_diff_db_last_half": float(diff.iloc[iters // 2:].max()),
                         "final_fp32": float(runs["fp32"][metric].iloc[-1]),
                         "final_compared": float(runs[name][metric].iloc[-1])})
    return rows


def logging_overhead(arch: str, seeds, size: int, iters: int, rounds: int, spectral: bool) -> dict:
    """Step time logging every step vs every 50 steps. ``spectral=False``: the logged scalars only (psnr_obs,
    psnr_gt, psnr_gt_ema, gap, ssim_gt, loss, backtracks: computed on the device, one host read per log step);
    ``True`` adds the spectral measures (FFTs of every seed's output on the host at each log step)."""
    per = {1: [], 50: []}
    for rnd in range(rounds):
        for every in ((1, 50) if rnd % 2 == 0 else (50, 1)):
            per[every].append(biasprobe_fit(arch, seeds, size, iters, log_every=every,
                                            spectral=spectral)["seconds"] / iters)
    s1, s50 = statistics.median(per[1]), statistics.median(per[50])
    return {"arch": arch, "seeds": len(seeds), "size": size, "spectral": spectral, "sec_per_step_log1": s1,
            "sec_per_step_log50": s50, "overhead_pct": 100 * (s1 / s50 - 1)}


_MEM_CODE = """
import json, resource, sys, torch
torch.set_num_threads({threads})
from biasprobe.probes.dip import DIPConfig, run_dip
r = run_dip(DIPConfig(arch="skipnet", size={size}, seeds=[0], iters={iters}, device="cpu", amp="{amp}"), progress=False)
print(json.dumps({{"sec_per_step": float(r.summary.sec_per_step.iloc[0]),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def peak_memory(size: int, iters: int, amp: str = "fp32") -> dict:
    """Peak RSS of a fresh process running one skipnet seed (Linux ru_maxrss is in KiB)."""
    code = _MEM_CODE.format(threads=torch.get_num_threads(), size=size, iters=iters, amp=amp)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import json

    return {"arch": "skipnet", "size": size, "amp": amp, "iters": iters, **json.loads(out.stdout.strip().splitlines()[-1])}


def scaling(arch: str, sizes, seed_counts, size_for_seeds: int, iters: int) -> list[dict]:
    rows = []
    for size in sizes:
        r = biasprobe_fit(arch, [0], size, iters)
        rows.append({"arch": arch, "vary": "size", "size": size, "seeds": 1, "sec_per_step": r["seconds"] / iters,
                     "image_steps_per_s": r["image_steps_per_s"]})
        print(rows[-1], flush=True)
    for k in seed_counts:
        r = biasprobe_fit(arch, list(range(k)), size_for_seeds, iters)
        rows.append({"arch": arch, "vary": "seeds", "size": size_for_seeds, "seeds": k,
                     "sec_per_step": r["seconds"] / iters, "image_steps_per_s": r["image_steps_per_s"]})
        print(rows[-1], flush=True)
    return rows


def plot_scaling(df: pd.DataFrame, path: Path) -> None:
    from biasprobe.analysis import plots  # noqa: F401  (Agg backend)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for arch, d in df[df.vary == "size"].groupby("arch"):
        axes[0].plot(d["size"], d.sec_per_step, "o-", label=arch)
    sizes = sorted(int(v) for v in df[df.vary == "size"]["size"].unique())
    axes[0].set_xscale("log", base=2)
    axes[0].set(yscale="log", xlabel="image size (px, one seed)", ylabel="seconds per step")
    axes[0].set_xticks(sizes, [str(v) for v in sizes])
    axes[0].minorticks_off()
    for arch, d in df[df.vary == "seeds"].groupby("arch"):
        axes[1].plot(d.seeds, d.image_steps_per_s, "o-", label=f"{arch} ({int(d['size'].iloc[0])} px)")
    axes[1].set(xlabel="seeds in the batch", ylabel="image-steps per second")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def options(arch: str, seeds, size: int, iters: int, rounds: int) -> list[dict]:
    """Each performance option on and off, interleaved; seconds per step of biasprobe (median over rounds)."""
    threads = torch.get_num_threads()
    other = 1 if threads > 1 else 2
    variants = {
        "default": {},
        "seed_threads=1 (one batch on all threads)": dict(seed_threads=1),
        "batching=vmap": dict(batching="vmap"),
        "batching=loop": dict(batching="loop"),
        "no guard": dict(backtrack_db=0.0),
        "channels_last flipped": "channels_last",
        "amp=bf16": dict(amp="bf16"),
        f"torch threads={other}": "threads",
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    original = diploop.channels_last
    for _ in range(rounds):
        for name, kw in variants.items():
            if kw == "channels_last":  # on where the default is off, off where it is on
                diploop.channels_last = lambda cfg, device: not original(cfg, device)
                kw = {}
            if kw == "threads":
                torch.set_num_threads(other)
                kw = {}
            try:
                times[name].append(biasprobe_fit(arch, seeds, size, iters, **kw)["seconds"] / iters)
            finally:
                diploop.channels_last = original
                torch.set_num_threads(threads)
    base = statistics.median(times["default"])
    return [{"arch": arch, "seeds": len(seeds), "size": size, "option": k, "sec_per_step": statistics.median(v),
             "vs_default": statistics.median(v) / base} for k, v in times.items()]


def compile_cost(arch: str, size: int, iters: int) -> dict:
    """torch.compile of a batch-1 net in the reference loop: compile (first step) seconds, then step time."""
    cfg = DIPConfig(arch=arch, size=size).resolved()
    torch.manual_seed(0)
    net = create_generator(arch, in_chans=cfg.input_depth, out_chans=3, img_size=(size, size)).train()
    z = make_input(cfg.input_kind, cfg.input_depth, (size, size), 0)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    res = {"arch": arch, "size": size}
    for name, model in (("eager", net), ("compiled", torch.compile(net))):
        t0 = time.perf_counter()
        model(z).mean().backward()
        opt.step()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(iters):
            opt.zero_grad()
            model(z).mean().backward()
            opt.step()
        res[f"{name}_first_step_s"] = first
        res[f"{name}_sec_per_step"] = (time.perf_counter() - t0) / iters
    return res


# ----------------------------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer steps (about a minute)")
    ap.add_argument("--options", action="store_true",
                    help="only measure each performance option and torch.compile; writes <out stem>_options.md")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a loaded shared machine 2 OpenMP threads fight other jobs for the "
                         "cores and time out by 10-50x; use the core count on an idle machine)")
    ap.add_argument("--archs", nargs="+", default=ARCHS)
    ap.add_argument("--out", default="reports/bench_dip.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    q = args.quick
    if args.options:
        return run_options(out.with_name(out.stem + "_options.md"), q)
    info = machine_info()
    print(info, flush=True)
    seeds = [0, 1, 2, 3]
    size = 64 if q else 128
    iters = {a: (3 if q else 4) if a == "skipnet" else (4 if q else 10) for a in args.archs}
    mm = matmul_gflops(2048 if q else 4096)
    print(f"matmul {mm:.1f} GFLOP/s", flush=True)

    ratio_raw = ratio_rows(args.archs, seeds, size, iters, rounds=1 if q else 2, amp_archs={"skipnet"})
    ratios = summarise_ratios(ratio_raw)
    acc = bf16_accuracy(size=64 if q else 128, iters=8 if q else 50) if "skipnet" in args.archs else None
    print(acc, flush=True)

    flops = []
    for arch in args.archs:
        f = step_flops(arch, size)
        for amp, r in ratios[ratios.arch == arch].set_index("amp").iterrows():
            flops.append({"arch": arch, "amp": amp, "gflop_per_image_step": f / 1e9,
                          "reference_gflops": f / 1e9 * r.reference_image_steps_per_s,
                          "biasprobe_gflops": f / 1e9 * r.biasprobe_image_steps_per_s})
    flops = pd.DataFrame(flops)
    flops["reference_pct_of_matmul"] = 100 * flops.reference_gflops / mm
    flops["biasprobe_pct_of_matmul"] = 100 * flops.biasprobe_gflops / mm

    cases = (("vit", seeds, size, 8 if q else 30), ("skipnet", [0], 64, 4 if q else 12))
    logging = pd.DataFrame([logging_overhead(a, s, px, n, rounds=1 if q else 4, spectral=spectral)
                            for a, s, px, n in cases for spectral in (False, True)])
    print(logging, flush=True)
    mem = pd.DataFrame([peak_memory(256 if q else 512, 2)])
    print(mem, flush=True)
    sizes = [64, 128, 256] if q else [64, 128, 256, 512]
    scale = scaling("skipnet", sizes, [1, 2, 4] if q else [1, 2, 4, 8], 64, 2)
    scale += scaling("vit", sizes, [1, 2, 4] if q else [1, 2, 4, 8], 128, 4 if q else 6)
    scale = pd.DataFrame(scale)
    plot_path = out.with_name(out.stem + "_scaling.png")
    plot_scaling(scale, plot_path)

    info["load_avg_end"] = os.getloadavg()
    info["bench_seconds"] = time.perf_counter() - t_start
    info["peak_rss_mb_bench"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_report(out, info, mm, ratios, pd.DataFrame(ratio_raw), acc, flops, logging, mem, scale, plot_path, q)
    print(ratios.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"wrote {out} in {info['bench_seconds']:.0f} s")


def markdown_table(df: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which is not a dependency)."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        if isinstance(v, tuple):
            return " ".join(cell(x) for x in v)
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def run_options(path: Path, quick: bool) -> None:
    """Each performance option against biasprobe's default, and torch.compile's cost, into their own report."""
    t0, load0 = time.perf_counter(), os.getloadavg()
    seeds = [0, 1, 2, 3]
    n = 1 if quick else 3
    opts = pd.DataFrame(options("skipnet", seeds, 64 if quick else 128, 2 if quick else 4, rounds=n)
                        + options("vit", seeds, 128, 4 if quick else 12, rounds=n)
                        + options("swin", seeds, 128, 4 if quick else 12, rounds=n))
    print(opts, flush=True)
    comp = pd.DataFrame([compile_cost("vit", 128, 4 if quick else 8)])
    print(comp, flush=True)
    path.write_text("\n".join([
        "# DIP engine: performance options (benchmarks/bench_dip.py --options)", "",
        f"{torch.get_num_threads()} torch thread(s); load average {tuple(round(v, 1) for v in load0)} -> "
        f"{tuple(round(v, 1) for v in os.getloadavg())}; {time.perf_counter() - t0:.0f} s. Seconds per step of "
        "the 4-seed batch, median over rounds; vs_default = time / default time (< 1: the option is faster).", "",
        markdown_table(opts), "", "torch.compile of a batch-1 vit (reference loop; first step includes compiling):",
        "", markdown_table(comp), ""]))
    print(f"wrote {path}")


def write_report(out, info, mm, ratios, raw, acc, flops, logging, mem, scale, plot_path, quick):
    fmt = markdown_table
    lines = [
        "# DIP engine benchmark (benchmarks/bench_dip.py)" + (" --quick" if quick else ""), "",
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} threads, "
        f"avx512_bf16={info['avx512_bf16']}, amx_bf16={info['amx_bf16']}. Load average (1/5/15 min) at start "
        f"{tuple(round(v, 1) for v in info['load_avg'])}, at end {tuple(round(v, 1) for v in info['load_avg_end'])} "
        f"(shared machine: compare ratios, not absolute numbers). Run time {info['bench_seconds']:.0f} s.", "",
        "## biasprobe / reference, image-steps per second (4 seeds, same run, interleaved rounds, medians)", "",
        "bare = the ceiling: the same seeds on the same threads with nothing but reg-noise, forward, backward and a "
        "fused Adam step (no guard, EMA, metrics, ES-WMV or logs); bare_ratio = bare / reference.", "",
        fmt(ratios), "", "Rounds:", "", fmt(raw), "",
    ]
    if acc:
        lines += ["## bf16 autocast vs float32 (skipnet, one seed, psnr_gt at every step)", "",
                  "The second pair of rows is float32 against float32 on another thread count: the rounding floor.",
                  "", fmt(pd.DataFrame(acc)), ""]
    lines += [f"## Machine limit: float32 matmul {mm:.1f} GFLOP/s", "",
              "FLOPs of one batch-1 forward + backward (FlopCounterMode), times image-steps/s. bf16 rows compare "
              "with the float32 matmul rate.", "", fmt(flops), "",
              "## Logging overhead (log_every=1 vs 50)", "",
              "spectral=False: the scalar metrics (computed on the device, one host read per log step); True: plus "
              "the spectral measures of every seed's output (host FFTs) at each log step.", "", fmt(logging), "",
              "## Peak memory (fresh process, peak RSS)", "", fmt(mem), "",
              "## Scaling (biasprobe run_dip, seconds per step of the whole seed batch)", "", fmt(scale), "",
              f"![scaling]({plot_path.name})", "",
              f"Performance options (seed threads, vmap/loop, channels_last, guard, threads, bf16, torch.compile): "
              f"{out.stem}_options.md (`--options`).", ""]
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
