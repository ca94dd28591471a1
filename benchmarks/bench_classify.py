"""Benchmark of the predictive probe: throughput per architecture, and one full CNN run.

1. Throughput: for every registered architecture (or --archs), its classifier's training images/s (AdamW steps
   on batches of 128 augmented 32x32 images, after warm-up steps) and eval images/s (batches of 500), and what a
   run of N=1000 x 30 epochs (training + per-epoch eval on the 1,017 test images) would take at those rates.
2. Unless --no-run: the real probe, ``run_classify(ClassifyConfig('skipnet', n_train=1000, epochs=30, seed=0))``
   on the shared CIFAR-10 subset, with its wall time (training + measures) and test accuracy.

    python benchmarks/bench_classify.py [--threads 2] [--archs skipnet vit] [--no-run] [--out runs/bench_classify]

On a shared machine other processes take cores: the script reports the load average next to the numbers, and the
extrapolation from images/s is the fair figure for an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from biasprobe import list_archs
from biasprobe.probes.classify import cifar
from biasprobe.probes.classify.train import ClassifyConfig, run_classify
from biasprobe.archs.factory import count_params, create_classifier


def throughput(arch: str, device: torch.device, batch: int = 128, steps: int = 6, warmup: int = 2) -> dict:
    torch.manual_seed(0)
    model = create_classifier(arch, num_classes=10, img_size=(32, 32)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(batch, 3, 32, 32, device=device), torch.randint(0, 10, (batch,), device=device)
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(cifar.normalize(cifar.augment(x, g))), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_ips = batch * steps / (time.perf_counter() - t0)
    model.eval()
    xe = torch.rand(500, 3, 32, 32, device=device)
    with torch.no_grad():
        model(cifar.normalize(xe))
        t0 = time.perf_counter()
        for _ in range(2):
            model(cifar.normalize(xe))
    eval_ips = 1000 / (time.perf_counter() - t0)
    est = 30 * (1000 / train_ips + 1017 / eval_ips)
    return {"arch": arch, "n_params": count_params(model), "train_images_per_s": train_ips,
            "eval_images_per_s": eval_ips, "est_seconds_n1000_30ep": est}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=None, help="default: every registered architecture")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--no-run", action="store_true", help="throughput only, no full skipnet run")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--out", default="runs/bench_classify")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    out = Path(args.out)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()}")

    rows = []
    for arch in args.archs or list_archs():
        try:
            rows.append(throughput(arch, device))
        except Exception as exc:  # noqa: BLE001 (report and go on: one arch must not stop the table)
            rows.append({"arch": arch, "error": f"{type(exc).__name__}: {exc}"})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "throughput.csv", index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))

    if not args.no_run:
        cfg = ClassifyConfig("skipnet", n_train=args.n_train, epochs=args.epochs, seed=0, device="cpu")
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        epochs, summary = run_classify(cfg, out_dir=out / cfg.run_name())
        wall = time.perf_counter() - t0
        summary.update(bench_wall_seconds=wall, load_before=load_before, load_after=os.getloadavg(),
                       torch_threads=torch.get_num_threads())
        (out / "skipnet_run.json").write_text(json.dumps(summary, indent=2))
        print(epochs.drop(columns=["arch", "n_train", "seed"]).to_string(index=False))
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
