"""Architecture registry, modelled on timm's: a decorator registers an architecture family by name.

An architecture is a class with four static methods (see ``archs/skipnet.py`` for a full example)::

    @register_arch("mynet", family="cnn", description="one line")
    class MyNet:
        def generator(in_chans, out_chans, img_size, **kw) -> nn.Module   # z -> image logits (pre-sigmoid)
        def trunk(in_chans, img_size, **kw) -> nn.Module  # x -> (B, D, h, w) features, attribute num_features
        def size_multiple(img_size, **kw) -> int           # H and W must be multiples of this
        def min_size(**kw) -> int                          # smallest H, W the generator accepts

``create_generator`` wraps the generator in :class:`Generator` (optional conv layers before/after, then a
sigmoid, so every generator maps to [0, 1]); ``create_classifier`` wraps the trunk in :class:`Classifier`
(optional conv layers, global average pooling, linear head). Both pass ``**kw`` straight through.

Hybrids use one general mechanism for any registered backbone: ``kc+NAME`` puts k conv layers on the
backbone's input, ``NAME+kc`` puts k conv layers on its output (the image for a generator, the feature map
for a classifier); ``kc+NAME+jc`` does both.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from biasprobe.errors import BiasprobeError

FAMILIES = ("cnn", "vit", "swin", "hybrid", "other")


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture: its builders and size requirements, plus hybrid conv counts."""

    name: str
    family: str
    description: str
    impl: type
    backbone: str | None = None  # for hybrids: the registered backbone name
    convs_before: int = 0
    convs_after: int = 0

    def size_multiple(self, img_size=(128, 128), **kw) -> int:
        return int(self.impl.size_multiple(_hw(img_size), **_backbone_kw(kw)))

    def min_size(self, **kw) -> int:
        return int(self.impl.min_size(**_backbone_kw(kw)))


_REGISTRY: dict[str, ArchSpec] = {}
_HYBRID = re.compile(r"^(?:(\d+)c\+)?(.+?)(?:\+(\d+)c)?$")


def register_arch(name: str, *, family: str, description: str) -> Callable[[type], type]:
    """Class decorator: register an architecture under ``name`` (see module docstring)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def wrap(cls: type) -> type:
        for method in ("generator", "trunk", "size_multiple", "min_size"):
            if not callable(getattr(cls, method, None)):
                raise TypeError(f"architecture {name!r} ({cls.__name__}) lacks a {method}() method")
        _REGISTRY[name] = ArchSpec(name=name, family=family, description=description, impl=cls)
        return cls

    return wrap


def register_hybrid(backbone: str, before: int = 0, after: int = 0) -> str:
    """List a hybrid name (e.g. ``3c+vit``) in the registry; any other k also works without this."""
    spec = get_arch(_hybrid_name(backbone, before, after))
    _REGISTRY[spec.name] = spec
    return spec.name


def _hybrid_name(backbone: str, before: int, after: int) -> str:
    return f"{before}c+" * bool(before) + backbone + f"+{after}c" * bool(after)


_builtins_loaded = False


def _load_builtins() -> None:
    """Import the built-in architectures on first use (keeps ``import biasprobe`` light for sweep workers)."""
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        importlib.import_module("biasprobe.archs")


def get_arch(name: str) -> ArchSpec:
    """The spec for ``name``, including hybrid names built on any registered backbone."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    m = _HYBRID.match(name)
    if m and (m.group(1) or m.group(3)) and m.group(2) in _REGISTRY:
        base = _REGISTRY[m.group(2)]
        before, after = int(m.group(1) or 0), int(m.group(3) or 0)
        where = " and ".join(
            s for s in (f"{before} conv before" * bool(before), f"{after} conv after" * bool(after)) if s
        )
        return ArchSpec(
            name=name,
            family="hybrid",
            description=f"{base.name} with {where} (3x3, reflection pad, ReLU between)",
            impl=base.impl,
            backbone=base.name,
            convs_before=before,
            convs_after=after,
        )
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise BiasprobeError(
        f"unknown architecture {name!r}{hint} (list them with `biasprobe archs`; "
        f"hybrids are kc+NAME or NAME+kc)"
    )


def list_archs(pattern: str = "*") -> list[str]:
    """Registered names matching an fnmatch pattern, sorted."""
    _load_builtins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def load_arch_module(path_or_module: str) -> None:
    """Import a user's module (a .py path or a dotted name) so its @register_arch calls run."""
    path = Path(path_or_module)
    try:
        if path.suffix == ".py" or path.exists():
            if not path.is_file():
                raise BiasprobeError(f"--arch-module {path_or_module}: no such file")
            spec = importlib.util.spec_from_file_location(f"biasprobe_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(path_or_module)
    except ImportError as exc:
        raise BiasprobeError(f"--arch-module {path_or_module}: cannot import it ({exc})") from exc


# ----------------------------------------------------------------------------------------------
# Building networks


def conv_stack(channels: int, k: int, width: int | None = None, norm: bool = False) -> nn.Sequential:
    """k 3x3 conv layers channels -> channels (hidden width ``width``), reflection padding, ReLU
    between layers (not after the last), optional BatchNorm; each layer has its own weights."""
    layers: list[nn.Module] = []
    width = width or channels
    for i in range(k):
        c_in = channels if i == 0 else width
        c_out = channels if i == k - 1 else width
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]
        if i < k - 1:
            if norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """before convs -> backbone -> after convs -> sigmoid. Maps (B, C_in, H, W) to (B, C_out, H, W) in [0, 1]."""

    def __init__(self, backbone: nn.Module, before: nn.Module, after: nn.Module, arch: str):
        super().__init__()
        self.arch = arch
        self.before = before
        self.backbone = backbone
        self.after = after

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.after(self.backbone(self.before(z))))


class Classifier(nn.Module):
    """before convs (on the image) -> trunk -> after convs (on the feature map) -> mean pool -> linear."""

    def __init__(self, trunk: nn.Module, before: nn.Module, after: nn.Module, num_classes: int, arch: str):
        super().__init__()
        self.arch = arch
        self.before = before
        self.trunk = trunk
        self.after = after
        self.head = nn.Linear(trunk.num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.trunk(self.before(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _hw(img_size) -> tuple[int, int]:
    if isinstance(img_size, int):
        return (img_size, img_size)
    h, w = img_size
    return (int(h), int(w))


_CONV_KW = ("conv_width", "conv_norm")


def _backbone_kw(kw: dict) -> dict:
    return {k: v for k, v in kw.items() if k not in _CONV_KW}


def _convs(spec: ArchSpec, channels_before: int, channels_after: int, kw: dict) -> tuple[nn.Module, nn.Module]:
    width, norm = kw.get("conv_width"), bool(kw.get("conv_norm", False))
    before = conv_stack(channels_before, spec.convs_before, width, norm) if spec.convs_before else nn.Identity()
    after = conv_stack(channels_after, spec.convs_after, width, norm) if spec.convs_after else nn.Identity()
    return before, after


def create_generator(name: str, in_chans: int = 32, out_chans: int = 3, img_size=(128, 128), **kw) -> Generator:
    """Build the generator ``name`` for inputs of ``in_chans`` channels and outputs in [0, 1].

    ``img_size`` is the (H, W) the net is built for (position embeddings, default patch sizes); kwargs go
    straight to the architecture's constructor, except ``conv_width``/``conv_norm`` for hybrid conv layers.
    """
    spec = get_arch(name)
    hw = _hw(img_size)
    backbone = spec.impl.generator(in_chans=in_chans, out_chans=out_chans, img_size=hw, **_backbone_kw(kw))
    before, after = _convs(spec, in_chans, out_chans, kw)
    return Generator(backbone, before, after, arch=name)


def create_classifier(name: str, num_classes: int = 10, img_size=(32, 32), in_chans: int = 3, **kw) -> Classifier:
    """Build the classifier counterpart of ``name``: the same trunk, global pooling and a linear head."""
    spec = get_arch(name)
    trunk = spec.impl.trunk(in_chans=in_chans, img_size=_hw(img_size), **_backbone_kw(kw))
    before, after = _convs(spec, in_chans, trunk.num_features, kw)
    return Classifier(trunk, before, after, num_classes, arch=name)


def check_size(name: str, img_size, **kw) -> None:
    """Raise a one-line BiasprobeError unless (H, W) suits the architecture."""
    spec = get_arch(name)
    h, w = _hw(img_size)
    lo, mult = spec.min_size(**kw), spec.size_multiple((h, w), **kw)
    if min(h, w) < lo:
        raise BiasprobeError(f"image {h}x{w} is too small for {name}: it needs at least {lo}x{lo} pixels")
    if h % mult or w % mult:
        raise BiasprobeError(f"image {h}x{w} does not suit {name}: H and W must be multiples of {mult}")


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
