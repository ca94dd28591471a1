"""Swin-Unet (Cao et al. 2022, "Swin-Unet: Unet-like pure transformer"): a conv-free hierarchical encoder-
decoder, built from timm's Swin stages, following the official ``SwinTransformerSys`` layout.

With n stages, widths C_i = C * 2^i and token grids G_i = (H, W) / (p * 2^i), all tensors NHWC::

    x    = LN(PatchEmbed_p(z))                          # stride-p, kernel-p conv (per-patch linear map)
    for i in 0..n-1:                                    # encoder
        x = PatchMerging(x)          if i > 0           # 2x2 concat, LN, linear 4C_{i-1} -> C_i
        skip_i = x                                      # Swin-Unet's skip: the stage input, before its blocks
        x = SwinBlocks_{depths[i]}(x)                   # the last encoder stage is the bottleneck
    x = LN(x)
    x = PatchExpand(x)                                  # linear C_{n-1} -> 2C_{n-1}, rearrange to 2x grid, C_{n-2}, LN
    for j in n-2..0:                                    # decoder
        x = Linear(cat[x, skip_j])                      # 2C_j -> C_j
        x = SwinBlocks_{depths[j]}(x)                   # same depth, heads and window as encoder stage j
        x = PatchExpand(x)           if j > 0
    x = LN(x)
    x = FinalPatchExpand_p(x)                           # linear C -> p*p*C, rearrange to (H, W, C), LN
    out = Linear(x)                                     # C -> C_out per pixel (Swin-Unet's bias-free 1x1 conv)

PatchExpand rearranges ``b h w (p1 p2 c) -> b (h p1) (w p2) c`` (einops notation); its linear layers have no
bias, as in the original. No spatial kernel anywhere: the only conv is the stride-p, kernel-p patch
embedding. Swin blocks, window handling, heads and init are as in ``swin.py``.

Defaults: the swin generator's (patch 4, width 64, window 4 at 128 px, MLP ratio 1; see ``swin.py``)
with Swin-Unet's own depths 2-2-2-2 (the decoder mirrors the encoder, so 2-2-6-2 would put 6 more 768-wide
blocks into the decoder and double the parameters). H and W must be multiples of p * 2^(n-1) (32 by default).

Classifier trunk: the encoder alone (patch 2, window 4 on 32x32 by default) with its final LN, returning
(B, C_{n-1}, H/s, W/s) — the same as the swin trunk but with this net's depths.
"""

from __future__ import annotations

import torch
from torch import nn

from biasprobe.archs.nets.swin import SwinEncoder, reduction, stage_heads, timm_init
from biasprobe.archs.registry import register_arch
from timm.models.swin_transformer import SwinTransformerStage


class PatchExpand(nn.Module):
    """Linear C -> scale^2 * C_out (no bias), rearrange to scale x the grid, LayerNorm(C_out)."""

    def __init__(self, dim: int, out_dim: int, scale: int):
        super().__init__()
        self.scale, self.out_dim = scale, out_dim
        self.expand = nn.Linear(dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        s, c = self.scale, self.out_dim
        x = self.expand(x).reshape(b, h, w, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, c)
        return self.norm(x)


class SwinUnetTrunk(nn.Module):
    """The Swin-Unet encoder as a classifier trunk: (B, C, H, W) -> (B, C_last, H/s, W/s)."""

    def __init__(self, in_chans, img_size, patch_size=2, embed_dim=64, depths=(2, 2, 2, 2), num_heads=None,
                 window_size=4, mlp_ratio=1.0):
        super().__init__()
        self.encoder = SwinEncoder(in_chans, img_size, patch_size=patch_size, embed_dim=embed_dim, depths=depths,
                                   num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio)
        self.num_features = self.encoder.dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).permute(0, 3, 1, 2)


@register_arch("swin_unet", family="swin",
               description="Swin-Unet: Swin encoder, patch-expanding decoder with skips, no spatial convs",
               trunk=SwinUnetTrunk, size_multiple=lambda img_size, **kw: reduction(**kw), min_size=reduction)
class SwinUnetGenerator(nn.Module):
    def __init__(self, in_chans, out_chans, img_size, patch_size=4, embed_dim=64, depths=(2, 2, 2, 2),
                 num_heads=None, window_size=4, mlp_ratio=1.0):
        super().__init__()
        self.encoder = SwinEncoder(in_chans, img_size, patch_size=patch_size, embed_dim=embed_dim, depths=depths,
                                   num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio)
        dims, n = self.encoder.dims, len(depths)
        heads = stage_heads(num_heads, dims)
        grid = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.expand_bottleneck = PatchExpand(dims[-1], dims[-2], 2) if n > 1 else nn.Identity()
        self.concat = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.expands = nn.ModuleList()
        for j in range(n - 2, -1, -1):
            self.concat.append(nn.Linear(2 * dims[j], dims[j]))
            self.stages.append(SwinTransformerStage(
                dim=dims[j], out_dim=dims[j], input_resolution=(grid[0] // 2**j, grid[1] // 2**j),
                depth=depths[j], downsample=False, num_heads=heads[j], window_size=window_size,
                dynamic_mask=True, mlp_ratio=mlp_ratio))
            self.expands.append(PatchExpand(dims[j], dims[j - 1], 2) if j > 0 else nn.Identity())
        self.norm_up = nn.LayerNorm(dims[0])
        self.final_expand = PatchExpand(dims[0], dims[0], patch_size)
        self.out = nn.Linear(dims[0], out_chans, bias=False)
        for m in (self.expand_bottleneck, self.concat, self.stages, self.expands, self.norm_up,
                  self.final_expand, self.out):
            timm_init(m)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        x = enc.patch_embed(z)
        skips = []
        for stage in enc.stages:
            x = stage.downsample(x)
            skips.append(x)
            x = stage.blocks(x)
        x = self.expand_bottleneck(enc.norm(x))
        for k, (concat, stage, expand) in enumerate(zip(self.concat, self.stages, self.expands)):
            j = len(skips) - 2 - k
            x = expand(stage(concat(torch.cat([x, skips[j]], dim=-1))))
        x = self.out(self.final_expand(self.norm_up(x)))
        return x.permute(0, 3, 1, 2)
