"""The architecture layer: what a network is called, and how it is built for each probe.

- ``registry``: registration (``@register_arch``), listing, lookup, and the name grammar (hybrids ``kc+NAME+jc``,
  keyword arguments ``NAME[key=value]``); it imports no model code and no torch;
- ``factory``: builds a registered name into a generator (DIP) or a classifier, hybrids included;
- ``nets/``: the built-in architectures, one module per family, each one ``@register_arch`` call;
- ``decoders``: the decoders a token or feature grid is painted back to an image with (generators);
- ``timm_adapter``: any timm model as ``timm:NAME``, plugged into the registry below as a resolver, the way any
  adapter for another model library would plug in (``registry.register_resolver``).

Importing this package imports neither torch nor timm.
"""

from biasprobe.archs.registry import get_arch, list_archs, load_arch_module, register_arch, register_resolver

TIMM_PREFIX = "timm:"


def _resolve_timm(name: str) -> None:
    """``timm:NAME`` on first lookup: the timm adapter registers it (timm is imported then, not before)."""
    from biasprobe.archs.timm_adapter import register

    register(name)


register_resolver(TIMM_PREFIX, _resolve_timm)

__all__ = ["TIMM_PREFIX", "get_arch", "list_archs", "load_arch_module", "register_arch", "register_resolver"]
