"""Figures drawn from tidy tables (seaborn / matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


def psnr_curves(curves: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """psnr_gt, psnr_obs and psnr_gt_ema against the iteration, from a long curves table."""
    wanted = [m for m in ("psnr_gt", "psnr_obs", "psnr_gt_ema") if m in set(curves.metric)]
    data = curves[curves.metric.isin(wanted)]
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=data, x="step", y="value", hue="metric", ax=ax)
    ax.set(xlabel="iteration", ylabel="PSNR (dB)", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
