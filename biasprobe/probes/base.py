"""What a probe is to calibration and studies: :class:`Probe`, the interface every probe implements.

A probe knows its config type, how to check a config before a sweep, how to run one (tidy tables), the score
calibration maximises, its part of a study preset (its plan dataclass) and the grid of runs a plan makes. The
methods import pandas, torch and the probe's modules on first use, so the CLI can list the probes cheaply.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import TYPE_CHECKING, Callable, Mapping

from biasprobe.errors import BiasprobeError


if TYPE_CHECKING:
    import pandas as pd


class Probe:
    """What calibration and studies need of a probe. Subclasses set the attributes and the methods."""

    name = ""  # the probe's name in run configs, presets and choices files
    kind = ""  # "generative" or "predictive"
    label = ""  # its runs in words: "no DIP runs for ..."
    criterion = ""  # what calibration maximises, in words
    score_label = "score"  # the criterion as an axis label
    weight_decay = False  # whether calibration may grid the weight decay (``wd_grid``)
    seeds_batched = False  # True: one run fits all seeds (config field ``seeds``); False: one run per ``seed``
    tables: dict[str, str] = {}  # each table :meth:`run` returns -> the study's name for it

    @property
    def config_type(self) -> type:
        """The run's config dataclass."""
        raise NotImplementedError

    @property
    def plan_type(self) -> type:
        """The dataclass of this probe's part of a study preset (the preset's field named after the probe)."""
        raise NotImplementedError

    def grid(self, preset, lrs: dict[str, float] | None = None) -> list[dict]:
        """The runs ``preset`` asks of this probe, each {"probe": name, "config": plain fields}, in grid order;
        ``lrs``: {arch: calibrated lr} when the plan's lr is "calibrated"."""
        raise NotImplementedError

    def check_plan(self, plan) -> None:
        """Fail before a study's first run (one-line BiasprobeError) when ``plan`` cannot run at all (e.g. no data);
        default: nothing to check."""

    def fields(self) -> set[str]:
        """The config type's field names."""
        return {f.name for f in dataclasses.fields(self.config_type)}

    def make_config(self, fields: dict, device: str | None = None):
        """The config from plain fields (a stored run config); ``device`` replaces the field when given."""
        fields = dict(fields)
        if device is not None:
            fields["device"] = device
        return self.config_type(**fields)

    def calibration_base(self, base: dict) -> dict:
        """The base fields of a calibration sweep, checked and completed (default: as given)."""
        return base

    def check(self, config) -> None:
        """Fail before a calibration sweep starts (one-line BiasprobeError) if ``config`` cannot run."""
        raise NotImplementedError

    def run(self, config) -> dict[str, pd.DataFrame]:
        """Run one config; the tables named in ``tables``."""
        raise NotImplementedError

    def extend_key(self, fields: dict) -> str | None:
        """What a stored run must share with the run ``fields`` asks to stand for it under a larger budget
        (``biasprobe.studies.reuse``); None (the default): this probe's runs are never extended."""
        return None

    def extend(self, donor, donor_rid: str, fields: dict):
        """(tables, raw parquet bytes, how) of the run ``fields`` asks, taken from stored run ``donor_rid`` of store
        ``donor`` whose :meth:`extend_key` matches, or None when that run is not the same computation."""
        return None

    def goes_on(self, donor_fields: dict, fields: dict) -> bool:
        """Whether the run ``fields`` asks can go on from a state the stored run ``donor_fields`` kept at its cap
        (``biasprobe.resume``, ``studies.reuse``); False (the default): never."""
        return False

    def calibration_run(self, config) -> dict[str, pd.DataFrame]:
        """Run one calibration config: ``scores`` (one row per seed: seed, score, the probe's own columns,
        diverged) and ``curves``. ``score`` is :attr:`criterion`."""
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------------------------
# Learning rates: one resolver for the commands (--lr) and the studies (a plan's lr)

CALIBRATED = ("calibrated",)  # the one word for "this arch's calibrated rate", in presets and in the CLI's --lr


def per_arch(value, arch: str, what: str):
    """A preset value that may differ by architecture: a plain value, or a table {pattern: value} whose first
    pattern equal to ``arch`` or matching it (fnmatch, e.g. "*") wins."""
    if not isinstance(value, dict):
        return value
    for pattern, v in value.items():
        if pattern == arch or fnmatch.fnmatchcase(arch, pattern):
            return v
    raise BiasprobeError(f"no {what} for {arch!r} in the preset's table {value}: add it or a '*' entry")


def resolve_lr(value, arch: str, calibrated: Mapping[str, float] | Callable[[str], float] | None = None, *,
               calibrated_source: str = "calibrated", default: float | None = None,
               default_source: str = "default") -> tuple[float | None, str]:
    """(lr, source) of ``arch`` under ``value``, the one rule for ``--lr`` and a plan's ``lr``:

    - None: ``(default, default_source)`` (e.g. the DIP setting's lr, ``setting:dip``);
    - a number: ``(value, "given")``;
    - ``"calibrated"`` (a preset, or ``--lr calibrated``): the arch's calibrated lr, ``calibrated[arch]`` or
      ``calibrated(arch)`` (a choices file read), ``(lr, calibrated_source)``;
    - a table {arch pattern: lr or "calibrated"} (:func:`per_arch`): the arch's entry, as above.
    """
    value = per_arch(value, arch, "lr")
    if value in CALIBRATED:
        lr = calibrated(arch) if callable(calibrated) else calibrated[arch]
        return float(lr), calibrated_source
    if value is None:
        return default, default_source
    return float(value), "given"

