"""Measures of a trained classifier's predictive bias, and the sample-efficiency summary over runs.

Every measure takes a model that maps [0, 1] images (B, 3, H, W) to logits (wrap a classifier trained on
normalised inputs in ``cifar.Normalized``), so shifts pad with black pixels and attributions live in pixel space.

- ``ece``: expected calibration error (Guo et al. 2017), ECE = sum_b |B_b|/n |acc(B_b) - conf(B_b)| over
  ``n_bins`` equal-width bins of top-1 confidence (torchmetrics' ``multiclass_calibration_error``, norm l1).
- ``shift_consistency``: Zhang 2019, "Making Convolutional Networks Shift-Invariant Again": the fraction of
  images whose top-1 class is the same under two independent random shifts (dy, dx uniform in [-s, s]), for a
  circular shift (torch.roll) or a padded one (pad, then crop: the border is black or mirrored).
- ``attribution_locality``: captum attributions (Saliency |dlogit/dx|, IntegratedGradients from a black
  baseline, optionally SmoothGrad = NoiseTunnel(Saliency)) for the predicted class; the map
  a(i, j) = sum_c |attr(c, i, j)| normalised to p = a / sum a gives
  ``center_share`` = sum of p over the central ``center`` x ``center`` window (CIFAR-10 objects are roughly
  centred; a uniform map gives (center/32)^2 = 0.25 for 16 of 32) and
  ``entropy`` = -sum p log p / log(H W) in [0, 1] (1 = spread uniformly, 0 = one pixel). DeepLift is left out
  on purpose: its rules fail on GELU/LayerNorm nets.
- ``sample_efficiency_auc``: accuracy against log N per architecture, area by the trapezoid rule over log N
  divided by log(N_max / N_min) (so it is a mean accuracy over the log-N range), with a percentile bootstrap
  CI that resamples the seeds at each N independently.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from biasprobe.probes.classify.cifar import shift
from biasprobe.errors import BiasprobeError


def ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error of class probabilities (n, C) against integer labels (n,)."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs = torch.as_tensor(probs, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.long)
    return float(multiclass_calibration_error(probs, labels, num_classes=probs.shape[1], n_bins=n_bins, norm="l1"))


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits for [0, 1] images, in batches, on the model's device; returned on the CPU as float32."""
    device = next(model.parameters()).device
    out = [model(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def shift_consistency(model: nn.Module, images: torch.Tensor, mode: str = "circular", max_shift: int = 4,
                      seed: int = 0, batch_size: int = 500) -> float:
    """Fraction of images whose top-1 prediction agrees between two random shifts of the image.

    ``mode``: ``circular``, ``zeros`` or ``reflect`` (padded shift). Offsets are integers uniform in
    [-max_shift, max_shift] on each axis, drawn from ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    n = len(images)
    d = torch.randint(-max_shift, max_shift + 1, (4, n), generator=g)
    was_training = model.training
    model.eval()
    preds = []
    for dy, dx in ((d[0], d[1]), (d[2], d[3])):
        shifted = torch.cat([shift(images[i : i + batch_size], dy[i : i + batch_size], dx[i : i + batch_size],
                                   mode=mode, pad=max_shift) for i in range(0, n, batch_size)])
        preds.append(predict(model, shifted, batch_size).argmax(1))
    model.train(was_training)
    return float((preds[0] == preds[1]).float().mean())


def attribution_maps(model: nn.Module, images: torch.Tensor, method: str = "saliency", target=None,
                     ig_steps: int = 32, internal_batch_size: int = 64, nt_samples: int = 8,
                     nt_stdev: float = 0.1) -> torch.Tensor:
    """Per-pixel attribution magnitude (B, H, W) = sum over channels of |attribution|, for ``target`` (default:
    the predicted class). ``method``: saliency, ig (IntegratedGradients, black baseline) or smoothgrad."""
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = images.to(device).float().clone().requires_grad_(True)
    if target is None:
        target = predict(model, images).argmax(1)
    target = torch.as_tensor(target).to(device)
    if method == "saliency":
        attr = Saliency(model).attribute(x, target=target, abs=True)
    elif method == "ig":
        attr = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                    n_steps=ig_steps, internal_batch_size=internal_batch_size)
    elif method == "smoothgrad":
        attr = NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=nt_samples,
                                                      nt_samples_batch_size=internal_batch_size,
                                                      stdevs=nt_stdev, target=target, abs=True)
    else:
        raise BiasprobeError(f"unknown attribution method {method!r}: use saliency, ig or smoothgrad")
    model.train(was_training)
    return attr.detach().abs().sum(dim=1).float().cpu()


def locality(maps: torch.Tensor, center: int = 16) -> dict[str, float]:
    """Mean centre share and normalised spatial entropy of attribution maps (B, H, W) (see module docstring).

    Images whose map is all zero (no gradient) are left out of the means; NaN if all are."""
    b, h, w = maps.shape
    total = maps.flatten(1).sum(1)
    ok = total > 0
    if not ok.any():
        return {"center_share": float("nan"), "entropy": float("nan")}
    p = maps[ok] / total[ok][:, None, None]
    top, left = (h - center) // 2, (w - center) // 2
    share = p[:, top : top + center, left : left + center].flatten(1).sum(1)
    ent = -(p * torch.log(p.clamp_min(1e-30))).flatten(1).sum(1) / math.log(h * w)
    return {"center_share": float(share.mean()), "entropy": float(ent.mean())}


def attribution_locality(model: nn.Module, images: torch.Tensor, method: str = "saliency", center: int = 16,
                         **kw) -> dict[str, float]:
    """``locality`` of ``attribution_maps`` for the predicted class of each image."""
    return locality(attribution_maps(model, images, method=method, **kw), center=center)


def log_n_auc(acc, log_n) -> np.ndarray:
    """trapz(acc, log N) / (log N_max - log N_min): the accuracy-vs-log(N) curve as a mean accuracy. ``log_n``
    ascending; ``acc`` may carry leading batch axes (the curve runs along the last one)."""
    log_n = np.asarray(log_n, float)
    return np.trapezoid(np.asarray(acc, float), log_n, axis=-1) / (log_n[-1] - log_n[0])


def sample_efficiency_auc(df: pd.DataFrame, acc: str = "test_acc", n_boot: int = 2000, ci: float = 0.95,
                          seed: int = 0) -> pd.DataFrame:
    """Area under accuracy-vs-log(N), normalised to a mean accuracy, per architecture, with a bootstrap CI.

    ``df`` has one row per run with columns arch, n_train, seed and ``acc``. The curve is the mean over seeds at
    each N; AUC = trapz(acc_mean, log N) / (log N_max - log N_min). The CI is the percentile interval of the
    AUC over ``n_boot`` resamples that draw, at each N, that N's seeds with replacement. Returns columns arch,
    auc, ci_low, ci_high, n_sizes, min_seeds (with one seed per N the CI is the point itself)."""
    missing = {"arch", "n_train", acc} - set(df.columns)
    if missing:
        raise BiasprobeError(f"sample-efficiency table lacks column(s) {sorted(missing)}")
    rng = np.random.default_rng(seed)
    rows = []
    for arch, g in df.groupby("arch", sort=True):
        groups = [(n, sub[acc].to_numpy(float)) for n, sub in g.groupby("n_train", sort=True)]
        if len(groups) < 2:
            raise BiasprobeError(f"sample efficiency of {arch} needs runs at two or more --n-train values")
        log_n = np.log([n for n, _ in groups])
        point = log_n_auc([a.mean() for _, a in groups], log_n)
        boot = np.stack([a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1) for _, a in groups], axis=1)
        aucs = log_n_auc(boot, log_n)
        lo, hi = np.quantile(aucs, [(1 - ci) / 2, (1 + ci) / 2])
        rows.append(dict(arch=arch, auc=float(point), ci_low=float(lo), ci_high=float(hi), n_sizes=len(groups),
                         min_seeds=min(len(a) for _, a in groups)))
    return pd.DataFrame(rows, columns=["arch", "auc", "ci_low", "ci_high", "n_sizes", "min_seeds"])
