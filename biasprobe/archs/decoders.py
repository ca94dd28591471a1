"""The decoders a generator can end with, the same module for every backbone that takes ``decoder=``
(``timm:NAME``, ``vit``, ``swin``): a (B, D, h, w) feature grid -> a (B, C_out, h*s, w*s) image, pre-sigmoid.

* ``pixelshuffle``: 1x1 conv D -> s*s*C_out, PixelShuffle(s); linear, no spatial kernel: each cell paints its own
  s x s block (SimMIM's and the seed's kind; what ``vit``'s linear unpatchify head and ``swin``'s head compute).
* ``bilinear``: 1x1 conv D -> width, then log2(s) stages of bilinear x2 upsampling, 1x1 conv, LeakyReLU(0.2), then
  1x1 conv width -> C_out: an interpolating upsampler whose only spatial mixing is the interpolation (the DIP
  decoder's kind of upsampling, without its 3x3 convs).
* ``transposed``: the same with a 4x4 stride-2 transposed conv (padding 1) per stage: a learned upsampler whose
  overlapping kernels mix neighbouring cells.

``width`` is ``WIDTH`` (64) unless given (``decoder_width``). PyTorch's default init throughout. Liu et al. (ICCV
2023, "the devil is in the upsampling") find the decoder's upsampling carries much of DIP's spectral bias: with the
decoder a named factor, a study can hold it fixed or vary it (the zoo study's decoder ablation).
"""

from __future__ import annotations

from torch import nn

from biasprobe.errors import BiasprobeError

WIDTH = 64


class PixelShuffleHead(nn.Sequential):
    """``pixelshuffle``: 1x1 conv D -> s*s*C_out and PixelShuffle(s)."""

    def __init__(self, dim: int, out_chans: int, scale: int, width: int = WIDTH):
        super().__init__(nn.Conv2d(dim, scale * scale * out_chans, kernel_size=1), nn.PixelShuffle(scale))
        self.scale = scale


class ProgressiveHead(nn.Sequential):
    """``bilinear`` and ``transposed`` (``kind``): 1x1 conv D -> width, log2(s) stages that each double H and W,
    1x1 conv width -> C_out (see the module docstring)."""

    def __init__(self, dim: int, out_chans: int, scale: int, width: int = WIDTH, kind: str = "bilinear"):
        stages = scale.bit_length() - 1
        if scale != 2 ** stages:
            raise BiasprobeError(f"decoder={kind} doubles the grid per stage, so it needs a power-of-two stride; this "
                                 f"backbone's is {scale}: use decoder=pixelshuffle")
        layers = [nn.Conv2d(dim, width, kernel_size=1)]
        for _ in range(stages):
            if kind == "bilinear":
                layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                           nn.Conv2d(width, width, kernel_size=1)]
            else:
                layers += [nn.ConvTranspose2d(width, width, kernel_size=4, stride=2, padding=1)]
            layers += [nn.LeakyReLU(0.2)]
        super().__init__(*layers, nn.Conv2d(width, out_chans, kernel_size=1))
        self.scale = scale


DECODERS = {
    "pixelshuffle": PixelShuffleHead,
    "bilinear": lambda dim, out, s, width: ProgressiveHead(dim, out, s, width, "bilinear"),
    "transposed": lambda dim, out, s, width: ProgressiveHead(dim, out, s, width, "transposed"),
}


def build(kind: str, dim: int, out_chans: int, scale: int, width: int = WIDTH, where: str = "") -> nn.Module:
    """The decoder ``kind`` (one of ``DECODERS``) from a D-channel grid to an image ``scale`` times larger."""
    if kind not in DECODERS:
        raise BiasprobeError(f"{where + ': ' if where else ''}unknown decoder {kind!r} (one of {', '.join(DECODERS)})")
    return DECODERS[kind](dim, out_chans, scale, width)
