"""timm:NAME architectures (biasprobe.archs.timm_adapter): the generator's shared decoder, its size rule, the classifier at
CIFAR size, one-line errors, and the registry not importing timm until a timm name is looked up."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from biasprobe.archs import registry
from biasprobe.errors import BiasprobeError
from biasprobe.archs.factory import check_size, create_classifier, create_generator

GENERATORS = [  # (name, size, kw, expected grid)
    ("timm:resnet10t", 128, {}, (4, 4)),
    ("timm:convnext_atto", 128, {}, (4, 4)),
    ("timm:vit_tiny_patch16_224", 64, {"patch_size": 8}, (8, 8)),
    ("timm:mobilenetv3_small_050", 128, {}, (4, 4)),
]


@pytest.mark.parametrize("name, size, kw, grid", GENERATORS)
def test_generator_decodes_the_last_feature_grid(name, size, kw, grid):
    torch.manual_seed(0)
    gen = create_generator(name, in_chans=8, out_chans=3, img_size=(size, size), **kw)
    out = gen(torch.rand(1, 8, size, size))
    assert out.shape == (1, 3, size, size) and 0 <= out.min() and out.max() <= 1  # the factory's sigmoid
    net = gen.backbone
    assert net.grid == grid
    head = net.head  # the same decoder for every backbone: 1x1 conv to s*s*3 channels, PixelShuffle(s)
    s = size // grid[0]
    assert [type(m) for m in head] == [nn.Conv2d, nn.PixelShuffle]
    assert head[0].kernel_size == (1, 1) and head[0].out_channels == s * s * 3 and head[1].upscale_factor == s
    out.square().mean().backward()
    first = next(p for p in net.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0  # gradients reach the backbone's first layer
    assert registry.get_arch(name).size_multiple((size, size), **kw) == s


def test_coarse_grid_is_refused_with_the_fix():
    with pytest.raises(BiasprobeError) as err:
        create_generator("timm:resnet18", in_chans=8, img_size=(32, 32))
    msg = str(err.value)
    assert "1x1 feature grid" in msg and "--size 128" in msg and "\n" not in msg
    with pytest.raises(BiasprobeError, match="at least 128x128"):
        check_size("timm:resnet18", (64, 64))
    check_size("timm:resnet18", (128, 128))
    with pytest.raises(BiasprobeError, match="multiples of 32"):
        check_size("timm:resnet18", (128, 144))


def test_unknown_timm_name_is_one_line_with_close_names():
    with pytest.raises(BiasprobeError) as err:
        registry.get_arch("timm:resnet81")
    assert "close names: timm:resnet18" in str(err.value) and "\n" not in str(err.value)


def test_rejected_keyword_is_one_line():
    with pytest.raises(BiasprobeError) as err:
        create_generator("timm:resnet10t", in_chans=8, img_size=(128, 128), nonsense=3)
    assert "timm.create_model rejects" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name, patch", [("timm:resnet10t", None), ("timm:vit_tiny_patch16_224", 4)])
def test_classifier_at_cifar_size(name, patch):
    torch.manual_seed(0)
    clf = create_classifier(name, num_classes=10, img_size=(32, 32))
    assert clf(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    if patch:  # patch 16 would give a 2x2 grid at 32 px: rebuilt with patch 4 (8x8)
        assert tuple(clf.model.patch_embed.patch_size) == (patch, patch)
        kept = create_classifier(name, num_classes=10, img_size=(32, 32), patch_size=8)
        assert tuple(kept.model.patch_embed.patch_size) == (8, 8)


def test_hybrids_parse_and_build():
    spec = registry.get_arch("3c+timm:resnet10t")
    assert (spec.family, spec.backbone, spec.convs_before) == ("hybrid", "timm:resnet10t", 3)
    gen = create_generator("3c+timm:resnet10t", in_chans=8, img_size=(128, 128))
    assert gen(torch.rand(1, 8, 128, 128)).shape == (1, 3, 128, 128)
    # convs after a classifier's features: at 64 px (a 2x2 map; at 32 px a stride-32 CNN's 1x1 map cannot be
    # reflection-padded, which `biasprobe classify` reports in one line)
    clf = create_classifier("timm:resnet10t+1c", num_classes=10, img_size=(64, 64))
    assert clf(torch.rand(2, 3, 64, 64)).shape == (2, 10)


def test_registry_import_does_not_import_timm():
    code = "import sys, biasprobe.archs.registry as r; r.list_archs(); assert 'timm' not in sys.modules; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"


@pytest.mark.parametrize("decoder", ["pixelshuffle", "bilinear", "transposed"])
def test_decoder_is_a_factor_the_same_for_every_backbone(decoder):
    """The decoder named in the arch name (NAME[decoder=...]) is built from the same class for a CNN and a ViT, maps
    the last grid to the image, and the backbone gets gradient through it."""
    heads = []
    for name, size, kw, grid in GENERATORS[::2]:  # a ResNet and a ViT
        torch.manual_seed(0)
        gen = create_generator(f"{name}[decoder={decoder}]", in_chans=8, out_chans=3, img_size=(size, size), **kw)
        out = gen(torch.rand(1, 8, size, size))
        assert out.shape == (1, 3, size, size)
        out.mean().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.backbone.backbone.parameters())
        head = gen.backbone.head
        heads.append(head)
        convs = [m for m in head.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        if decoder == "pixelshuffle":
            assert [m.kernel_size for m in convs] == [(1, 1)]
        elif decoder == "bilinear":  # only 1x1 kernels: the interpolation is the only spatial mixing
            assert all(m.kernel_size == (1, 1) for m in convs)
            assert sum(isinstance(m, nn.Upsample) for m in head.modules()) == (size // grid[0]).bit_length() - 1
        else:
            assert sum(isinstance(m, nn.ConvTranspose2d) for m in convs) == (size // grid[0]).bit_length() - 1
    assert type(heads[0]) is type(heads[1])


def test_name_keywords_label_variants_and_reach_only_the_generator():
    spec = registry.get_arch("timm:resnet10t[decoder=bilinear,decoder_width=16]+3c")
    assert spec.family == "hybrid" and dict(spec.kwargs) == {"decoder": "bilinear", "decoder_width": 16}
    gen = create_generator("timm:resnet10t[decoder=bilinear,decoder_width=16]+3c", in_chans=3, img_size=(128, 128))
    assert gen.backbone.head[0].out_channels == 16
    clf = create_classifier("timm:resnet10t[decoder=bilinear]")  # the classifier has no decoder: ignored there
    assert clf(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert dict(registry.get_arch("vit[depth=2]").kwargs) == {"depth": 2}
    assert len(create_generator("vit[depth=2]", in_chans=3, img_size=(64, 64)).backbone.body.blocks) == 2
    with pytest.raises(BiasprobeError, match="unknown decoder 'foo'"):
        create_generator("timm:resnet10t[decoder=foo]", in_chans=3, img_size=(128, 128))
    with pytest.raises(BiasprobeError, match="not key=value"):
        registry.get_arch("vit[depth]")


def test_classifier_whose_builder_fixes_a_large_patch_is_refused_in_one_line():
    """resmlp_12_224's builder fixes patch 16 (a 2x2 token grid at 32x32): refused, not silently kept."""
    with pytest.raises(BiasprobeError, match="16-pixel patch gives a 32x32 image 2x2 tokens"):
        create_classifier("timm:resmlp_12_224")
