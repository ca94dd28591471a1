"""biasprobe's DIP denoising against the official repository's loop, side by side on one input file.

The official loop (``--part official``) is the one of DmitryUlyanov/deep-image-prior's ``denoising.ipynb``, written
out plainly: the repository's own ``skip()`` net (imported from a checkout given by ``--official-repo``: 5 scales,
128/128/4 channels, bilinear, reflection padding, LeakyReLU), its input ``get_noise`` (U(0, 1) * 0.1 from torch's
global generator), its noisy image ``clip(img + np.random.normal(scale=sigma/255))`` (numpy's generator: the net's
input and the noise never share a stream), reg-noise 1/30 redrawn every step, Adam lr 0.01, MSE, the PSNR against
the clean image at every step and the EMA (0.99) of the output. torch and numpy are seeded with the seed. The
official backtracking is left out (it never fires at these settings; biasprobe's guard is on and counts).

``--part biasprobe`` runs ``biasprobe dip --arch skipnet --setting dip --size 0`` on the same file, seeds together.
``--part report`` writes the table from the two CSVs. Every part reads the same PNG: the image resized once to
``--size`` with Pillow's Lanczos filter.

    python benchmarks/official_dip_check.py --part official --official-repo PATH/deep-image-prior
    python benchmarks/official_dip_check.py --part biasprobe
    python benchmarks/official_dip_check.py --part report      # reports/official_dip_check.md
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

OUT = Path("reports/official_dip_check")


def prepared_image(image: str, size: int) -> Path:
    """The image resized once (Pillow, Lanczos) to size x size and saved as a PNG both loops read as it is."""
    from PIL import Image

    path = Path("runs/official_dip_check") / f"{Path(image).stem}_{size}.png"  # derived data: not committed
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.open(image).convert("RGB").resize((size, size), Image.LANCZOS).save(path)
    return path


def official(png: Path, repo: str, seeds: list[int], iters: int, sigma: float) -> pd.DataFrame:
    sys.path.insert(0, str(Path(repo).resolve()))
    from models.skip import skip  # the official repository's net

    img = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(png), dtype=np.float32).transpose(2, 0, 1) / 255
    clean = torch.from_numpy(img)[None]
    rows = []
    for seed in seeds:
        torch.manual_seed(seed)
        np.random.seed(seed)
        net = skip(32, 3, num_channels_down=[128] * 5, num_channels_up=[128] * 5, num_channels_skip=[4] * 5,
                   upsample_mode="bilinear", need_sigmoid=True, need_bias=True, pad="reflection",
                   act_fun="LeakyReLU")
        net_input = torch.rand(1, 32, *img.shape[1:]) * 0.1  # get_noise(32, 'noise', (H, W), var=1/10)
        noisy = np.clip(img + np.random.normal(scale=sigma / 255, size=img.shape), 0, 1).astype(np.float32)
        target = torch.from_numpy(noisy)[None]
        noise = net_input.clone()
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        out_avg = None
        for step in range(iters):
            out = net(net_input + noise.normal_() * (1 / 30))
            loss = torch.nn.functional.mse_loss(out, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                out_avg = out if out_avg is None else out_avg * 0.99 + out * 0.01
                rows.append((seed, step, _psnr(out, clean), _psnr(out_avg, clean)))
        print(f"official seed {seed}: max psnr_gt {max(r[2] for r in rows if r[0] == seed):.2f}", flush=True)
    return pd.DataFrame(rows, columns=["seed", "step", "psnr_gt", "psnr_gt_ema"])


def _psnr(x: torch.Tensor, clean: torch.Tensor) -> float:
    return -10 * math.log10(((x.detach().clamp(0, 1) - clean) ** 2).mean().item())


def biasprobe_runs(png: Path, seeds: list[int], iters: int, sigma: float) -> pd.DataFrame:
    from biasprobe.probes.dip import DIPConfig, run_dip

    cfg = DIPConfig(arch="skipnet", image=str(png), size=None, setting="dip", iters=iters, seeds=seeds,
                    task_params={"sigma": sigma}, device="cpu", log_every=1, spectral=False)
    r = run_dip(cfg)
    c = r.curves[r.curves.metric.isin(["psnr_gt", "psnr_gt_ema", "backtracks"])]
    return c.pivot_table(index=["seed", "step"], columns="metric", values="value").reset_index()


def report(path: Path) -> None:
    parts = {p: pd.read_csv(OUT / f"{p}.csv") for p in ("official", "biasprobe")}
    lines = ["# biasprobe's DIP loop against the official one", "",
             "F16 resized once to 128x128 (Pillow, Lanczos), denoising sigma 25 (clipped), DIP setting (input depth "
             "32, U(0,1)*0.1 input, reg-noise 1/30, Adam lr 0.01), 1 torch thread; made by "
             "`benchmarks/official_dip_check.py`.", "",
             "| loop | max psnr_gt (step) per seed | mean max psnr_gt | final EMA psnr per seed | mean final EMA |",
             "|---|---|---|---|---|"]
    means = {}
    for name, df in parts.items():
        peaks, emas = [], []
        for seed, d in df.groupby("seed"):
            i = d.psnr_gt.idxmax()
            peaks.append((d.psnr_gt[i], int(d.step[i])))
            emas.append(d.sort_values("step").psnr_gt_ema.iloc[-1])
        means[name] = (np.mean([p for p, _ in peaks]), np.mean(emas))
        lines.append(f"| {name} | {', '.join(f'{p:.2f} ({s})' for p, s in peaks)} | **{means[name][0]:.2f}** | "
                     f"{', '.join(f'{e:.2f}' for e in emas)} | **{means[name][1]:.2f}** |")
    d_peak = means["biasprobe"][0] - means["official"][0]
    d_ema = means["biasprobe"][1] - means["official"][1]
    steps = int(parts["official"].step.max()) + 1
    margin = min(steps - 1 - int(d.step[d.psnr_gt.idxmax()]) for df in parts.values() for _, d in df.groupby("seed"))
    lines += ["", f"{steps} steps. biasprobe minus official: mean max psnr_gt {d_peak:+.2f} dB, "
                  f"mean final EMA psnr {d_ema:+.2f} dB (target: within 0.2 dB). Every peak is at least {margin} "
                  "steps before the last step (reached, not truncated)."]
    if "backtracks" in parts["biasprobe"]:
        lines.append(f"biasprobe's guard backtracked {int(parts['biasprobe'].groupby('seed').backtracks.max().sum())} "
                     "times in all.")
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["official", "biasprobe", "report"], required=True)
    ap.add_argument("--official-repo", help="a checkout of DmitryUlyanov/deep-image-prior (for --part official)")
    ap.add_argument("--image", default="../shared/data/dip/denoising/F16_GT.png")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.part == "report":
        report(Path("reports/official_dip_check.md"))
        return
    png = prepared_image(a.image, a.size)
    if a.part == "official":
        if not a.official_repo:
            ap.error("--part official needs --official-repo PATH (a checkout of DmitryUlyanov/deep-image-prior)")
        df = official(png, a.official_repo, a.seeds, a.iters, a.sigma)
    else:
        df = biasprobe_runs(png, a.seeds, a.iters, a.sigma)
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / f"{a.part}.csv", index=False, float_format="%.4f")


if __name__ == "__main__":
    main()
