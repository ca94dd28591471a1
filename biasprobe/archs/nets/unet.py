"""A plain U-Net (Ronneberger et al. 2015) in Deep Image Prior conventions (reflection padding, BatchNorm,
LeakyReLU(0.2), bilinear upsampling), close to the DIP repository's ``models/unet.py``.

With widths w_i = base_width * 2^i (i = 0..S, S = num_scales), on input z::

    block(c_in, c_out) = [ReflPad1, conv3x3, BN, LReLU(0.2)] x 2
    e_0 = block(C_in, w_0)(z)
    e_i = block(w_{i-1}, w_i)(maxpool2(e_{i-1}))                      i = 1..S
    d_S = e_S
    d_i = block(w_{i+1} + w_i, w_i)(cat[up2_bilinear(d_{i+1}), e_i])    i = S-1..0
    out = conv1x1(w_0, C_out)(d_0)                                     (the factory adds the sigmoid)

Defaults base_width=32, num_scales=4 (widths 32..512, down to 1/16): 7.9M parameters with 32 input
channels, 3.6 GMAC per 128x128 forward pass (the skip-net: 2.2M, 4.8 GMAC). H and W must be multiples of
2^S, and at least 2^(S+1) (reflection padding of the innermost 3x3 conv needs a 2x2 map).

Classifier trunk: the encoder e_S (same blocks, 4 scales, so a 32x32 image ends at 2x2 with 512 channels).
"""

from __future__ import annotations

import torch
from torch import nn

from biasprobe.archs.nets.skipnet import bn_act, conv
from biasprobe.archs.registry import register_arch


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(conv(c_in, c_out, 3), *bn_act(c_out), conv(c_out, c_out, 3), *bn_act(c_out))


def widths(base_width: int, num_scales: int) -> list[int]:
    return [base_width * 2**i for i in range(num_scales + 1)]


class UNetEncoder(nn.Module):
    """e_0 .. e_S of the U-Net; ``forward`` returns e_S, ``features`` returns all of them."""

    def __init__(self, in_chans, num_scales=4, base_width=32):
        super().__init__()
        w = widths(base_width, num_scales)
        self.inc = block(in_chans, w[0])
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), block(w[i - 1], w[i]))
                                   for i in range(1, num_scales + 1))
        self.num_features = w[-1]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.inc(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1]


@register_arch("unet", family="cnn",
               description="plain U-Net: double 3x3 conv blocks, max-pool, bilinear up, concat skips",
               trunk=UNetEncoder, size_multiple=lambda img_size, num_scales, **_: 2**num_scales,
               min_size=lambda num_scales, **_: 2 ** (num_scales + 1))
class UNetGenerator(nn.Module):
    def __init__(self, in_chans, out_chans, num_scales=4, base_width=32, upsample_mode="bilinear"):
        super().__init__()
        w = widths(base_width, num_scales)
        self.encoder = UNetEncoder(in_chans, num_scales, base_width)
        align = dict(align_corners=False) if upsample_mode in ("bilinear", "bicubic") else {}
        self.up = nn.Upsample(scale_factor=2, mode=upsample_mode, **align)
        self.ups = nn.ModuleList(block(w[i + 1] + w[i], w[i]) for i in range(num_scales))
        self.out = conv(w[0], out_chans, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        feats = self.encoder.features(z)
        x = feats[-1]
        for i in range(len(self.ups) - 1, -1, -1):
            x = self.ups[i](torch.cat([self.up(x), feats[i]], dim=1))
        return self.out(x)
