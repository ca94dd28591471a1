"""The registry (built-ins listed from their source) and the factory's keyword checks; listing without torch is
tested in test_cli.py."""

from __future__ import annotations

import importlib

import pytest
import torch

from biasprobe.archs import registry
from biasprobe.errors import BiasprobeError
from biasprobe.archs.factory import check_arch_kwargs, count_params, create_classifier, create_generator


def test_source_declarations_match_the_registrations():
    """What the registry reads from the built-ins' source is what their import registers."""
    for path in sorted(registry._NETS_DIR.glob("*.py")):
        calls = registry._register_calls(path)
        assert calls is not None, f"{path.name}: register_arch's name/family/description/hybrids must be literals"
        importlib.import_module(f"biasprobe.archs.nets.{path.stem}")
        for fields in calls:
            spec = registry._REGISTRY[fields["name"]]
            assert spec.builders is not None and spec.module == f"biasprobe.archs.nets.{path.stem}"
            assert {k: getattr(spec, k) for k in fields} == fields


def test_the_registry_holds_no_factory():
    """Building nets lives in biasprobe.archs.factory only (one place); the registry lists and looks up."""
    for name in ("create_generator", "create_classifier", "check_size", "count_params"):
        assert not hasattr(registry, name)


@pytest.mark.parametrize("name, kw, words", [
    ("vit", {"nonsense": 3}, "vit: unknown keyword argument 'nonsense' (accepted: patch_size, embed_dim, depth, "
                             "num_heads, mlp_ratio, decoder, decoder_width)"),
    ("vit", {"embed_dim": "abc"}, "embed_dim='abc' must be an integer like its default 192"),
    ("swin", {"mlp_ratio": "x"}, "mlp_ratio='x' must be a number"),
    ("swin", {"depths": 2}, "depths=2 must be a list"),
    ("unet", {"upsample_mode": 3}, "upsample_mode=3 must be text"),
    ("skipnet", {"conv_width": 8}, "unknown keyword argument 'conv_width'"),  # only hybrids have conv layers
])
def test_bad_arch_kwargs_are_one_line_errors(name, kw, words):
    for build in (check_arch_kwargs, create_generator, create_classifier):
        with pytest.raises(BiasprobeError) as err:
            build(name, **kw)
        assert words in str(err.value) and "\n" not in str(err.value)


def test_each_net_gets_the_kwargs_it_names():
    check_arch_kwargs("skipnet", channels_down=[8, 8, 8], num_scales=3)  # a per-scale list where an int is default
    check_arch_kwargs("vit+3c", conv_width=8, conv_norm=True, depth=1)
    # the deep decoder's trunk depth (num_scales) does not reach its generator, nor the decoder's (num_ups) its trunk
    gen = create_generator("deep_decoder", in_chans=4, img_size=(32, 32), num_ups=2, num_scales=2)
    assert count_params(gen) == count_params(create_generator("deep_decoder", in_chans=4, img_size=(32, 32),
                                                              num_ups=2))
    clf = create_classifier("deep_decoder", num_ups=2, num_scales=2)
    assert clf.trunk(torch.rand(1, 3, 32, 32)).shape[-1] == 8
