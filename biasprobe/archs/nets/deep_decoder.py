"""The deep decoder (Heckel & Hand, "Deep Decoder: Concise Image Representations from Untrained Non-convolutional
Networks", ICLR 2019), as ``decodernw`` in the authors' code: no spatial convolutions at all, only 1x1 convs,
bilinear upsampling, ReLU and channel normalisation (BatchNorm after the activation)::

    x_0 = fixed input of k channels at (H / 2^L, W / 2^L)
    x_{i+1} = BN(ReLU(up2(conv1x1(x_i))))        i = 0 .. L-1   (upsampling doubles the size)
    x_{L+1} = BN(ReLU(conv1x1(x_L)))                             (the last layer does not upsample)
    out     = conv1x1(x_{L+1}) -> C_out                          (the factory adds the sigmoid)

Defaults: k = 64 channels, L = 5 upsamplings (the paper's 6-layer decoder, ~ 25k parameters + k per input
channel). The toolkit's generators all take a full-resolution input z (B, C_in, H, W); the deep decoder's input is
its 2^L-times average-pooled version (a fixed linear map of a fixed random tensor is again a fixed random tensor,
with smaller variance than the paper's U(0, 0.1) draw), followed by a 1x1 conv C_in -> k.

Classifier trunk (an encoder mirror of the same blocks, since the decoder itself only upsamples): 1x1 conv,
ReLU, BN, then 2x average pooling, ``num_scales`` times (4 at 32 px: 2x2 maps).
"""

from __future__ import annotations

from torch import nn

from biasprobe.archs.registry import register_arch


def _block(c_in: int, c_out: int, up: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1)]
    if up:
        layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return layers + [nn.ReLU(), nn.BatchNorm2d(c_out)]


class DeepEncoder(nn.Module):
    def __init__(self, in_chans=3, channels=64, num_scales=4):
        super().__init__()
        layers, c = [], in_chans
        for _ in range(num_scales):
            layers += [nn.Conv2d(c, channels, 1), nn.ReLU(), nn.BatchNorm2d(channels), nn.AvgPool2d(2)]
            c = channels
        self.body = nn.Sequential(*layers)
        self.num_features = channels

    def forward(self, x):
        return self.body(x)


# the trunk's depth is num_scales (the decoder's, num_ups, does not apply to it)
@register_arch("deep_decoder", family="cnn",
               description="deep decoder (Heckel & Hand 2019): 1x1 convs, bilinear upsampling, no spatial kernels",
               trunk=DeepEncoder, size_multiple=lambda img_size, num_ups, **_: 2**num_ups,
               min_size=lambda num_ups, **_: 2**num_ups)
class DeepDecoder(nn.Module):
    def __init__(self, in_chans=32, out_chans=3, channels=64, num_ups=5):
        super().__init__()
        self.pool = nn.AvgPool2d(2**num_ups) if num_ups else nn.Identity()
        layers = [nn.Conv2d(in_chans, channels, 1)]
        for _ in range(num_ups):
            layers += _block(channels, channels, up=True)
        layers += _block(channels, channels, up=False)
        layers.append(nn.Conv2d(channels, out_chans, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        return self.body(self.pool(z))
