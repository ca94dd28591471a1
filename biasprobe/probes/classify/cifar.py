"""CIFAR-10 for the predictive probe: whole splits in memory as uint8 tensors, class-balanced subsets, batched
augmentation.

Where the images come from (``load_split``), first match wins:

1. ``data=DIR``: an ImageFolder tree ``DIR/train/<class>/*.png`` and ``DIR/test/<class>/*.png`` (class folders
   sorted alphabetically give the label order, as ``torchvision.datasets.ImageFolder``; for CIFAR-10's names that
   is CIFAR-10's own order). Decoded with PIL as RGB; images that are not 32x32 are resized to 32x32 (bilinear).
2. ``data_root=DIR``: ``torchvision.datasets.CIFAR10(DIR)``, downloaded only when ``download=True``.
3. neither: the offline real subset ``<repo root>/../shared/data/cifar10-subset`` (5,482 train / 1,017 test
   images) if it exists, else ``$BIASPROBE_DATA/cifar10-subset``.

A split is decoded once per process (``functools.lru_cache`` keyed by the resolved path): the 6.5k PNGs of the
subset take about half a second.

Subsets (``balanced_indices``) draw, per class, a seeded random permutation of that class's images and take its
first k: the same seed gives nested subsets (N=500 is inside N=1000), and every class has floor(N/C) or
ceil(N/C) images (which classes get the extra one is seeded too).

Augmentation (``augment``) is the standard CIFAR one (He et al. 2016): pad 4 pixels with zeros (black), take a
random 32x32 crop, flip horizontally with probability 1/2; done on a whole batch at once with one gather,
from a ``torch.Generator`` so it is seeded. ``normalize`` then maps [0, 1] pixels with the CIFAR-10 mean/std.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from biasprobe.errors import BiasprobeError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMG_SIZE = 32
SUBSET_NAME = "cifar10-subset"


@dataclass(frozen=True)
class Split:
    """One split in memory: ``images`` (N, 3, 32, 32) uint8, ``labels`` (N,) int64, class names, where from."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: torch.Tensor) -> "Split":
        return Split(self.images[idx], self.labels[idx], self.classes, self.source)


def default_data_dir() -> Path | None:
    """``<repo root>/../shared/data/cifar10-subset`` if it exists, else ``$BIASPROBE_DATA/cifar10-subset``."""
    repo = Path(__file__).resolve().parents[3]
    candidates = [repo.parent / "shared" / "data" / SUBSET_NAME]
    if os.environ.get("BIASPROBE_DATA"):
        candidates.append(Path(os.environ["BIASPROBE_DATA"]) / SUBSET_NAME)
    return next((c for c in candidates if (c / "train").is_dir()), None)


def load_split(split: str = "train", data: str | Path | None = None, data_root: str | Path | None = None,
               download: bool = False) -> Split:
    """The whole ``train`` or ``test`` split as uint8 tensors (see the module docstring for the sources)."""
    if split not in ("train", "test"):
        raise BiasprobeError(f"unknown split {split!r}: use train or test")
    if data is not None:
        return _load_imagefolder(str(Path(data).expanduser().resolve()), split)
    if data_root is not None:
        return _load_torchvision(str(Path(data_root).expanduser().resolve()), split, bool(download))
    found = default_data_dir()
    if found is None:
        raise BiasprobeError(
            "no CIFAR-10 data found: pass --data DIR (an ImageFolder with train/ and test/, e.g. "
            "shared/data/cifar10-subset) or --data-root DIR --download to fetch CIFAR-10 with torchvision"
        )
    return _load_imagefolder(str(found.resolve()), split)


@functools.lru_cache(maxsize=8)
def _load_imagefolder(root: str, split: str) -> Split:
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets import ImageFolder

    folder = Path(root) / split
    if not folder.is_dir():
        raise BiasprobeError(
            f"--data {root}: no {split}/ folder there; --data needs an ImageFolder tree with train/<class>/ and "
            f"test/<class>/ (for torchvision's CIFAR-10 files use --data-root)"
        )
    try:
        ds = ImageFolder(str(folder), loader=str)  # only the (path, label) list; we decode below
    except (FileNotFoundError, OSError) as exc:
        raise BiasprobeError(f"--data {root}: {split}/ holds no images in class folders ({exc})") from exc
    images = np.empty((len(ds.samples), IMG_SIZE, IMG_SIZE, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(ds.samples):
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (IMG_SIZE, IMG_SIZE):
                    im = im.resize((IMG_SIZE, IMG_SIZE), Image.Resampling.BILINEAR)  # antialiased when shrinking
                images[i] = np.asarray(im)
        except (OSError, UnidentifiedImageError) as exc:
            raise BiasprobeError(f"--data {root}: cannot decode {path} ({exc})") from exc
    images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(ds.targets, dtype=torch.long)
    return Split(images, labels, tuple(ds.classes), f"imagefolder:{folder}")


@functools.lru_cache(maxsize=4)
def _load_torchvision(root: str, split: str, download: bool) -> Split:
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(root, train=split == "train", download=download)
    except RuntimeError as exc:  # "Dataset not found or corrupted. You can use download=True ..."
        raise BiasprobeError(
            f"--data-root {root}: no CIFAR-10 files there; add --download (needs internet) or pass --data DIR "
            f"with an ImageFolder copy"
        ) from exc
    except OSError as exc:  # download failed (offline)
        raise BiasprobeError(f"--data-root {root}: downloading CIFAR-10 failed ({exc}); pass --data DIR instead") from exc
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return Split(images, torch.tensor(ds.targets, dtype=torch.long), tuple(ds.classes), f"torchvision:{root}")


def max_balanced(labels: torch.Tensor, num_classes: int, exclude: torch.Tensor | None = None) -> int:
    """The largest N a class-balanced subset can have: num_classes x the smallest class count."""
    counts = torch.bincount(_keep(labels, exclude), minlength=num_classes)
    return int(counts.min()) * num_classes


def balanced_indices(labels: torch.Tensor, n: int, seed: int, num_classes: int | None = None,
                     exclude: torch.Tensor | None = None, what: str = "--n-train") -> torch.Tensor:
    """Indices of a seeded class-balanced subset of ``n`` images, skipping the indices in ``exclude``.

    Class c gets floor(n/C) images, plus one for the (n mod C) classes drawn first by the seed; within a class,
    the first k of a seeded permutation, so the same seed gives nested subsets for growing n.
    """
    num_classes = num_classes or int(labels.max()) + 1
    if n < num_classes:
        raise BiasprobeError(f"{what} {n} is too small: a class-balanced subset needs at least {num_classes}")
    available = torch.ones(len(labels), dtype=torch.bool)
    if exclude is not None:
        available[exclude] = False
    per_class = [torch.nonzero(available & (labels == c)).flatten() for c in range(num_classes)]
    smallest = min(len(i) for i in per_class)
    base, extra = divmod(n, num_classes)
    if base + bool(extra) > smallest:
        raise BiasprobeError(
            f"{what} {n} is more than this split can give class-balanced: at most {smallest * num_classes} "
            f"({num_classes} classes x {smallest} images in the smallest class"
            f"{', after the excluded images' if exclude is not None else ''})"
        )
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(num_classes, generator=g)
    k = torch.full((num_classes,), base)
    k[order[:extra]] += 1
    chosen = [idx[torch.randperm(len(idx), generator=g)[: int(k[c])]] for c, idx in enumerate(per_class)]
    return torch.sort(torch.cat(chosen)).values


def _keep(labels: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
    if exclude is None:
        return labels
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[exclude] = False
    return labels[mask]


# ----------------------------------------------------------------------------------------------
# Batched, seeded pixel operations (images as float in [0, 1], shape (B, C, H, W))


def gather_pixels(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[b, :, i, j] = x[b, :, rows[b, i], cols[b, j]]: a per-image crop/shift/flip in one gather."""
    b = torch.arange(x.shape[0], device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, mode: str = "circular", pad: int = 4) -> torch.Tensor:
    """Move image b by (dy[b], dx[b]) pixels (down/right positive), |d| <= pad.

    ``circular``: wrap around (torch.roll per image); ``zeros``/``reflect``: pad by ``pad`` then crop, so the
    uncovered border is black (zeros) or mirrored (reflect)."""
    _, _, h, w = x.shape
    ar_h, ar_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    if mode == "circular":
        return gather_pixels(x, (ar_h[None] - dy[:, None]) % h, (ar_w[None] - dx[:, None]) % w)
    if mode not in ("zeros", "reflect"):
        raise ValueError(f"shift mode must be circular, zeros or reflect, got {mode!r}")
    padded = F.pad(x, (pad,) * 4, mode="constant" if mode == "zeros" else "reflect")
    return gather_pixels(padded, ar_h[None] + pad - dy[:, None], ar_w[None] + pad - dx[:, None])


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with ``pad`` pixels of zero padding and random horizontal flip, per image, seeded."""
    n, _, _, w = x.shape
    dy = torch.randint(-pad, pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(-pad, pad + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    out = shift(x, dy, dx, mode="zeros", pad=pad)
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std with the CIFAR-10 channel statistics; x in [0, 1]."""
    mean = torch.tensor(CIFAR_MEAN, device=x.device, dtype=x.dtype)[:, None, None]
    std = torch.tensor(CIFAR_STD, device=x.device, dtype=x.dtype)[:, None, None]
    return (x - mean) / std


class Normalized(torch.nn.Module):
    """A classifier that takes [0, 1] images: normalise, then the model (what the measures attribute/shift)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(x))
