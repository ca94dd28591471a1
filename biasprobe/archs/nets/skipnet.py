"""The Deep Image Prior skip-net (Ulyanov et al. 2018), as in the official repository's ``models/skip.py``.

Denoising configuration (``get_net(..., 'skip', skip_n33d=128, skip_n33u=128, skip_n11=4, num_scales=5,
upsample_mode='bilinear')``): 5 scales, 128 channels down and up, 4-channel 1x1 skips, 3x3 convs, downsampling
by stride-2 conv, bilinear upsampling, reflection padding, BatchNorm, LeakyReLU(0.2), a 1x1 conv after each
up block, a final 1x1 conv to the output channels (the factory adds the sigmoid). With 32 input channels and
3 output channels that is 2,217,831 parameters, as the official network.

Each scale i, on input x with c_in channels::

    skip_i(x)   = LReLU(BN(conv1x1(x)))                                   -> skip_ch channels, same size
    deeper_i(x) = up2(scale_{i+1}(LReLU(BN(conv3x3(LReLU(BN(conv3x3/s2(x))))))))   (innermost: no scale_{i+1})
    scale_i(x)  = LReLU(BN(conv1x1(LReLU(BN(conv3x3(BN(cat[skip_i, deeper_i])))))))

The classifier trunk is the encoder (the ``deeper`` path without the upsampling side): ``num_scales`` blocks of
stride-2 conv + conv, the same layers, 4 scales by default so a 32x32 CIFAR image ends at 2x2.
"""

from __future__ import annotations

import torch
from torch import nn

from biasprobe.archs.registry import register_arch


def conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Module:
    """DIP's conv(): reflection padding (k-1)//2, then a conv with no zero padding."""
    pad = (k - 1) // 2
    layers = [nn.ReflectionPad2d(pad)] if pad else []
    return nn.Sequential(*layers, nn.Conv2d(c_in, c_out, k, stride=stride, padding=0))


def bn_act(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]


class Concat(nn.Module):
    """Concatenate branch outputs along channels, centre-cropping to the smallest size (DIP's Concat)."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        h = min(o.shape[2] for o in outs)
        w = min(o.shape[3] for o in outs)
        crops = []
        for o in outs:
            dh, dw = (o.shape[2] - h) // 2, (o.shape[3] - w) // 2
            crops.append(o[:, :, dh : dh + h, dw : dw + w])
        return torch.cat(crops, dim=1)


def _scale(i: int, c_in: int, down: list[int], up: list[int], skip: list[int], upsample_mode: str) -> nn.Module:
    last = i == len(down) - 1
    deeper = [conv(c_in, down[i], 3, stride=2), *bn_act(down[i]), conv(down[i], down[i], 3), *bn_act(down[i])]
    if not last:
        deeper.append(_scale(i + 1, down[i], down, up, skip, upsample_mode))
    align = dict(align_corners=False) if upsample_mode in ("bilinear", "bicubic") else {}
    deeper.append(nn.Upsample(scale_factor=2, mode=upsample_mode, **align))
    deeper = nn.Sequential(*deeper)
    k = down[i] if last else up[i + 1]
    if skip[i]:
        head = Concat(nn.Sequential(conv(c_in, skip[i], 1), *bn_act(skip[i])), deeper)
    else:
        head = deeper
    return nn.Sequential(
        head,
        nn.BatchNorm2d(skip[i] + k),
        conv(skip[i] + k, up[i], 3),
        *bn_act(up[i]),
        conv(up[i], up[i], 1),
        *bn_act(up[i]),
    )


class SkipNetEncoder(nn.Module):
    """The skip-net's downsampling path as a classifier trunk: (B, C, H, W) -> (B, 128, H/2^s, W/2^s)."""

    def __init__(self, in_chans=3, num_scales=4, channels_down=128):
        super().__init__()
        down = [channels_down] * num_scales if isinstance(channels_down, int) else list(channels_down)
        layers, c = [], in_chans
        for d in down:
            layers += [conv(c, d, 3, stride=2), *bn_act(d), conv(d, d, 3), *bn_act(d)]
            c = d
        self.body = nn.Sequential(*layers)
        self.num_features = c

    def forward(self, x):
        return self.body(x)


# the innermost 3x3 conv reflects 1 pixel, which needs a map of at least 2x2
@register_arch("skipnet", family="cnn", description="Deep Image Prior encoder-decoder with skips (Ulyanov 2018)",
               trunk=SkipNetEncoder, size_multiple=lambda img_size, num_scales, **_: 2**num_scales,
               min_size=lambda num_scales, **_: 2 ** (num_scales + 1))
class SkipNetGenerator(nn.Module):
    def __init__(self, in_chans=32, out_chans=3, num_scales=5, channels_down=128, channels_up=128,
                 channels_skip=4, upsample_mode="bilinear"):
        super().__init__()
        down, up, skip = ([c] * num_scales if isinstance(c, int) else list(c)
                          for c in (channels_down, channels_up, channels_skip))
        self.body = _scale(0, in_chans, down, up, skip, upsample_mode)
        self.out = conv(up[0], out_chans, 1)

    def forward(self, z):
        return self.out(self.body(z))
