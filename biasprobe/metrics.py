"""Image-quality metrics (PSNR from torchmetrics; SSIM with torchmetrics' formula, computed faster), on the device
and per batch element, and the ground-truth-free early-stopping rule ES-WMV; and ``METRICS``, the study metrics
declared once (name, label, direction, how a run's value is summarised) for the analysis and the report.

All images are (K, C, H, W) float tensors in [0, 1]; every function returns one value per batch element (K,).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    keep the cost per pixel from growing with the side (timings: README, Performance)."""
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


# ----------------------------------------------------------------------------------------------------------------
# The study metrics, declared once: the analysis (verdicts.py) and the report read names, labels and directions here


@dataclass(frozen=True)
class Metric:
    """A metric of the study's analysis tables. ``read`` says where the cross-tab takes it from: ``unit`` (the
    per-unit scores of ``verdicts.gen_scores`` / ``pred_scores``, mean over units), ``runs`` (the probe's run
    summaries, mean over runs; those at the fixed N when ``fixed_n``) or ``last`` (the last logged value of a
    DIP curve, mean over runs). Labels and headers may hold ``{period}`` (the grid period) and ``{n}`` (the
    fixed N)."""

    name: str  # its column in the analysis tables
    label: str  # words for sentences and axes
    probe: str  # "dip" or "classify": the probe whose runs measure it
    read: str  # "unit", "runs" or "last"
    summary: str  # how a run's (or unit's) value is made
    header: str = ""  # its short header in the Markdown cross-tab ("": CSV only)
    unit: str = ""
    direction: int = 1  # +1: higher is better; -1: lower is better
    source: str = ""  # the run-table column or curve metric it is made from (default: name)
    fixed_n: bool = False  # read at the fixed training-set size N
    periodic: bool = False  # one column per grid period: NAME_p{period}
    ci: str = ""  # prefix of its bootstrap CI columns ({ci}_ci_low, {ci}_ci_high) when the cross-tab gives one
    count: str = ""  # column for the number of units behind its CI
    censored: str = ""  # column for the share of runs where it was censored at the run's length

    def __post_init__(self):
        if not self.source:
            object.__setattr__(self, "source", self.name)

    def column(self, period: int) -> str:
        """Its cross-tab column (with the grid period for a periodic metric)."""
        return f"{self.name}_p{period}" if self.periodic else self.name


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("gen_score", "generative score (gain_db on the primary task, dB)", "dip", "unit",
           "max over steps of psnr_gt minus the corrupted input's psnr (gain_db) of one task's (image, seed) run; "
           "tasks are never averaged",
           header="gen score (dB)", unit="dB", source="gain_db", ci="gen", count="n_gen_units"),
    Metric("gap_area", "positive gap area (dB*steps)", "dip", "unit",
           "area (trapezoid over the logged steps) of the positive part of the gap psnr_gt - psnr_obs",
           header="gap area", unit="dB*steps"),
    Metric("gap_negative_step", "step where the gap turns negative (censored at the stop)", "dip", "unit",
           "first step where psnr_gt - psnr_obs < 0 after being >= 0; the run's stop step when it never is "
           "(censored)",
           header="gap<0 step (censored)", unit="steps", censored="gap_negative_censored"),
    Metric("pred_acc", "test accuracy at fixed N", "classify", "unit", "final test accuracy of the run at N",
           header="acc @N={n}", source="final_test_acc", fixed_n=True, ci="pred", count="n_seeds"),
    Metric("auc", "sample-efficiency AUC", "classify", "unit",
           "a seed's final test accuracy averaged over log N (trapezoid)", header="AUC", ci="auc"),
    Metric("shift_consistency", "shift consistency (circular shifts)", "classify", "runs",
           "share of eval images whose top-1 prediction agrees between two random circular shifts",
           header="shift cons.",
           source="shift_consistency_circular", fixed_n=True),
    Metric("shift_consistency_padded", "shift consistency (zero-padded shifts)", "classify", "runs",
           "share of eval images whose top-1 prediction agrees between two random zero-padded shifts",
           fixed_n=True),
    Metric("ece", "expected calibration error", "classify", "runs", "ECE of the final model on the eval split",
           header="ECE", direction=-1, fixed_n=True),
    Metric("grid_energy", "grid energy, period {period} (share; / clean's when known)", "dip", "last",
           "share of the output's spectral power on the period's grid frequencies (/ the clean image's share "
           "when known), at the last logged step",
           header="grid energy p{period}", direction=-1, periodic=True),
    Metric("boundary_jump", "boundary jump, period {period} (across / inside patches)", "dip", "last",
           "mean neighbour difference across patch boundaries over that inside patches, at the last logged step",
           header="boundary jump p{period}", direction=-1, periodic=True),
)}


def declared(probe: str | None = None, read: str | None = None) -> list[Metric]:
    """The declared metrics of ``probe`` read as ``read`` (None: any), in declaration order."""
    return [m for m in METRICS.values() if probe in (None, m.probe) and read in (None, m.read)]
