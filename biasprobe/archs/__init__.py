"""Built-in architectures. Importing this package registers them all."""

from biasprobe.archs import skipnet  # noqa: F401
