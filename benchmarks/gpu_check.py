"""The prepared GPU check: run it whenever a GPU is lent (minutes at a time). In order, each step written to --out
as soon as it ends, so a run cut short keeps what it measured:

1. ``cuda_path.csv``: the CUDA path end to end: a DIP fit (vit, F16 at 128 px, the study setting, 300 steps) and a
   classifier (vit, N = 1000, 60 steps, no attribution measures) on the device, and the same DIP config for 30 steps
   on the CPU; the check is that the results are equal in kind (the same summary columns, finite PSNRs, the fit
   beating the noisy input on the device).
2. ``step_times.csv``: DIP seconds per step (one seed; warm-up left out) at 128 and 512 px for the standard study's
   architectures, the zoo's and the decoder ablation's generators; a failure (e.g. out of memory) is a row with its
   error.
3. ``zoo-gpu/``: the largest slice of the ``zoo-gpu`` preset that fits the time left of ``--budget-s``: the study
   runs in-process on the device into ``zoo-gpu/store`` and is stopped at the deadline (its finished runs are kept,
   a later call resumes them from the store brought back).

    python benchmarks/gpu_check.py --device cuda --out reports/gpu_check --budget-s 480

On the lent machine (no network; PyTorch, timm, pandas, scipy are there): ``bash benchmarks/gpu_check.sh`` (see
it). ``--device cpu --sizes 32 --archs vit --dip-steps 5 --no-zoo`` runs the same code path on a CPU in seconds
(the tests do).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pandas as pd


def cuda_path(device: str, dip_steps: int, size: int) -> pd.DataFrame:
    """A DIP fit and a classifier on ``device`` and the DIP config on the CPU: one row per run, equal in kind."""
    from biasprobe.probes.classify.train import ClassifyConfig, run_classify
    from biasprobe.probes.dip import DIPConfig, run_dip

    rows = []
    for dev, steps in ((device, dip_steps), ("cpu", max(2, dip_steps // 10))):
        cfg = DIPConfig(arch="vit", image="F16", size=size, setting="study", task_params={"sigma": 25}, iters=steps,
                        log_every=max(1, steps // 6), device=dev)
        t = time.perf_counter()
        s = run_dip(cfg, progress=False).summary.iloc[0]
        rows.append(dict(check="dip", device=dev, steps=steps, seconds=time.perf_counter() - t,
                         sec_per_step=float(s.sec_per_step), baseline_psnr=float(s.baseline_psnr),
                         max_psnr_gt=float(s.max_psnr_gt), gain_db=float(s.gain_db), columns=len(s)))
    cfg = ClassifyConfig(arch="vit", n_train=1000, steps=max(2, dip_steps // 5), batch_size=128, seed=0,
                         measures=False, device=device)
    t = time.perf_counter()
    _, summary = run_classify(cfg, progress=False)
    acc = float(summary.get("final_test_acc", float("nan")))
    rows.append(dict(check="classify", device=device, steps=cfg.steps, seconds=time.perf_counter() - t,
                     final_test_acc=acc))
    out = pd.DataFrame(rows)
    dip = out[out.check == "dip"]
    out["equal_in_kind"] = bool(dip.columns.size and dip["columns"].nunique() == 1
                                and all(math.isfinite(x) for x in dip.max_psnr_gt))
    return out


def step_times(archs: list[str], sizes: list[int], device: str, steps: int) -> pd.DataFrame:
    """Seconds per DIP step of one seed, per (architecture, size); the first 3 steps are warm-up."""
    import torch

    from biasprobe.probes.dip import DIPConfig, run_dip

    rows = []
    for size in sizes:
        for arch in archs:
            try:
                cfg = DIPConfig(arch=arch, image="F16", size=size, setting="study", task_params={"sigma": 25},
                                iters=3, log_every=1000, spectral=False, device=device)
                run_dip(cfg, progress=False)
                cfg.iters = steps
                t = time.perf_counter()
                run_dip(cfg, progress=False)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                rows.append(dict(arch=arch, size=size, sec_per_step=(time.perf_counter() - t) / steps, error=""))
            except Exception as e:  # noqa: BLE001 - a failure is a measurement too (out of memory, refused size)
                rows.append(dict(arch=arch, size=size, sec_per_step=math.nan, error=str(e).splitlines()[0][:200]))
            finally:
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def zoo_slice(out: Path, device: str, seconds: float) -> dict:
    """Run the zoo-gpu study in-process on ``device`` until ``seconds`` have passed; what it finished is in the
    store. Returns how many runs the store holds and whether it was stopped."""
    cmd = [sys.executable, "-m", "biasprobe.cli", "study", "zoo", "--preset", "zoo-gpu", "--device", device,
           "--executor", "local", "--store", str(out / "store"), "--out", str(out), "--quiet", "--force"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        rc = proc.wait(timeout=max(1.0, seconds))
        stopped = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        rc, stopped = None, True
    runs = out / "store" / "results" / "runs"
    n = len([d for d in runs.iterdir() if not d.name.startswith(".")]) if runs.is_dir() else 0
    return dict(runs_stored=n, stopped_at_deadline=stopped, returncode=rc, seconds=time.perf_counter() - t)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="reports/gpu_check")
    ap.add_argument("--budget-s", type=float, default=480.0, help="wall seconds for all three steps together")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--archs", nargs="+", default=None, help="default: standard + zoo + ablation generators")
    ap.add_argument("--dip-steps", type=int, default=300, help="steps of the CUDA-path DIP fit")
    ap.add_argument("--timed-steps", type=int, default=10, help="timed steps per (arch, size)")
    ap.add_argument("--no-zoo", action="store_true", help="skip the zoo-gpu slice")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    from biasprobe.runinfo import provenance, resolve_device

    (out / "provenance.json").write_text(json.dumps(provenance(resolve_device(a.device)), default=str, indent=1))
    try:
        cuda_path(a.device, a.dip_steps, min(a.sizes)).to_csv(out / "cuda_path.csv", index=False)
    except Exception:  # noqa: BLE001 - write what failed and go on to the next step
        (out / "cuda_path_error.txt").write_text(traceback.format_exc())
    if a.archs is None:
        from biasprobe.studies.runner import load_preset
        from biasprobe.studies import zoo

        z = zoo.prepare(load_preset("zoo-gpu"))
        a.archs = list(dict.fromkeys(load_preset("standard").archs + z.archs + z.dip.extra_archs))
    step_times(a.archs, a.sizes, a.device, a.timed_steps).to_csv(out / "step_times.csv", index=False)
    left = a.budget_s - (time.perf_counter() - t0) - 30
    if not a.no_zoo and left > 60:
        res = zoo_slice(out / "zoo-gpu", a.device, left)
        (out / "zoo_slice.json").write_text(json.dumps(res, indent=1))
    print(f"gpu check done in {time.perf_counter() - t0:.0f} s on {torch.cuda.get_device_name() if a.device.startswith('cuda') and torch.cuda.is_available() else a.device}")


if __name__ == "__main__":
    main()
