"""The probes, side by side behind one interface (:class:`~biasprobe.probes.base.Probe`), so that calibration and
studies never test a probe's name:

- ``dip/``: the generative probe, Deep Image Prior fits of a generator to corrupted images;
- ``classify/``: the predictive probe, small-data CIFAR-10 classification from random init;
- ``spectral``: the spectral measures both use (frequency-band correlation, grid energy, the init spectrum).

``PROBES`` holds one object per probe, in the order studies run and report them; :func:`get_probe` looks one up.
Importing this package imports neither torch nor pandas.
"""

from __future__ import annotations

from biasprobe.errors import BiasprobeError
from biasprobe.probes.base import Probe
from biasprobe.probes.classify.probe import ClassifyProbe
from biasprobe.probes.dip.probe import DIPProbe

PROBES: dict[str, Probe] = {p.name: p for p in (DIPProbe(), ClassifyProbe())}


def get_probe(name: str) -> Probe:
    """The probe called ``name``; a one-line BiasprobeError for an unknown name."""
    if name not in PROBES:
        known = " or ".join(f"{p.name} ({p.kind})" for p in PROBES.values())
        raise BiasprobeError(f"unknown probe {name!r}: use {known}")
    return PROBES[name]


__all__ = ["PROBES", "ClassifyProbe", "DIPProbe", "Probe", "get_probe"]
