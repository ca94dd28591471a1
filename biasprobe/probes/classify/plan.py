"""The predictive probe's part of a study preset (``"classify": {...}``): :class:`ClassifyPlan`, and the grid of
classification runs it makes (:func:`classify_configs`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from biasprobe.errors import BiasprobeError
from biasprobe.probes.base import resolve_lr


@dataclass
class ClassifyPlan:
    n_train: list[int] = field(default_factory=lambda: [500, 1000, 2000])
    fixed_n: int = 1000  # the N at which the predictive score is read
    measures_at: str = "fixed_n"  # shift consistency, attribution: "fixed_n" (what the cross-tab reads) or "all"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 10  # the budget when ``steps`` is None (epoch mode)
    steps: int | None = None  # the budget in AdamW updates, the same for every arch and N (what studies should use)
    batch_size: int = 128
    lr: float | str | None = None  # None: ClassifyConfig's default; a number; or "calibrated"
    weight_decay: float | None = None
    data: str | None = None
    data_root: str | None = None
    download: bool = False
    arch_kwargs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # other ClassifyConfig fields, e.g. {"attr_samples": 32}
    double_seeds: list[int] = field(default_factory=list)  # the budget check: these seeds also run at 2x steps
    #   (at fixed_n), so a contrast can be read again at twice the budget

    def calibration_base(self, base: dict) -> dict:
        """The calibration preset's base under this plan's protocol; only the data split differs (validation)."""
        return dict(base, epochs=self.epochs, steps=self.steps, batch_size=self.batch_size, data=self.data,
                    data_root=self.data_root, download=self.download)

    def check(self, need, archs: list[str]) -> None:
        """The plan's fields have the types and ranges a run needs; ``need(ok, field, what)`` fails in one line."""
        need(isinstance(self.n_train, list) and self.n_train and all(isinstance(n, int) and n > 0
                                                                     for n in self.n_train),
             "classify.n_train", "a non-empty list of positive integers")
        need(self.fixed_n in self.n_train, "classify.fixed_n", f"one of classify.n_train {self.n_train}")
        need(self.measures_at in ("fixed_n", "all"), "classify.measures_at", '"fixed_n" or "all"')
        need(isinstance(self.epochs, int) and self.epochs >= 1, "classify.epochs", "a positive integer")
        need(self.steps is None or isinstance(self.steps, int) and self.steps >= 1, "classify.steps",
             "null or a positive integer")
        need(self.lr is None or self.lr == "calibrated" or isinstance(self.lr, (int, float)), "classify.lr",
             'null, a number or "calibrated"')


def classify_configs(p, lrs: dict[str, float] | None = None) -> list[dict]:
    """The classification runs of study preset ``p``: arch x n_train x seed (and the 2x-budget runs of
    ``double_seeds``), each {"probe": "classify", "config": the ClassifyConfig's fields}. ``lrs``: {arch: lr} when
    the plan's lr is "calibrated"."""
    from biasprobe.probes.classify.train import ClassifyConfig

    if p.classify is None:
        return []
    c = p.classify
    out = []
    for arch in p.archs:
        for n in c.n_train:
            for seed in c.seeds:
                kw = dict(arch=arch, n_train=n, epochs=c.epochs, steps=c.steps, batch_size=c.batch_size, seed=seed,
                          data=c.data,
                          data_root=c.data_root, download=c.download, device=p.device,
                          arch_kwargs=dict(c.arch_kwargs.get(arch, {})),
                          measures=c.measures_at == "all" or n == c.fixed_n)
                kw.update(c.extra)
                lr = resolve_lr(c.lr, arch, lrs)[0]
                if lr is not None:
                    kw["lr"] = lr
                if c.weight_decay is not None:
                    kw["weight_decay"] = c.weight_decay
                out.append({"probe": "classify", "config": dataclasses.asdict(ClassifyConfig(**kw))})
                if n == c.fixed_n and seed in c.double_seeds:  # the budget check: the same run at 2x the steps
                    if c.steps is None:
                        raise BiasprobeError("classify.double_seeds needs a step budget (classify.steps)")
                    twice = dict(kw, steps=2 * c.steps)
                    if "eval_every_steps" in twice and twice["eval_every_steps"]:
                        twice["eval_every_steps"] = 2 * twice["eval_every_steps"]
                    out.append({"probe": "classify", "config": dataclasses.asdict(ClassifyConfig(**twice))})
    return out
