"""Mechanics of every registered architecture: shapes, ranges, trainability, hybrid placement, conv-freeness."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from biasprobe.archs import registry
from biasprobe.errors import BiasprobeError
from biasprobe.archs.factory import check_size, count_params, create_classifier, create_generator
from biasprobe.archs.registry import get_arch, list_archs, load_arch_module

# Small widths so that every generator trains in well under a second; unknown backbones use their defaults.
TINY = {
    "skipnet": dict(num_scales=3, channels_down=8, channels_up=8, channels_skip=2),
    "unet": dict(num_scales=3, base_width=8),
    "vit": dict(embed_dim=32, depth=2, num_heads=4),
    "swin": dict(embed_dim=16, depths=(2, 2, 2, 2)),
    "swin_unet": dict(embed_dim=16, depths=(2, 2, 2, 2)),
}
BASES = [n for n in list_archs() if get_arch(n).backbone is None]
HYBRIDS = [n for n in list_archs() if get_arch(n).backbone is not None]


def tiny(name: str) -> dict:
    spec = get_arch(name)
    return dict(TINY.get(spec.backbone or spec.name, {}))


def backbone_family(name: str) -> str:
    spec = get_arch(name)
    return get_arch(spec.backbone).family if spec.backbone else spec.family


def nonsquare(name: str, kw: dict) -> tuple[int, int]:
    """64x96 when the size multiple allows, else the nearest valid non-square size."""
    spec = get_arch(name)
    m = spec.size_multiple((64, 96), **kw)
    h = max(64, spec.min_size(**kw))
    h = -(-h // m) * m
    return (h, 96) if 96 % m == 0 and 96 != h else (h, h + m)


def spatial_convs(module: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in module.named_modules()
            if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1]


def n_convs(module: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in module.modules())


@pytest.mark.parametrize("name", list_archs())
def test_generator_shapes_and_training(name):
    torch.manual_seed(0)
    kw = tiny(name)
    for hw in [(64, 64), nonsquare(name, kw)]:
        check_size(name, hw, **kw)
        gen = create_generator(name, in_chans=8, out_chans=3, img_size=hw, **kw)
        out = gen(torch.rand(2, 8, *hw) * 0.1)
        assert out.shape == (2, 3, *hw)
        assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()

    gen = create_generator(name, in_chans=8, out_chans=3, img_size=(64, 64), **kw)
    z = torch.rand(1, 8, 64, 64) * 0.1
    target = torch.rand(1, 3, 64, 64)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = ((gen(z) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.98 * losses[0], losses


@pytest.mark.parametrize("name", BASES)
def test_default_configs_build_and_run(name):
    torch.manual_seed(0)
    spec = get_arch(name)
    h = max(64, spec.min_size())
    m = spec.size_multiple((h, h))
    h = -(-h // m) * m
    gen = create_generator(name, in_chans=4, out_chans=3, img_size=(h, h))
    with torch.no_grad():
        assert gen(torch.rand(1, 4, h, h)).shape == (1, 3, h, h)
        clf = create_classifier(name).eval()
        feats = clf.features(torch.rand(2, 3, 32, 32))
        assert feats.ndim == 4 and feats.shape[:2] == (2, clf.trunk.num_features)
        assert clf(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", list_archs())
def test_classifier_logits(name):
    clf = create_classifier(name, num_classes=10, **tiny(name))
    logits = clf(torch.rand(3, 3, 32, 32))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    logits.sum().backward()


def test_skipnet_param_count():
    assert count_params(create_generator("skipnet", in_chans=32, out_chans=3)) == 2_217_831


def test_canonical_hybrids_listed():
    for b in ("vit", "swin"):
        assert {f"3c+{b}", f"{b}+1c", f"{b}+3c"} <= set(list_archs())


@pytest.mark.parametrize("name", HYBRIDS + ["2c+unet+1c", "1c+swin_unet"])
def test_hybrid_conv_placement(name):
    spec = get_arch(name)
    kw = tiny(name)
    gen = create_generator(name, in_chans=8, out_chans=3, img_size=(64, 64), **kw)
    clf = create_classifier(name, **kw)
    for net in (gen, clf):
        assert n_convs(net.before) == spec.convs_before
        assert n_convs(net.after) == spec.convs_after
        for stack in (net.before, net.after):
            assert all(m.kernel_size == (3, 3) for m in stack.modules() if isinstance(m, nn.Conv2d))
    # the hybrid's backbone is the plain backbone: same parameter count
    plain = create_generator(spec.backbone, in_chans=8, out_chans=3, img_size=(64, 64), **kw)
    assert count_params(gen.backbone) == count_params(plain.backbone)


@pytest.mark.parametrize("name", [n for n in list_archs() if backbone_family(n) in ("vit", "swin")])
def test_transformers_have_no_spatial_convs(name):
    kw = tiny(name)
    gen = create_generator(name, in_chans=8, out_chans=3, img_size=(64, 64), **kw)
    clf = create_classifier(name, **kw)
    for net in (gen.backbone, clf.trunk):
        convs = spatial_convs(net)
        # the one conv with a kernel > 1 is the patch embedding, a per-patch linear map (stride == kernel)
        assert len(convs) <= 1, convs
        for path, conv in convs:
            assert "patch_embed" in path and conv.stride == conv.kernel_size, (path, conv)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(BiasprobeError, match="swin"):
        get_arch("swim")
    with pytest.raises(BiasprobeError, match="unknown architecture"):
        create_generator("3c+vitt")


def test_bad_sizes_are_user_errors():
    with pytest.raises(BiasprobeError, match="multiples of 32"):
        check_size("swin", (64, 80))
    with pytest.raises(BiasprobeError, match="too small"):
        check_size("unet", (16, 16))
    with pytest.raises(BiasprobeError, match="multiples of 4"):
        check_size("vit", (64, 66))


USER_MODULES = {
    "decorated generator": '''
        from torch import nn
        from biasprobe.archs.registry import register_arch

        class Trunk(nn.Conv2d):
            num_features = 5

            def __init__(self, in_chans, width=4):
                super().__init__(in_chans, 5, 1)

        @register_arch("tmp_tinynet", family="other", description="1x1 conv", trunk=Trunk,
                       size_multiple=lambda img_size, width, **_: width // 2, min_size=2)
        def tiny_net(in_chans, out_chans, width=4):
            return nn.Sequential(nn.Conv2d(in_chans, width, 1), nn.ReLU(), nn.Conv2d(width, out_chans, 1))
    ''',
}


@pytest.mark.parametrize("style", USER_MODULES)
def test_user_module_registers_an_arch(tmp_path, monkeypatch, style):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    path = tmp_path / "tinynet.py"
    path.write_text(textwrap.dedent(USER_MODULES[style]))
    load_arch_module(str(path))
    spec = get_arch("tmp_tinynet")
    assert (spec.size_multiple((8, 8)), spec.size_multiple((8, 8), width=6), spec.min_size()) == (2, 3, 2)
    with pytest.raises(BiasprobeError, match="multiples of 3"):
        check_size("tmp_tinynet", (8, 8), width=6)
    assert "tmp_tinynet" in list_archs()
    gen = create_generator("1c+tmp_tinynet", in_chans=2, out_chans=3, img_size=(8, 8), width=6)
    assert gen(torch.rand(1, 2, 8, 8)).shape == (1, 3, 8, 8)
    assert n_convs(gen.before) == 1
    assert create_classifier("tmp_tinynet")(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_vit_runs_at_other_sizes():
    torch.manual_seed(0)
    gen = create_generator("vit", in_chans=4, out_chans=3, img_size=(64, 64), **TINY["vit"])
    body = gen.backbone.body
    assert body.patch_size == 4 and body.grid == (16, 16)
    for hw in [(32, 48), (96, 64)]:
        assert gen(torch.rand(1, 4, *hw)).shape == (1, 3, *hw)
        pos = body.pos_for(hw[0] // 4, hw[1] // 4)
        assert pos.shape == (1, hw[0] // 4 * hw[1] // 4, body.pos_embed.shape[-1])
    # at the built size the learned embedding is used as is
    assert body.pos_for(16, 16) is body.pos_embed


def test_swin_runs_at_other_sizes():
    gen = create_generator("swin", in_chans=4, out_chans=3, img_size=(64, 64), **TINY["swin"])
    assert gen(torch.rand(1, 4, 32, 96)).shape == (1, 3, 32, 96)


def test_unpatchify_keeps_pixels_in_their_patch():
    """Each output patch depends only on its own token: with no blocks, a change inside one input patch
    moves only that patch of the output (the linear head + rearrangement must not mix patches)."""
    torch.manual_seed(0)
    gen = create_generator("vit", in_chans=2, out_chans=3, img_size=(32, 32), patch_size=8, embed_dim=16,
                           depth=0, num_heads=2)
    z = torch.rand(1, 2, 32, 32)
    z2 = z.clone()
    z2[:, :, 8:16, 16:24] += 1.0
    diff = (gen(z2) - gen(z)).abs().sum(1)[0]
    assert diff[8:16, 16:24].min() > 0
    diff[8:16, 16:24] = 0
    assert diff.max() == 0


def _backbone_input_std(net: nn.Module, x: torch.Tensor) -> float:
    got = []
    inner = net.trunk if hasattr(net, "trunk") else net.backbone
    hook = inner.register_forward_pre_hook(lambda m, a: got.append(a[0]))
    with torch.no_grad():
        net.eval()(x)
    hook.remove()
    return got[0].std().item()


def _image_like_batch(n=32, seed=0) -> torch.Tensor:
    """Spatially correlated, standardised images (std 1), like a normalised CIFAR batch."""
    g = torch.Generator().manual_seed(seed)
    x = nn.functional.interpolate(torch.randn(n, 3, 8, 8, generator=g), size=32, mode="bilinear")
    x = x + 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    return (x - x.mean()) / x.std()


@pytest.mark.parametrize("name", ["3c+vit", "3c+swin"])
def test_stem_hands_the_backbone_a_unit_scale_input(name):
    """The fixed stem (default): std ~1 at the backbone's input for every seed; ``stem_norm=False`` is the seed
    study's stem, bit for bit (PyTorch's default conv init after the backbone's draws), which shrinks it."""
    x = _image_like_batch()
    for seed in range(3):
        torch.manual_seed(seed)
        assert 0.5 <= _backbone_input_std(create_classifier(name), x) <= 2.0
        torch.manual_seed(seed)
        old = create_classifier(name, stem_norm=False)
        assert _backbone_input_std(old, x) < 0.3
        torch.manual_seed(seed)
        get_arch(name).base().builders.trunk(in_chans=3, img_size=(32, 32))  # the trunk's draws, then the stem's
        from biasprobe.archs.factory import conv_stack

        ref = conv_stack(3, 3)
        assert [k for k, _ in old.before.state_dict().items()] == list(ref.state_dict())
        for a, b in zip(old.before.state_dict().values(), ref.state_dict().values()):
            assert torch.equal(a, b)
    torch.manual_seed(0)
    z = torch.rand(1, 3, 64, 64) * 0.1  # DIP's input: the generator's stem normalises it too
    assert 0.5 <= _backbone_input_std(create_generator(name, in_chans=3, img_size=(64, 64), **tiny(name)), z) <= 2.0
    with pytest.raises(BiasprobeError, match="stem_norm"):
        create_classifier(name, stem_norm="yes")
