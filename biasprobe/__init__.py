"""biasprobe: measure the generative and predictive inductive biases of vision architectures."""

from biasprobe.errors import BiasprobeError
from biasprobe.registry import (
    create_classifier,
    create_generator,
    get_arch,
    list_archs,
    load_arch_module,
    register_arch,
)

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
