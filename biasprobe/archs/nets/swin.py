"""A Swin Transformer generator (SimMIM-style pixel-shuffle head) and classifier trunk, from timm's stages.

Encoder (Liu et al. 2021, timm's ``SwinTransformerStage`` / ``SwinTransformerBlock`` in NHWC layout)::

    x = LN(PatchEmbed_p(z))                      # stride-p, kernel-p conv: a linear map of each p x p patch
    x = Stage_1(x)                               # depths[0] Swin blocks at (H/p, W/p), width C
    x = Stage_i(x), i = 2..n                     # PatchMerging (2x2 concat, LN, linear 4C -> 2C), then blocks
    f = LN(x)                                    # (B, H/s, W/s, C * 2^(n-1)),  s = p * 2^(n-1)

Each block is ``x += W-MSA(LN(x)); x += MLP(LN(x))`` with window attention over window_size^2 tokens, a
learned relative position bias, and every second block's windows shifted by window_size // 2 (cyclic shift +
attention mask). timm clips a window to the stage's token grid when the grid is not larger than the
window (and then does not shift), and zero-pads grids that are not multiples of the window. Attention masks
are computed per forward (``dynamic_mask=True``), so the net also runs on sizes other than the one it was
built for. Linear layers use timm's init (trunc-normal 0.02, zero bias), as timm's SwinTransformer.

Generator head, as SimMIM's decoder (Xie et al. 2022): a per-location linear map (1x1 conv) of f to
s*s*C_out values and ``PixelShuffle(s)`` back to full resolution. There is no spatial kernel anywhere: the
only conv with kernel > 1 is the patch embedding, whose stride equals its kernel.

Sizes. The original study used patch 4, width 192, depths 2-2-6-2, window 7, MLP ratio 1 at 512 px: token
grids 128/64/32/16, i.e. 18/9/5/3 windows per side, so every stage attends locally with shifted windows. The
CPU defaults are for 128 px images (4x smaller) and keep patch 4 (the pixel granularity of a token), depths
2-2-6-2 and MLP ratio 1, with width 64 and window 4. Width 64 (stage widths 64/128/256/512, 8.1M parameters)
makes a generator step cost about what the ``vit`` default's does (forward ~0.36 vs 0.39 GMAC at 128 px); width
192 gives 63M parameters, whose Adam step alone is slower than a skip-net step on a 2-core CPU (pass
``embed_dim=192`` for the study's width). Window 4: the grids are 32/16/8/4, i.e. 8/4/2/1 windows per side,
so the first three stages stay local and shifted, and a first-stage window covers 16 of 128 px (12%; the
study: 28 of 512 px, 5%). Window 8 at 128 px would make the last two stages one global window (25% of the
image per first-stage window), and window 7 would zero-pad the 8x8 and 16x16 grids. For the study's 512 px
setting pass ``window_size=7``. Heads: ``num_heads=None`` uses head dimension 32 in every stage (as all Swin
models: 2, 4, 8, 16 heads at width 64; 6, 12, 24, 48 at width 192); an int gives the first stage's heads, doubled each stage; a tuple
gives each. H and W must be multiples of s = p * 2^(n-1) (32 by default): the smallest image has one token
per side in the last stage.

Classifier trunk: the same encoder on 32x32 CIFAR images with patch 2 and window 4 by default (grids
16/8/4/2, window clipped to 2 in the last stage); returns the (B, C_last, 2, 2) map after the final LN.
"""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed
from timm.models._manipulate import named_apply
from timm.models.swin_transformer import SwinTransformerStage
from timm.models.vision_transformer import get_init_weights_vit
from torch import nn

from biasprobe.archs import decoders
from biasprobe.errors import BiasprobeError
from biasprobe.archs.registry import register_arch


def stage_heads(num_heads, dims: list[int]) -> list[int]:
    """Heads per stage: head dim 32 (None), an int doubled each stage, or one value per stage."""
    if num_heads is None:
        return [max(1, d // 32) for d in dims]
    if isinstance(num_heads, int):
        return [num_heads * 2**i for i in range(len(dims))]
    heads = [int(h) for h in num_heads]
    if len(heads) != len(dims):
        raise BiasprobeError(f"swin: num_heads {tuple(heads)} needs one value per stage ({len(dims)})")
    return heads


def timm_init(module: nn.Module) -> nn.Module:
    """timm's ViT/Swin init on every submodule: trunc-normal(0.02) linear weights, zero biases."""
    return named_apply(get_init_weights_vit(""), module, include_root=True)


class SwinEncoder(nn.Module):
    """Patch embedding + Swin stages + final LN: (B, C, H, W) -> list of per-stage NHWC maps (see docstring)."""

    def __init__(self, in_chans, img_size, patch_size=4, embed_dim=64, depths=(2, 2, 6, 2), num_heads=None,
                 window_size=4, mlp_ratio=1.0, final_norm=True):
        super().__init__()
        h, w = img_size
        n = len(depths)
        self.reduction = patch_size * 2 ** (n - 1)
        if h % self.reduction or w % self.reduction:
            raise BiasprobeError(f"swin: image {h}x{w} is not a multiple of {self.reduction} "
                                 f"(patch {patch_size} x 2^{n - 1} patch mergings)")
        self.dims = [embed_dim * 2**i for i in range(n)]
        heads = stage_heads(num_heads, self.dims)
        for d, nh in zip(self.dims, heads):
            if d % nh:
                raise BiasprobeError(f"swin: stage width {d} is not a multiple of its {nh} heads")
        self.patch_embed = PatchEmbed(img_size=(h, w), patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim, norm_layer=nn.LayerNorm, output_fmt="NHWC",
                                      strict_img_size=False)
        grid = (h // patch_size, w // patch_size)
        self.stages = nn.ModuleList()
        for i, (depth, nh) in enumerate(zip(depths, heads)):
            self.stages.append(SwinTransformerStage(
                dim=self.dims[max(i - 1, 0)], out_dim=self.dims[i],
                input_resolution=(grid[0] // 2 ** max(i - 1, 0), grid[1] // 2 ** max(i - 1, 0)),
                depth=depth, downsample=i > 0, num_heads=nh, window_size=window_size,
                dynamic_mask=True, mlp_ratio=mlp_ratio))
        self.norm = nn.LayerNorm(self.dims[-1]) if final_norm else nn.Identity()
        timm_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)  # (B, H/s, W/s, C_last)


def reduction(patch_size, depths, **_) -> int:
    """s = p * 2^(n-1): how much the encoder shrinks H and W (the generator's size multiple and minimum)."""
    return patch_size * 2 ** (len(depths) - 1)


class SwinTrunk(nn.Module):
    """Swin encoder as a classifier trunk: (B, C, H, W) -> (B, C_last, H/s, W/s)."""

    def __init__(self, in_chans, img_size, patch_size=2, embed_dim=64, depths=(2, 2, 6, 2), num_heads=None,
                 window_size=4, mlp_ratio=1.0, final_norm=True):
        super().__init__()
        self.encoder = SwinEncoder(in_chans, img_size, patch_size=patch_size, embed_dim=embed_dim, depths=depths,
                                   num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio,
                                   final_norm=final_norm)
        self.num_features = self.encoder.dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).permute(0, 3, 1, 2)


@register_arch("swin", family="swin",
               description="Swin transformer (timm stages), SimMIM linear + pixel-shuffle head, no spatial convs",
               trunk=SwinTrunk, size_multiple=lambda img_size, **kw: reduction(**kw), min_size=reduction,
               hybrids=("3c+swin", "swin+1c", "swin+3c"))
class SwinGenerator(nn.Module):
    """Swin encoder + SimMIM head (1x1 conv to s*s*C_out, PixelShuffle(s)), or the shared ``decoder`` given
    (``biasprobe.archs.decoders``); pre-sigmoid output."""

    def __init__(self, in_chans, out_chans, img_size, patch_size=4, embed_dim=64, depths=(2, 2, 6, 2), num_heads=None,
                 window_size=4, mlp_ratio=1.0, final_norm=True, decoder=None, decoder_width=decoders.WIDTH):
        super().__init__()
        self.encoder = SwinEncoder(in_chans, img_size, patch_size=patch_size, embed_dim=embed_dim, depths=depths,
                                   num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio,
                                   final_norm=final_norm)
        s = self.encoder.reduction
        if decoder is None:  # the seed's (SimMIM) head
            self.head = nn.Conv2d(self.encoder.dims[-1], s * s * out_chans, kernel_size=1)
            self.shuffle = nn.PixelShuffle(s)
        else:  # a shared decoder (biasprobe.archs.decoders), as for every backbone that takes one
            self.head = decoders.build(decoder, self.encoder.dims[-1], out_chans, s, decoder_width, where="swin")
            self.shuffle = nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        f = self.encoder(z).permute(0, 3, 1, 2)
        return self.shuffle(self.head(f))
