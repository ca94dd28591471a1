"""biasprobe: measure the generative and predictive inductive biases of vision architectures."""

from biasprobe.errors import BiasprobeError
from biasprobe.archs.registry import get_arch, list_archs, load_arch_module, register_arch

__version__ = "0.1.0"

__all__ = [
    "BiasprobeError",
    "create_classifier",
    "create_generator",
    "get_arch",
    "list_archs",
    "load_arch_module",
    "register_arch",
]


def __getattr__(attr: str):
    # the factory imports torch: load it on first use, so that `import biasprobe` stays light
    if attr in ("create_classifier", "create_generator"):
        from biasprobe.archs import factory as models

        return getattr(models, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
