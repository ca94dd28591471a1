"""The generative probe as a :class:`~biasprobe.probes.base.Probe`: what calibration and studies call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from biasprobe.errors import BiasprobeError
from biasprobe.probes.base import Probe

if TYPE_CHECKING:
    import pandas as pd


class DIPProbe(Probe):
    """The generative probe: Deep Image Prior fits (``biasprobe.probes.dip``), all seeds of a config in one run."""

    name, kind, label = "dip", "generative", "DIP"
    criterion = "max psnr_gt (dB) on the calibration image, mean over seeds"
    score_label = "max psnr_gt (dB)"
    seeds_batched = True
    tables = {"summary": "dip_summary", "curves": "dip_curves", "images": "images"}

    @property
    def config_type(self) -> type:
        from biasprobe.probes.dip.config import DIPConfig

        return DIPConfig

    @property
    def plan_type(self) -> type:
        from biasprobe.probes.dip.plan import DipPlan

        return DipPlan

    def grid(self, preset, lrs=None) -> list[dict]:
        from biasprobe.probes.dip.plan import dip_configs

        return dip_configs(preset, lrs)

    def check(self, config) -> None:
        """The image, size and task parameters; the task must have a clean image (the score is psnr_gt)."""
        from biasprobe.probes.dip import tasks
        from biasprobe.probes.dip import prepare_image

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

        from biasprobe.probes.dip import run_dip

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

    def extend_key(self, fields: dict) -> str:
        """What a stored run must share with ``fields`` to be extended to it (everything but the budget)."""
        from biasprobe.probes.dip.extend import key

        return key(fields)

    def extend(self, donor, donor_rid: str, fields: dict):
        """The run ``fields`` asks, taken from a stored fit with a lower cap that its stop rule ended (the same fit:
        ``biasprobe.probes.dip.extend``); None when it is not."""
        from biasprobe.probes.dip.extend import extend

        return extend(donor, donor_rid, fields)

    def goes_on(self, donor_fields: dict, fields: dict) -> bool:
        """The same fit under a higher cap, stop rule "peak" (``checkpoint.higher_cap``; the loop checks it again
        against the saved state)."""
        import dataclasses

        from biasprobe.probes.dip.checkpoint import higher_cap
        from biasprobe.probes.dip.config import DIPConfig

        old, new = (dataclasses.asdict(DIPConfig(**f).resolved()) for f in (donor_fields, fields))
        return higher_cap(old, new)

    def calibration_run(self, config) -> dict[str, pd.DataFrame]:
        """score = max psnr_gt of each seed; curves: psnr_gt and psnr_obs per log step."""
        import pandas as pd

        tables = self.run(config)
        s, c = tables["summary"], tables["curves"]
        scores = pd.DataFrame(dict(seed=s.seed.astype(int), score=s.max_psnr_gt.astype(float),
                                   max_psnr_gt_step=s.max_psnr_gt_step, final_psnr_gt=s.final_psnr_gt,
                                   baseline_psnr=s.baseline_psnr, backtracks=s.backtracks, diverged=False,
                                   peak_reached=s.peak_reached.astype(bool) if "peak_reached" in s else True))
        curves = c.loc[c.metric.isin(["psnr_gt", "psnr_obs"]), ["seed", "step", "metric", "value"]]
        return {"scores": scores, "curves": curves.reset_index(drop=True)}
