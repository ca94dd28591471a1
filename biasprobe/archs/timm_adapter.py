"""Any timm model as an architecture: ``timm:NAME`` (``timm:resnet18``, ``timm:convnext_atto``,
``timm:vit_tiny_patch16_224``), always randomly initialised (``pretrained=False``; nothing is downloaded).

The registry registers a ``timm:NAME`` on first lookup (:func:`register`, plugged in as its resolver for the prefix
``timm:`` by ``biasprobe/archs/__init__.py``); timm is imported then, not when the
registry is. ``--arch-kw`` keyword arguments go to ``timm.create_model`` unchanged (``patch_size=8``,
``drop_path_rate=0.1``, ...); one it rejects is a one-line error.

Generator: the backbone is ``timm.create_model(NAME, pretrained=False, in_chans=in_chans, num_classes=0, **kw)``,
plus ``img_size`` where the model takes it (ViT-like models build their position embeddings for it). Its
feature map is the last of ``forward_intermediates`` (timm >= 1.0; NCHW, ``stop_early``, without the final norm,
whose layers and the head are pruned), a (B, D, h, w) grid with h = H / s, w = W / s. The decoder is the same for
every backbone, SimMIM's (as ``swin``'s): a 1x1 conv D -> s*s*out_chans and ``PixelShuffle(s)``, no spatial
kernel; the factory adds the sigmoid, as for every generator. ``decoder=`` (and ``decoder_width``) picks another
of :mod:`biasprobe.archs.decoders`, the same for every backbone, e.g. ``timm:resnet18[decoder=bilinear]`` (a name with
keyword arguments, ``registry.split_kwargs``). The rule for sizes: H and W must be multiples of s
(timm's ``feature_info`` reduction: 32 for ResNets and ConvNeXts, the patch for ViTs) and the grid at least
``MIN_GRID`` = 4 cells per side, i.e. s <= H / 4 (a 1x1-conv cell then paints at most a quarter of the side):
``timm:convnext_atto`` and ``timm:resnet18`` need 128 px, a patch-16 ViT 64 px. A coarser grid is refused with
how to fix it (a larger ``--size``, or a smaller stride or patch through ``--arch-kw``).

Classifier: ``timm.create_model(NAME, pretrained=False, num_classes=10, in_chans=3, **kw)``, timm's own pooling
and head. On CIFAR's 32x32: a model that takes ``img_size`` gets ``img_size=32``, and if its patch embedding's
patch is larger than 4 (16 for most ViTs: a 2x2 grid) it is rebuilt with ``patch_size=4`` (an 8x8 grid, as the
built-in ``vit`` trunk) unless ``--arch-kw`` gives one; every other model is built as it is: CNN stems that reduce
32x32 to a 1x1 feature map (stride 32) still run, on one cell. Hybrids: ``3c+timm:NAME`` (convs on the input)
works for both; ``timm:NAME+kc`` puts the convs on the generator's image and between a classifier's
``forward_features`` and ``forward_head`` (models with NCHW features: CNNs, not ViTs).

``timm.list_models()`` lists the names; ``biasprobe archs 'timm:convnext*'`` lists those matching.
"""

from __future__ import annotations

import difflib

import timm
import torch
from timm.layers import PatchEmbed
from torch import nn

from biasprobe.archs import decoders
from biasprobe.errors import BiasprobeError
from biasprobe.archs.registry import as_hw, register_arch

PREFIX = "timm:"
MIN_GRID = 4  # the feature grid's least cells per side for the generator
CIFAR_PATCH = 4  # a classifier's patch at 32x32 when the model's own is larger (an 8x8 token grid)

_GRIDS: dict[tuple, tuple[int, tuple[int, int]]] = {}  # (name, kw, in_chans, (H, W)) -> (D, (h, w))
_REDUCTIONS: dict[tuple, int] = {}  # (name, kw) -> s


def register(name: str) -> None:
    """Register ``timm:NAME`` (a known timm model) with its builders; the registry's resolver for ``timm:``."""
    model = name[len(PREFIX):]
    names = timm.list_models(pretrained=False)
    if model not in names:
        close = difflib.get_close_matches(model, names, n=5, cutoff=0.6)
        hint = f"; close names: {', '.join(PREFIX + c for c in close)}" if close else ""
        raise BiasprobeError(f"unknown timm model {model!r}{hint} (list them with timm.list_models())")

    def generator(in_chans, out_chans, img_size, decoder="pixelshuffle", decoder_width=decoders.WIDTH, **kw):
        return TimmGenerator(model, in_chans, out_chans, img_size, decoder=decoder, decoder_width=decoder_width, **kw)

    def classifier(in_chans, img_size, num_classes, **kw):
        return create_classifier(model, in_chans, img_size, num_classes, **backbone_kw(kw))

    register_arch(name, family="timm",
                  description=f"timm {model} (random init), 1x1 conv + pixel-shuffle decoder on its last features",
                  classifier=classifier,
                  size_multiple=lambda img_size, **kw: reduction(model, **backbone_kw(kw)),
                  min_size=lambda **kw: MIN_GRID * reduction(model, **backbone_kw(kw)))(generator)


def backbone_kw(kw: dict) -> dict:
    """The keyword arguments for ``timm.create_model``: all but the decoder's (the generator's alone)."""
    return {k: v for k, v in kw.items() if k not in ("decoder", "decoder_width")}


def create_model(model: str, **kw) -> nn.Module:
    """``timm.create_model(model, pretrained=False, **kw)``; a keyword it rejects is a one-line error."""
    try:
        return timm.create_model(model, pretrained=False, **kw)
    except TypeError as exc:
        raise BiasprobeError(f"{PREFIX}{model}: timm.create_model rejects the keyword arguments "
                             f"({str(exc).splitlines()[0]})") from exc


def create_backbone(model: str, in_chans: int, img_size=None, **kw) -> nn.Module:
    """The model without its head, with ``img_size`` where it takes it."""
    base = dict(in_chans=in_chans, num_classes=0, **kw)
    if img_size is not None and "img_size" not in kw:
        try:
            return timm.create_model(model, pretrained=False, img_size=as_hw(img_size), **base)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise BiasprobeError(f"{PREFIX}{model}: timm.create_model rejects the keyword arguments "
                                     f"({str(exc).splitlines()[0]})") from exc
    return create_model(model, **base)


def _key(kw: dict) -> str:
    return repr(sorted(kw.items()))


def reduction(model: str, **kw) -> int:
    """s: how much the backbone shrinks H and W (its last feature_info reduction), cached per (model, kw)."""
    key = (model, _key(kw))
    if key not in _REDUCTIONS:
        with torch.device("meta"):  # no weights are drawn or allocated
            net = create_backbone(model, 3, **kw)
        info = getattr(net, "feature_info", None)
        if not info:
            raise BiasprobeError(f"{PREFIX}{model} has no feature_info (timm's feature map description), "
                                 f"so it cannot be sized for a generator")
        _REDUCTIONS[key] = int(info[-1]["reduction"])
    return _REDUCTIONS[key]


def last_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last intermediate of ``forward_intermediates``, (B, D, h, w)."""
    return net.forward_intermediates(x, indices=1, stop_early=True, intermediates_only=True)[-1]


@torch.no_grad()
def feature_grid(model: str, net: nn.Module, in_chans: int, hw: tuple[int, int], kw: dict):
    """(D, (h, w)) of ``net``'s last feature map at (H, W), from one eval-mode forward on zeros (no running
    statistics change, no random draws), cached per (model, kw, in_chans, (H, W))."""
    key = (model, _key(kw), in_chans, hw)
    if key not in _GRIDS:
        mode = net.training
        net.eval()
        try:
            f = last_features(net, torch.zeros(1, in_chans, *hw))
        finally:
            net.train(mode)
        if f.dim() != 4:
            raise BiasprobeError(f"{PREFIX}{model}: its last intermediate has shape {tuple(f.shape)}, not NCHW")
        _GRIDS[key] = (int(f.shape[1]), (int(f.shape[2]), int(f.shape[3])))
    return _GRIDS[key]


class TimmGenerator(nn.Module):
    """timm backbone's last feature map -> a decoder (``biasprobe.archs.decoders``; default pixel shuffle):
    (B, C_in, H, W) -> (B, C_out, H, W), pre-sigmoid. ``grid`` is the feature map's (h, w)."""

    def __init__(self, model: str, in_chans: int, out_chans: int, img_size, decoder: str = "pixelshuffle",
                 decoder_width: int = decoders.WIDTH, **kw):
        super().__init__()
        h, w = as_hw(img_size)
        self.backbone = create_backbone(model, in_chans, (h, w), **kw)
        if not hasattr(self.backbone, "forward_intermediates"):
            raise BiasprobeError(f"{PREFIX}{model} has no forward_intermediates in timm {timm.__version__}, "
                                 f"so its feature map cannot be decoded; pick another model")
        if hasattr(self.backbone, "prune_intermediate_layers"):  # drop the unused final norm and head
            self.backbone.prune_intermediate_layers(indices=1, prune_norm=True, prune_head=True)
        dim, self.grid = feature_grid(model, self.backbone, in_chans, (h, w), kw)
        gh, gw = self.grid
        s = h // gh
        if gh * s != h or gw * s != w:
            raise BiasprobeError(f"{PREFIX}{model}: its {gh}x{gw} feature grid does not divide the {h}x{w} image "
                                 f"evenly; use H, W multiples of {reduction(model, **kw)}")
        if min(gh, gw) < MIN_GRID:
            raise BiasprobeError(f"{PREFIX}{model} at {h}x{w} gives a {gh}x{gw} feature grid (stride {s}), coarser "
                                 f"than the {MIN_GRID}x{MIN_GRID} a generator needs: use --size {MIN_GRID * s} or "
                                 f"more, or a smaller stride/patch via --arch-kw (e.g. patch_size=8 for a ViT)")
        self.head = decoders.build(decoder, dim, out_chans, s, decoder_width, where=f"{PREFIX}{model}")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(last_features(self.backbone, z))


def create_classifier(model: str, in_chans: int, img_size, num_classes: int, **kw) -> nn.Module:
    """timm's classifier with its own head; models taking ``img_size`` get it, and ``patch_size=CIFAR_PATCH`` when
    their patch is larger and ``kw`` names none (see the module docstring)."""
    base = dict(num_classes=num_classes, in_chans=in_chans, **kw)
    try:
        net = timm.create_model(model, pretrained=False, img_size=as_hw(img_size), **base)
    except TypeError:  # no img_size (a CNN), or a keyword of the user's that the next call reports
        return create_model(model, **base)
    embed = next((m for m in net.modules() if isinstance(m, PatchEmbed)), None)  # ViTs' patch_embed, mixers' stem
    patch = getattr(embed, "patch_size", None)
    if patch is not None and "patch_size" not in kw and max(as_hw(patch)) > CIFAR_PATCH:
        try:
            net = timm.create_model(model, pretrained=False, img_size=as_hw(img_size), patch_size=CIFAR_PATCH,
                                    **base)
        except (TypeError, KeyError) as exc:  # the builder fixes its patch (resmlp_*, gmlp_*, mixer_*)
            raise BiasprobeError(f"{PREFIX}{model}: its {max(as_hw(patch))}-pixel patch gives a 32x32 image "
                                 f"{32 // max(as_hw(patch))}x{32 // max(as_hw(patch))} tokens and its builder "
                                 f"does not take patch_size={CIFAR_PATCH} ({str(exc).splitlines()[0]}); pick a "
                                 f"model whose builder takes patch_size (e.g. the mixer_* models)") from exc
    return net
