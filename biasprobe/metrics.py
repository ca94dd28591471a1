"""Image-quality metrics (thin wrappers over torchmetrics, on the device, per batch element) and the
ground-truth-free early-stopping rule ES-WMV.

All images are (K, C, H, W) float tensors in [0, 1]; every function returns one value per batch element (K,).
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


@torch.no_grad()
def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """PSNR in dB with data range 1, one value per batch element."""
    return peak_signal_noise_ratio(x.float(), ref.float(), data_range=1.0, reduction="none", dim=(1, 2, 3))


@torch.no_grad()
def psnr_masked(x: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """PSNR on the pixels where ``mask`` is 1 (all pixels when mask is None), one value per batch element."""
    if mask is None:
        return psnr(x, ref)
    m = mask.expand_as(x).bool()
    return torch.stack([
        peak_signal_noise_ratio(x[k][m[k]].float(), ref[k][m[k]].float(), data_range=1.0) for k in range(len(x))
    ])


@torch.no_grad()
def ssim(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """SSIM (Gaussian window 11, sigma 1.5, Wang et al. 2004) with data range 1, per batch element."""
    return structural_similarity_index_measure(x.float(), ref.float(), data_range=1.0, reduction="none")


def es_wmv_step(variance: np.ndarray, patience: int) -> int:
    """Early stopping by windowed moving variance (Wang, Li, Zhuang, Sun, "Early Stopping for Deep Image Prior",
    ES-WMV, 2021/TMLR 2023).

    ``variance[t]`` is VAR_t = 1/W * sum_{w=0}^{W-1} ||x_{t-w} - mean(x_{t-W+1..t})||^2 (per-pixel mean), the
    windowed variance of the last W outputs, NaN before the window has filled. The rule tracks the running minimum
    of VAR and stops once it has not improved for ``patience`` steps; the chosen step is that minimum. If the run
    ends first, it is the minimum over the whole run. Returns -1 when no variance was ever defined.
    """
    best, best_t = np.inf, -1
    for t, v in enumerate(variance):
        if not np.isfinite(v):
            continue
        if v < best:
            best, best_t = v, t
        elif t - best_t >= patience:
            break
    return best_t
