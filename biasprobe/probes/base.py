"""What a probe is to calibration and studies: :class:`Probe`, the interface every probe implements.

A probe knows its config type, how to check a config before a sweep, how to run one (tidy tables), the score
calibration maximises, its part of a study preset (its plan dataclass) and the grid of runs a plan makes. The
methods import pandas, torch and the probe's modules on first use, so the CLI can list the probes cheaply.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING


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

    def calibration_run(self, config) -> dict[str, pd.DataFrame]:
        """Run one calibration config: ``scores`` (one row per seed: seed, score, the probe's own columns,
        diverged) and ``curves``. ``score`` is :attr:`criterion`."""
        raise NotImplementedError
