"""The two probes behind one interface, so calibration and studies never test a probe's name.

A :class:`Probe` knows its config type, how to check a config before a sweep, how to run one (tidy tables), and
the score calibration maximises. ``PROBES`` holds one object per probe; :func:`get_probe` looks one up. The
methods import pandas, torch and the probe's module on first use, so the CLI can list the probes cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

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


class DIPProbe(Probe):
    """The generative probe: Deep Image Prior fits (``biasprobe.dip``), all seeds of a config in one run."""

    name, kind, label = "dip", "generative", "DIP"
    criterion = "max psnr_gt (dB) on the calibration image, mean over seeds"
    score_label = "max psnr_gt (dB)"
    seeds_batched = True
    tables = {"summary": "dip_summary", "curves": "dip_curves", "images": "images"}

    @property
    def config_type(self) -> type:
        from biasprobe.dip import DIPConfig

        return DIPConfig

    def check(self, config) -> None:
        """The image, size and task parameters; the task must have a clean image (the score is psnr_gt)."""
        from biasprobe import tasks
        from biasprobe.dip import prepare_image

        config = config.resolved()
        clean, params = prepare_image(config)
        if tasks.make_task(config.task, clean, config.seeds[0], **params).clean is None:
            raise BiasprobeError(f"DIP calibration scores psnr_gt, so it needs a task with a clean image, "
                                 f"not {config.task!r}")

    def run(self, config) -> dict[str, pd.DataFrame]:
        """summary (one row per seed), curves (long, with arch, task, image) and images (clean, observed, best
        output of each seed as uint8 bytes)."""
        import numpy as np
        import pandas as pd

        from biasprobe.dip import run_dip

        res = run_dip(config, progress=False)
        keys = dict(arch=config.arch, task=config.task, image=config.image)
        images = []
        for seed, imgs in res.images.items():
            for kind in ("clean", "observed", "best"):
                if kind in imgs:
                    a = np.clip(np.round(imgs[kind] * 255), 0, 255).astype(np.uint8)
                    images.append(dict(**keys, seed=seed, kind=kind, height=a.shape[0], width=a.shape[1],
                                       channels=a.shape[2], data=a.tobytes()))
        return {"curves": res.curves.assign(**keys), "summary": res.summary, "images": pd.DataFrame(images)}

    def calibration_run(self, config) -> dict[str, pd.DataFrame]:
        """score = max psnr_gt of each seed; curves: psnr_gt and psnr_obs per log step."""
        import pandas as pd

        tables = self.run(config)
        s, c = tables["summary"], tables["curves"]
        scores = pd.DataFrame(dict(seed=s.seed.astype(int), score=s.max_psnr_gt.astype(float),
                                   max_psnr_gt_step=s.max_psnr_gt_step, final_psnr_gt=s.final_psnr_gt,
                                   baseline_psnr=s.baseline_psnr, backtracks=s.backtracks, diverged=False))
        curves = c.loc[c.metric.isin(["psnr_gt", "psnr_obs"]), ["seed", "step", "metric", "value"]]
        return {"scores": scores, "curves": curves.reset_index(drop=True)}


class ClassifyProbe(Probe):
    """The predictive probe: small-data CIFAR-10 classification (``biasprobe.classify``), one run per seed."""

    name, kind, label = "classify", "predictive", "classification"
    criterion = "final val accuracy (val split carved from the training pool), mean over seeds"
    score_label = "final val accuracy"
    weight_decay = True
    tables = {"summary": "clf_summary", "epochs": "clf_epochs"}

    @property
    def config_type(self) -> type:
        from biasprobe.classify import ClassifyConfig

        return ClassifyConfig

    def calibration_base(self, base: dict) -> dict:
        """Calibration evaluates on the validation split only (test data must not inform the choice)."""
        if base.get("eval_split", "val") != "val":
            raise BiasprobeError("classify calibration evaluates on the validation split only: drop eval_split "
                                 "from the base (test data must not inform the choice)")
        return {**base, "eval_split": "val"}

    def check(self, config) -> None:
        """The config's values and the architecture's name."""
        from biasprobe.registry import get_arch

        config.validate()
        get_arch(config.arch)

    def run(self, config) -> dict[str, pd.DataFrame]:
        """epochs (one row per epoch) and summary (one row)."""
        import pandas as pd

        from biasprobe.classify import run_classify

        epochs, summary = run_classify(config, out_dir=None, progress=False)
        return {"epochs": epochs, "summary": pd.DataFrame([summary])}

    def calibration_run(self, config) -> dict[str, pd.DataFrame]:
        """score = final val accuracy; curves: the epochs. A loss that turns non-finite (this lr is too large for
        this arch) scores NaN, diverged."""
        import pandas as pd

        try:
            tables = self.run(config)
        except FloatingPointError:
            return {"scores": pd.DataFrame(dict(seed=[config.seed], score=[math.nan], best_val_acc=[math.nan],
                                                diverged=[True])),
                    "curves": pd.DataFrame({"epoch": pd.Series(dtype=int)})}
        s = tables["summary"].iloc[0]
        scores = pd.DataFrame(dict(seed=[config.seed], score=[float(s["final_val_acc"])],
                                   best_val_acc=[float(s["best_val_acc"])], diverged=[False]))
        return {"scores": scores, "curves": tables["epochs"]}


PROBES: dict[str, Probe] = {p.name: p for p in (DIPProbe(), ClassifyProbe())}


def get_probe(name: str) -> Probe:
    """The probe called ``name``; a one-line BiasprobeError for an unknown name."""
    if name not in PROBES:
        known = " or ".join(f"{p.name} ({p.kind})" for p in PROBES.values())
        raise BiasprobeError(f"unknown probe {name!r}: use {known}")
    return PROBES[name]
