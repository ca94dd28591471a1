"""What a zoo preset will cost, measured before it runs: each generator's DIP step time at the preset's size (one
seed, one torch thread, the preset's setting and lr), times the steps its fits are planned to take, plus the
classifiers (training images per second measured on a short run), summed in core-minutes.

    python benchmarks/zoo_cost.py --preset zoo [--steps 40] [--out reports/zoo-cost.csv]

Planned steps per fit (stated, from the standard studies): a fit that stops after its peak alone (no gap claim
reads it) takes about ``--peak-steps`` (default 1,800: peaks came at steps 200-1,600 at lr 1e-4, plus 300); a fit
that waits for its gap crossing takes ``--gap-steps`` (default 2,500), and a T+kc generator, whose gap stayed
positive to the cap in 4 of 6 standard fits, the cap. Calibration fits (when the preset calibrates DIP lrs) take
``--peak-steps`` each.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch


def step_time(arch: str, cfg_kw: dict, steps: int) -> float:
    """Seconds per DIP step of one seed on one thread (the first 5 steps, warm-up, left out)."""
    from biasprobe.probes.dip import DIPConfig, run_dip

    cfg = DIPConfig(arch=arch, seeds=[0], iters=5, stop="fixed", log_every=1000, **cfg_kw)
    run_dip(cfg, progress=False)  # warm-up: build, first allocations
    cfg.iters = steps
    t = time.perf_counter()
    run_dip(cfg, progress=False)
    return (time.perf_counter() - t) / steps


def clf_rate(arch: str, c, steps: int) -> float:
    """Training images per second of a classifier (one thread): two runs, of 2 and of 2 + ``steps`` steps, so the
    data loading and the model build every run pays are left out (the difference is the steps alone)."""
    from biasprobe.probes.classify.train import ClassifyConfig, run_classify

    took = []
    for n in (2, 2 + steps):
        cfg = ClassifyConfig(arch=arch, n_train=c.fixed_n, steps=n, batch_size=c.batch_size, seed=0,
                             measures=False, eval_every_steps=n, arch_kwargs=dict(c.arch_kwargs.get(arch, {})))
        t = time.perf_counter()
        run_classify(cfg, progress=False)
        took.append(time.perf_counter() - t)
    return steps * c.batch_size / max(took[1] - took[0], 1e-9)


def calibration_cost(p, rows: list[dict], peak_steps: int) -> dict | None:
    """The DIP calibration's fits (grid points x calibrated generators, each to its peak), from the generators'
    measured step times."""
    from biasprobe.studies import calibrate
    from biasprobe.studies.runner import calibrated_archs

    if not p.calibration.enabled:
        return None
    archs = calibrated_archs(p, "dip", p.dip)
    grid = calibrate.preset(p.calibration.preset, "dip")["grid"]
    sec = {r["arch"]: r["sec_per_step"] for r in rows if r["probe"] == "dip"}
    if not archs or not all(x in sec for x in archs):
        return None
    return dict(arch=f"{len(archs)} generators x {len(grid)} lrs", probe="calibration (dip)", sec_per_step=float("nan"),
                planned_steps=peak_steps, fits=len(archs) * len(grid),
                core_min=round(sum(sec[x] for x in archs) * len(grid) * peak_steps / 60, 1))


def main(argv=None) -> None:
    from biasprobe.probes.base import per_arch as _per_arch
    from biasprobe.probes.dip.plan import dip_configs
    from biasprobe.studies.runner import load_preset
    from biasprobe.studies import zoo

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="zoo")
    ap.add_argument("--steps", type=int, default=40, help="timed DIP steps per generator")
    ap.add_argument("--clf-steps", type=int, default=10, help="timed classifier steps per architecture")
    ap.add_argument("--probes", nargs="+", default=["dip", "classify"], help="which probes to measure")
    ap.add_argument("--peak-steps", type=int, default=1800)
    ap.add_argument("--gap-steps", type=int, default=2500)
    ap.add_argument("--out", default=None, help="CSV of the per-architecture costs")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    p = zoo.prepare(load_preset(a.preset))
    runs = dip_configs(p, {x: 1e-4 for x in p.archs + p.dip.extra_archs})
    per_arch = pd.Series([r["config"]["arch"] for r in runs]).value_counts()
    rows = []
    for arch in p.archs + p.dip.extra_archs if "dip" in a.probes else []:
        ex = {k: _per_arch(v, arch, k) for k, v in p.dip.extra.items()}
        cap = _per_arch(p.dip.iters, arch, "dip.iters")
        kw = dict(image="astronaut", task_params={"sigma": 25}, size=p.dip.size, setting=p.dip.setting,
                  arch_kwargs=dict(p.dip.arch_kwargs.get(arch, {})))
        sec = step_time(arch, kw, a.steps)
        waits = ex.get("stop_on_gap", True)
        steps = cap if waits and "+" in arch and arch.rsplit("+", 1)[-1].endswith("c") else (
            a.gap_steps if waits else a.peak_steps)
        n_fits = int(per_arch.get(arch, 0))
        rows.append(dict(arch=arch, probe="dip", sec_per_step=round(sec, 4), planned_steps=min(steps, cap),
                         fits=n_fits, core_min=round(sec * min(steps, cap) * n_fits / 60, 1)))
        print(rows[-1], flush=True)
    c = p.classify
    if c is not None and "classify" in a.probes:
        for arch in p.archs:
            rate = clf_rate(arch, c, a.clf_steps)
            n = len(c.seeds) + len(getattr(c, "double_seeds", []))
            steps = c.steps * n + c.steps * len(getattr(c, "double_seeds", []))  # the 2x runs take twice
            rows.append(dict(arch=arch, probe="classify", sec_per_step=round(c.batch_size / rate, 4),
                             planned_steps=c.steps, fits=n,
                             core_min=round(steps * c.batch_size / rate / 60 * 1.3, 1)))  # +30%: evals, measures
            print(rows[-1], flush=True)
    cal = calibration_cost(p, rows, a.peak_steps)
    if cal:
        rows.append(cal)
    t = pd.DataFrame(rows)
    print(t.groupby("probe").core_min.sum().to_string(), f"\ntotal core-minutes: {t.core_min.sum():.0f}")
    if a.out:
        t.to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
