"""The predictive probe as a :class:`~biasprobe.probes.base.Probe`: what calibration and studies call."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from biasprobe.errors import BiasprobeError
from biasprobe.probes.base import Probe

if TYPE_CHECKING:
    import pandas as pd


class ClassifyProbe(Probe):
    """The predictive probe: small-data CIFAR-10 classification (``biasprobe.probes.classify.train``), one run per seed."""

    name, kind, label = "classify", "predictive", "classification"
    criterion = "final val accuracy (val split carved from the training pool), mean over seeds"
    score_label = "final val accuracy"
    weight_decay = True
    tables = {"summary": "clf_summary", "epochs": "clf_epochs"}

    @property
    def config_type(self) -> type:
        from biasprobe.probes.classify.train import ClassifyConfig

        return ClassifyConfig

    @property
    def plan_type(self) -> type:
        from biasprobe.probes.classify.plan import ClassifyPlan

        return ClassifyPlan

    def grid(self, preset, lrs=None) -> list[dict]:
        from biasprobe.probes.classify.plan import classify_configs

        return classify_configs(preset, lrs)

    def check_plan(self, plan) -> None:
        """The data: a one-line error saying how to give it when there is none."""
        from biasprobe.probes.classify import cifar

        cifar.load_split("test", data=plan.data, data_root=plan.data_root, download=plan.download)

    def calibration_base(self, base: dict) -> dict:
        """Calibration evaluates on the validation split only (test data must not inform the choice)."""
        if base.get("eval_split", "val") != "val":
            raise BiasprobeError("classify calibration evaluates on the validation split only: drop eval_split "
                                 "from the base (test data must not inform the choice)")
        return {**base, "eval_split": "val"}

    def check(self, config) -> None:
        """The config's values and the architecture's name."""
        from biasprobe.archs.registry import get_arch

        config.validate()
        get_arch(config.arch)

    def run(self, config) -> dict[str, pd.DataFrame]:
        """epochs (one row per epoch) and summary (one row)."""
        import pandas as pd

        from biasprobe.probes.classify.train import run_classify

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
