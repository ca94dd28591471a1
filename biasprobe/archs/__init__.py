"""Built-in architectures. Importing this package registers them all, and lists the canonical hybrids
(any ``kc+NAME`` / ``NAME+kc`` also works without being listed)."""

from biasprobe.archs import deep_decoder, skipnet, swin, swin_unet, unet, vit  # noqa: F401
from biasprobe.registry import register_hybrid

for _backbone in ("vit", "swin"):
    register_hybrid(_backbone, before=3)
    register_hybrid(_backbone, after=1)
    register_hybrid(_backbone, after=3)
