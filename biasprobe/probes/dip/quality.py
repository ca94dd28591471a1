"""Image-quality metrics (PSNR from torchmetrics; SSIM with torchmetrics' formula, computed faster), on the device
and per batch element, and the ground-truth-free early-stopping rule ES-WMV. (The study metrics the analysis declares are in :mod:`biasprobe.analysis.metrics`.)

All images are (K, C, H, W) float tensors in [0, 1]; every function returns one value per batch element (K,).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# torchmetrics takes seconds to import: the functions import it on first use


@torch.no_grad()
def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """PSNR in dB with data range 1, one value per batch element."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(x.float(), ref.float(), data_range=1.0, reduction="none", dim=(1, 2, 3))


@torch.no_grad()
def psnr_masked(x: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """PSNR on the pixels where ``mask`` is 1 (all pixels when mask is None), one value per batch element."""
    if mask is None:
        return psnr(x, ref)
    from torchmetrics.functional.image import peak_signal_noise_ratio

    m = mask.expand_as(x).bool()
    return torch.stack([
        peak_signal_noise_ratio(x[k][m[k]].float(), ref[k][m[k]].float(), data_range=1.0) for k in range(len(x))
    ])


@torch.no_grad()
def ssim(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """SSIM (Gaussian window 11, sigma 1.5, Wang et al. 2004) with data range 1, per batch element: the formula of
    torchmetrics' ``structural_similarity_index_measure`` (reflect padding, variances clamped at 0, mean over the
    whole map; a test checks the two agree), with the Gaussian window applied along each axis as banded matrix
    products over tiles of 32 output pixels (:func:`_blur_last`) instead of one 11 x 11 grouped convolution; tiles
    keep the cost per pixel from growing with the side (timings: docs/performance.md)."""
    x, ref = x.float(), ref.float()
    k, c, h, w = x.shape
    half = 5
    g = _gauss(2 * half + 1, 1.5, x.device)
    maps = torch.cat([x, ref, x * x, ref * ref, x * ref]).reshape(5 * k * c, h, w)
    maps = F.pad(maps[:, None], (half, half, half, half), mode="reflect")[:, 0]
    maps = _blur_last(maps, g)  # along w: (5 K C, h + 2 half, w)
    maps = _blur_last(maps.transpose(1, 2).contiguous(), g).transpose(1, 2)  # along h: (5 K C, h, w)
    mu_x, mu_y, xx, yy, xy = maps.reshape(5, k, c, h, w)
    c1, c2 = 0.01**2, 0.03**2
    var_x, var_y = (xx - mu_x**2).clamp_min(0), (yy - mu_y**2).clamp_min(0)
    cov = xy - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean((1, 2, 3))


def _gauss(size: int, sigma: float, device) -> torch.Tensor:
    t = torch.arange(size, device=device, dtype=torch.float32) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def _band(n: int, g: torch.Tensor) -> torch.Tensor:
    """(n + len(g) - 1, n): column j holds the window g over input rows j .. j + len(g) - 1."""
    m = torch.zeros(n + len(g) - 1, n, device=g.device, dtype=g.dtype)
    for i in range(len(g)):
        m.diagonal(-i).copy_(g[i].expand(n))
    return m


def _blur_last(maps: torch.Tensor, g: torch.Tensor, tile: int = 32) -> torch.Tensor:
    """'valid' correlation of the last axis with g: (B, R, n + len(g) - 1) -> (B, R, n), as products of tiles of
    ``tile`` outputs (and their len(g) - 1 neighbours) with one (tile + len(g) - 1, tile) band, so each output
    costs tile + len(g) - 1 multiply-adds instead of n + len(g) - 1 with one band over the whole axis."""
    extra = len(g) - 1
    n = maps.shape[-1] - extra
    if n <= tile:
        return maps @ _band(n, g)
    tiles = -(-n // tile)
    if tiles * tile > n:  # zero columns on the right; the outputs they make are cut off
        maps = F.pad(maps, (0, tiles * tile - n))
    b, r, _ = maps.shape
    out = maps.unfold(-1, tile + extra, tile).reshape(-1, tile + extra) @ _band(tile, g)  # one GEMM
    return out.reshape(b, r, tiles * tile)[..., :n]


@torch.no_grad()
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


class WindowVariance:
    """ES-WMV's VAR_t = mean_pixels(1/W sum_w x_w^2 - (1/W sum_w x_w)^2) over the last W outputs x_w, per seed,
    from running sums kept in float64 (adding and removing an output is exact far below float32 rounding): two
    passes over one output per step instead of a variance over all W."""

    def __init__(self, window: int, shape: tuple, device: torch.device):
        self.window, self.t = window, 0
        self.buf = torch.zeros(window, *shape, device=device)
        self.sum = torch.zeros(shape, device=device, dtype=torch.float64)
        self.sq = torch.zeros_like(self.sum)

    def push(self, x: torch.Tensor) -> torch.Tensor | None:
        """Add output x (K, ...); returns VAR (K,) once W outputs have been seen, else None."""
        slot = self.buf[self.t % self.window]
        if self.t >= self.window:
            self.sum -= slot
            self.sq -= slot.double() ** 2
        slot.copy_(x)
        self.sum += x
        self.sq += x.double() ** 2
        self.t += 1
        if self.t < self.window:
            return None
        mean = self.sum / self.window
        return (self.sq / self.window - mean**2).mean(tuple(range(1, x.dim()))).float()
