"""The network factory: registered architectures (:mod:`biasprobe.archs.registry`) -> generators and classifiers.

``create_generator`` wraps the architecture's generator in :class:`Generator` (optional conv layers before/after,
then a sigmoid, so every generator maps to [0, 1]); ``create_classifier`` wraps its trunk in :class:`Classifier`
(optional conv layers, global average pooling, linear head). Hybrid names (``kc+NAME``, ``NAME+kc``) add the conv
layers (:func:`conv_stack`; a stem before the backbone ends in a scale-preserving norm, :func:`stem`). Keyword
arguments are checked against the architecture's nets' signatures (:func:`check_arch_kwargs`) and each net gets the
ones it names.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from biasprobe.errors import BiasprobeError
from biasprobe.archs.registry import CONV_KWARGS, ArchSpec, as_hw, get_arch, keyword_params


def conv_stack(channels: int, k: int, width: int | None = None, norm: bool = False,
               init: str = "torch") -> nn.Sequential:
    """k 3x3 conv layers channels -> channels (hidden width ``width``), reflection padding, ReLU
    between layers (not after the last), optional BatchNorm; each layer has its own weights.

    ``init``: "torch" keeps PyTorch's default conv init; "scaled" re-initialises for scale (:func:`scaled_init_`)."""
    if init not in CONV_INITS:
        raise BiasprobeError(f"conv init must be one of {', '.join(CONV_INITS)}, got {init!r}")
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
    stack = nn.Sequential(*layers)
    if init == "scaled":
        scaled_init_(stack)
    return stack


CONV_INITS = ("scaled", "torch")


@torch.no_grad()
def scaled_init_(stack: nn.Sequential) -> nn.Sequential:
    """Re-initialise a conv stack so that it passes its input's scale through: the mean square of its output
    equals its input's in expectation over the weights (He et al. 2015), with zero biases (see :func:`stem`).
    Weights N(0, g^2 / fan_in): g = 1 for the first conv (its input is the raw input) and g = sqrt(2) for the
    convs that follow a ReLU (which halves the mean square)."""
    first = True
    for m in stack.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            gain = 1.0 if first else 2.0**0.5
            nn.init.normal_(m.weight, std=gain / fan_in**0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            first = False
    return stack


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


class WholeClassifier(nn.Module):
    """before convs -> a complete classifier with its own pooling and head (a timm model); after convs, if any, go
    between its ``forward_features`` (which must be a (B, D, h, w) map) and ``forward_head``."""

    def __init__(self, model: nn.Module, before: nn.Module, after: nn.Module, arch: str):
        super().__init__()
        self.arch = arch
        self.before = before
        self.model = model
        self.after = after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.before(x)
        if isinstance(self.after, nn.Identity):
            return self.model(x)
        f = self.model.forward_features(x)
        if f.dim() != 4:
            raise BiasprobeError(f"{self.arch}: convs after the backbone need an NCHW feature map, and its features "
                                 f"have shape {tuple(f.shape)}")
        return self.model.forward_head(self.after(f))


# ----------------------------------------------------------------------------------------------
# Keyword arguments


def check_arch_kwargs(name: str, **kw) -> None:
    """Raise a one-line BiasprobeError naming the keyword and the accepted ones unless every keyword is one the
    architecture's generator or trunk names (or either takes ``**kw``), and its value is of its default's kind: a
    number for a number (or a list of numbers, per stage), a list for a list, text for text, True/False for a flag."""
    spec = get_arch(name)
    accepted, open_ended = _accepted(spec)
    listed = ", ".join(accepted) or "none"
    for key, value in {**dict(spec.kwargs), **kw}.items():
        if key not in accepted and not open_ended:
            raise BiasprobeError(f"{name}: unknown keyword argument {key!r} (accepted: {listed})")
        want = _kind(accepted.get(key, inspect.Parameter.empty), value)
        if want:
            raise BiasprobeError(f"{name}: keyword argument {key}={value!r} must be {want} like its default "
                                 f"{accepted[key]!r} (accepted: {listed})")


def _accepted(spec: ArchSpec) -> tuple[dict, bool]:
    """Keyword -> default of the generator and trunk together (the generator's default first), and whether one of
    them takes any keyword."""
    b = spec.base().builders
    accepted, open_ended = {}, False
    for fn in (b.generator, b.trunk):
        if fn is not None:
            params, var_kw = keyword_params(fn)
            for k, v in params.items():
                if accepted.get(k, inspect.Parameter.empty) is inspect.Parameter.empty:
                    accepted[k] = v
            open_ended |= var_kw
    if spec.backbone:
        accepted.update({k: None for k in CONV_KWARGS})
    return accepted, open_ended


def _kind(default, value) -> str | None:
    """What ``value`` should be for a keyword with this default, or None when it fits."""
    number = (int, float)
    if default is inspect.Parameter.empty or default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "True or False"
    if isinstance(default, (int, float)):
        ok = (int,) if isinstance(default, int) else number
        fits = lambda v: isinstance(v, ok) and not isinstance(v, bool)  # noqa: E731
        if fits(value) or (isinstance(value, (list, tuple)) and value and all(fits(v) for v in value)):
            return None  # a list: per-stage values, which some nets take
        return "an integer" if ok == (int,) else "a number"
    if isinstance(default, (list, tuple)):
        return None if isinstance(value, (list, tuple)) else "a list"
    if isinstance(default, str):
        return None if isinstance(value, str) else "text"
    return None


def _build(fn, standard: dict, kw: dict):
    """Call a builder with the standard arguments and keywords its signature names (all if it takes **kw)."""
    params, var_kw = keyword_params(fn)
    names = inspect.signature(fn).parameters
    args = {k: v for k, v in standard.items() if k in names or var_kw}
    args.update({k: v for k, v in kw.items() if (k in params or var_kw) and k not in CONV_KWARGS})
    return fn(**args)


def _convs(spec: ArchSpec, channels_before: int, channels_after: int, kw: dict) -> tuple[nn.Module, nn.Module]:
    """The hybrid's conv layers before (the stem) and after the backbone; see :func:`stem`. The layers after keep
    PyTorch's default init and no norm (they feed a learned head or the sigmoid, not a backbone)."""
    width, norm = kw.get("conv_width"), bool(kw.get("conv_norm", False))
    stem_norm = kw.get("stem_norm", True)
    if not isinstance(stem_norm, bool):
        raise BiasprobeError(f"{spec.name}: keyword argument stem_norm={stem_norm!r} must be True or False")
    before = stem(channels_before, spec.convs_before, width, norm, stem_norm) if spec.convs_before else nn.Identity()
    after = conv_stack(channels_after, spec.convs_after, width, norm) if spec.convs_after else nn.Identity()
    return before, after


def stem(channels: int, k: int, width: int | None, norm: bool, stem_norm: bool = True) -> nn.Sequential:
    """The k conv layers of a ``kc+NAME`` hybrid, between its input and the backbone.

    ``stem_norm=True`` (the default): scale-preserving init (:func:`scaled_init_`, zero biases) and a per-sample
    ``GroupNorm(1, C)`` (LayerNorm over C, H, W, affine) after the last conv, so the backbone gets a std-1 input
    at init whatever the stem's width, depth or random draw, and the stem cannot shrink it again in training.

    Why: the backbone's patch embedding is built (timm init) for the normalised image, std ~1. PyTorch's default
    conv init (kaiming_uniform, a=sqrt(5): weight variance 1/(3 fan_in)) divides the mean square by ~3 per layer
    and ~6 across a ReLU, so three layers handed the backbone std 0.04-0.16 (depending on the seed), much of it the
    biases' constant offsets, and the 3c+vit / 3c+swin classifiers sat at chance. The scaled init alone keeps the
    mean square only in expectation: with 3 channels and natural images' correlated pixels its realised std ranges
    0.2-1.7 over seeds, hence the norm. Per sample, not BatchNorm: no dependence on the batch or on train/eval
    mode (the measures run in eval mode), and a DIP generator (one input per net) is normalised the same way.
    Zero biases, so that what is normalised is the input's content, not the init's offsets.

    ``stem_norm=False``: the seed study's stem (PyTorch's default init, no norm), as ``3c+vit`` was before."""
    if not stem_norm:
        return conv_stack(channels, k, width, norm)
    return nn.Sequential(*conv_stack(channels, k, width, norm, init="scaled"), nn.GroupNorm(1, channels))


# ----------------------------------------------------------------------------------------------
# The factory


def create_generator(name: str, in_chans: int = 32, out_chans: int = 3, img_size=(128, 128), **kw) -> Generator:
    """Build the generator ``name`` for inputs of ``in_chans`` channels and outputs in [0, 1].

    ``img_size`` is the (H, W) the net is built for (position embeddings, default patch sizes); kwargs go to the
    architecture's nets (see :func:`check_arch_kwargs`), ``conv_width``/``conv_norm``/``stem_norm`` to a hybrid's conv
    layers.
    """
    check_arch_kwargs(name, **kw)
    spec = get_arch(name)
    kw = {**dict(spec.kwargs), **kw}
    backbone = _build(spec.base().builders.generator,
                      dict(in_chans=in_chans, out_chans=out_chans, img_size=as_hw(img_size)), kw)
    before, after = _convs(spec, in_chans, out_chans, kw)
    return Generator(backbone, before, after, arch=name)


def create_classifier(name: str, num_classes: int = 10, img_size=(32, 32), in_chans: int = 3, **kw) -> Classifier:
    """Build the classifier counterpart of ``name``: its trunk, global pooling and a linear head."""
    check_arch_kwargs(name, **kw)
    spec = get_arch(name)
    kw = {**dict(spec.kwargs), **kw}
    if spec.base().builders.classifier is not None:
        model = _build(spec.base().builders.classifier,
                       dict(in_chans=in_chans, img_size=as_hw(img_size), num_classes=num_classes), kw)
        before, after = _convs(spec, in_chans, model.num_features, kw)
        return WholeClassifier(model, before, after, arch=name)
    trunk_fn = spec.base().builders.trunk
    if trunk_fn is None:
        raise BiasprobeError(f"{name} has no classifier trunk (register_arch(..., trunk=...))")
    trunk = _build(trunk_fn, dict(in_chans=in_chans, img_size=as_hw(img_size)), kw)
    before, after = _convs(spec, in_chans, trunk.num_features, kw)
    return Classifier(trunk, before, after, num_classes, arch=name)


def check_size(name: str, img_size, **kw) -> None:
    """Raise a one-line BiasprobeError unless the keywords suit the architecture and (H, W) suits its generator."""
    check_arch_kwargs(name, **kw)
    spec = get_arch(name)
    h, w = as_hw(img_size)
    lo, mult = spec.min_size(**kw), spec.size_multiple((h, w), **kw)
    if min(h, w) < lo:
        raise BiasprobeError(f"image {h}x{w} is too small for {name}: it needs at least {lo}x{lo} pixels")
    if h % mult or w % mult:
        raise BiasprobeError(f"image {h}x{w} does not suit {name}: H and W must be multiples of {mult}")


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

