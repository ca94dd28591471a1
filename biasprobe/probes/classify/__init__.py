"""The predictive probe: small-data CIFAR-10 classification from random init, one run per (arch, N, seed).

- ``cifar``: the data (a class-balanced subset of an ImageFolder or torchvision's CIFAR-10, the validation split
  carved from the training pool), and the normalising wrapper;
- ``train``: :class:`ClassifyConfig`, the training loop (:func:`run_classify`), its evaluation and run folder;
- ``measures``: what a trained classifier is measured by (ECE, shift consistency, attribution locality) and the
  sample-efficiency AUC over runs;
- ``plan``, ``probe``: the probe's part of a study preset and its grid of runs; the probe object studies call.

The names below are imported on first use, so that importing the package imports no torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"ClassifyConfig": "train", "run_classify": "train", "load_split": "cifar",
            "sample_efficiency_auc": "measures"}

__all__ = sorted(_EXPORTS)


def __getattr__(attr: str):
    if attr in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[attr]}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
