"""A plain Vision Transformer generator and classifier trunk, built from timm's ViT blocks.

Generator (image-to-image ViT, as in "transformers as deep image priors" studies)::

    tokens = PatchEmbed_p(z) + pos              # stride-p, kernel-p conv = a linear map of each p x p patch
    tokens = Block_depth(...Block_1(tokens))     # timm Block: x += Attn(LN(x)); x += MLP(LN(x))   (pre-norm)
    out    = Linear(LN(tokens))                  # each token -> p*p*C_out values
    image  = unpatchify(out)                     # (B, gh, gw, p, p, C) -> (B, C, gh*p, gw*p)

No class token; learned absolute position embeddings (one per token of the grid the net is built for,
timm's trunc-normal(0.02) init), resampled bicubically with ``timm.layers.resample_abs_pos_embed`` when the
net is run on another grid, so any H, W that are multiples of the patch size work. All linear layers use
timm's ViT init (trunc-normal 0.02 weights, zero biases).

The original study used patch 32, width 192, depth 5, 8 heads, MLP ratio 1 on 512x512 images, a 16x16
token grid. To keep that grid at CPU sizes the default patch is ``min(H, W) // 16`` (8 at 128 px, 4 at
64 px); width, depth, heads and MLP ratio keep the original values.

``decoder=`` (pixelshuffle, bilinear, transposed; see ``biasprobe.archs.decoders``) replaces the linear head with the
decoder every backbone shares, on the (D, gh, gw) token grid; None (the default) keeps the seed's head.

Classifier trunk: the same blocks on a 32x32 image with patch ``min(H, W) // 8`` (4 on CIFAR, an 8x8 grid),
final LayerNorm, returning the token grid as a (B, D, 8, 8) map (the factory's Classifier mean-pools it).
"""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models._manipulate import named_apply
from timm.models.vision_transformer import Block, get_init_weights_vit, init_weights_vit_timm
from torch import nn

from biasprobe.archs import decoders
from biasprobe.errors import BiasprobeError
from biasprobe.archs.registry import register_arch


def default_patch(img_size, patch_size: int | None, grid: int) -> int:
    """The given patch size, or the one that gives a ``grid``-token short side."""
    if patch_size is not None:
        return int(patch_size)
    return max(1, min(img_size) // grid)


class ViTBody(nn.Module):
    """Patch embedding + learned position embedding + pre-norm transformer blocks + final LayerNorm.

    Maps (B, C, H, W) to a (B, H/p, W/p, D) token grid; H, W must be multiples of p.
    """

    def __init__(self, in_chans, img_size, patch_size, embed_dim=192, depth=5, num_heads=8, mlp_ratio=1.0,
                 qkv_bias=True):
        super().__init__()
        h, w = img_size
        if h % patch_size or w % patch_size:
            raise BiasprobeError(f"vit: image {h}x{w} is not a multiple of the patch size {patch_size}")
        if embed_dim % num_heads:
            raise BiasprobeError(f"vit: embed_dim {embed_dim} must be a multiple of num_heads {num_heads}")
        self.patch_size = patch_size
        self.grid = (h // patch_size, w // patch_size)
        self.patch_embed = PatchEmbed(img_size=(h, w), patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim, output_fmt="NHWC", strict_img_size=False)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], embed_dim))
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias) for _ in range(depth)
        ])
        self.norm = nn.LayerNorm(embed_dim)
        named_apply(get_init_weights_vit(""), self)
        trunc_normal_(self.pos_embed, std=0.02)

    def pos_for(self, gh: int, gw: int) -> torch.Tensor:
        if (gh, gw) == self.grid:
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, new_size=[gh, gw], old_size=list(self.grid),
                                      num_prefix_tokens=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, gh, gw, D)
        b, gh, gw, d = x.shape
        x = x.reshape(b, gh * gw, d) + self.pos_for(gh, gw)
        x = self.norm(self.blocks(x))
        return x.reshape(b, gh, gw, d)


class ViTTrunk(nn.Module):
    """ViT body as a classifier trunk: (B, C, H, W) -> (B, D, H/p, W/p)."""

    def __init__(self, in_chans, img_size, patch_size=None, embed_dim=192, depth=5, num_heads=8, mlp_ratio=1.0):
        super().__init__()
        p = default_patch(img_size, patch_size, 8)
        self.body = ViTBody(in_chans, img_size, p, embed_dim, depth, num_heads, mlp_ratio)
        self.num_features = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).permute(0, 3, 1, 2)


# min_size: one token per side would do, but the default patch gives a 16-token short side
@register_arch("vit", family="vit",
               description="plain ViT (timm blocks), learned pos. embedding, linear unpatchify head",
               trunk=ViTTrunk,
               size_multiple=lambda img_size, patch_size, **_: default_patch(img_size, patch_size, 16),
               min_size=lambda patch_size, **_: int(patch_size) if patch_size is not None else 16,
               hybrids=("3c+vit", "vit+1c", "vit+3c"))
class ViTGenerator(nn.Module):
    """ViT body + linear unpatchify head: (B, C_in, H, W) -> (B, C_out, H, W), pre-sigmoid."""

    def __init__(self, in_chans, out_chans, img_size, patch_size=None, embed_dim=192, depth=5, num_heads=8,
                 mlp_ratio=1.0, decoder=None, decoder_width=decoders.WIDTH):
        super().__init__()
        p = default_patch(img_size, patch_size, 16)
        self.out_chans = out_chans
        self.body = ViTBody(in_chans, img_size, p, embed_dim, depth, num_heads, mlp_ratio)
        if decoder is None:  # the seed's head
            self.head = nn.Linear(embed_dim, p * p * out_chans)
            init_weights_vit_timm(self.head)
        else:  # a shared decoder on the token grid (biasprobe.archs.decoders), as for every backbone that takes one
            self.head = decoders.build(decoder, embed_dim, out_chans, p, decoder_width, where="vit")
        self.decoder = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.decoder is not None:
            return self.head(self.body(z).permute(0, 3, 1, 2))
        t = self.head(self.body(z))  # (B, gh, gw, p*p*C)
        b, gh, gw, _ = t.shape
        p, c = self.body.patch_size, self.out_chans
        t = t.reshape(b, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4)  # (B, C, gh, p, gw, p)
        return t.reshape(b, c, gh * p, gw * p)
