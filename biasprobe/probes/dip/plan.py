"""The generative probe's part of a study preset (``"dip": {...}``): :class:`DipPlan`, and the grid of DIP runs
it makes (:func:`dip_configs`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from biasprobe.errors import BiasprobeError
from biasprobe.probes.base import per_arch, resolve_lr


@dataclass
class DipPlan:
    tasks: list[dict] = field(default_factory=lambda: [{"task": "denoise", "task_params": {"sigma": 25}}])
    images: list[str] | dict = field(default_factory=lambda: ["astronaut"])  # names, or {"draw": {"n": N,
    #   "seed": S, "sets": ["Kodak24", "CBSD68"]}}: a random sample of the standard colour sets (images.draw_images)
    size: int = 64
    setting: str = "dip"
    iters: int | dict = 600  # the cap (stop "peak") or count; a number, or {arch pattern: iters} like lr
    log_every: int = 25
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    lr: float | str | dict | None = None  # None: the setting's lr; a number; "calibrated"; or {arch pattern: lr}
    input_depth: int | None = None
    reg_noise_std: float | None = None
    spectral: bool = True
    arch_kwargs: dict = field(default_factory=dict)  # per arch name: {"swin": {"embed_dim": 192}}
    extra: dict = field(default_factory=dict)  # other DIPConfig fields, e.g. {"es_patience": 300}
    extra_archs: list[str] = field(default_factory=list)  # run by DIP only, after the preset's archs
    replicate: dict = field(default_factory=dict)  # {"images": n, "seeds": [1]}: the first n images also run
    #   these seeds (one run each), to estimate the seed-to-seed spread
    seed_per_image: bool = False  # True: the i-th image (0-based, in the plan's order) runs seed seeds[0] + i, so
    #   every unit has its own init, input and noise draws (with False every image shares the seeds' draws: one
    #   init per architecture, which the images then cannot sample)

    def unit_seeds(self, image: str, images: list[str] | None = None) -> list[int]:
        """The plan's seeds on ``image`` (its units there; replicate seeds not included)."""
        if not self.seed_per_image:
            return list(self.seeds)
        images = self.image_names() if images is None else images
        if image not in images:
            raise BiasprobeError(f"dip.seed_per_image: {image!r} is not one of the plan's images")
        return [self.seeds[0] + images.index(image)]

    def is_unit(self, image: str, seed: int, images: list[str] | None = None) -> bool:
        """Whether (image, seed) is one of the plan's units (not a replicate seed)."""
        if self.seed_per_image:
            images = self.image_names() if images is None else images
            if image not in images:
                return False
        return seed in self.unit_seeds(image, images)

    def image_names(self) -> list[str]:
        """The plan's images: the list given, or the images its draw picks (in the order drawn)."""
        if isinstance(self.images, dict):
            from biasprobe.probes.dip.images import IMAGE_SETS, draw_images

            d = self.images.get("draw")
            if not isinstance(d, dict) or set(d) - {"n", "seed", "sets", "nested"} or not {"n", "seed"} <= set(d):
                raise BiasprobeError('dip.images: give a list of images or {"draw": {"n": N, "seed": S, '
                                     '"sets": [...], "nested": true|false}}')
            return draw_images(d["n"], d["seed"], tuple(d.get("sets", IMAGE_SETS)), bool(d.get("nested", False)))
        return list(self.images)

    def seed_lists(self, image: str, images: list[str]) -> list[list[int]]:
        """The seed batches run on ``image``: the plan's seeds, then each replicate seed on its own for the first
        ``replicate["images"]`` images."""
        mine = self.unit_seeds(image, images)
        out = [mine]
        if self.replicate and image in images[: int(self.replicate.get("images", 0))]:
            out += [[s] for s in self.replicate.get("seeds", []) if s not in mine]
        return out

    def calibration_base(self, base: dict) -> dict:
        """The calibration preset's base under this plan's protocol; only the image differs (and must)."""
        iters = self.iters if isinstance(self.iters, int) else max(self.iters.values())  # a table: its longest
        base = dict(base, size=self.size, iters=iters, setting=self.setting, **{
            k: getattr(self, k) for k in ("input_depth", "reg_noise_std") if getattr(self, k) is not None})
        if self.extra.get("stop") == "peak":  # the criterion is the peak: a calibration fit stops after it
            base.update(stop="peak", stop_on_gap=False, **{k: self.extra[k] for k in ("patience", "collapse_db")
                                                           if k in self.extra and not isinstance(self.extra[k], dict)})
        if base["image"] in self.image_names() or any(base["image"] in t.get("images", []) for t in self.tasks):
            raise BiasprobeError(f"the calibration image {base['image']!r} is one of the study's images")
        return base

    def check(self, need, archs: list[str]) -> None:
        """The plan's fields have the types and ranges a run needs; ``need(ok, field, what)`` fails in one line."""
        need(isinstance(self.extra_archs, list) and all(isinstance(a, str) for a in self.extra_archs),
             "dip.extra_archs", "a list of architecture names")
        need(isinstance(self.tasks, list) and self.tasks and all(isinstance(t, dict) and "task" in t
                                                                 for t in self.tasks),
             "dip.tasks", 'a list of {"task": ..., "task_params": {...}} objects')
        for t in self.tasks:
            for key in t:
                need(key in ("task", "task_params", "images"), f"dip.tasks[].{key}",
                     "one of task, task_params, images")
        need(isinstance(self.images, list) and self.images or isinstance(self.images, dict), "dip.images",
             'a non-empty list of images or {"draw": {...}}')
        need(isinstance(self.replicate, dict) and set(self.replicate) <= {"images", "seeds"}, "dip.replicate",
             '{"images": n, "seeds": [...]}')
        need(isinstance(self.iters, int) and self.iters >= 1 or isinstance(self.iters, dict) and self.iters and all(
            isinstance(v, int) and v >= 1 for v in self.iters.values()), "dip.iters",
            'a positive integer or {"arch pattern": iters, ...}')
        need(isinstance(self.size, int) and self.size >= 16, "dip.size", "an integer >= 16")
        need(isinstance(self.seeds, list) and self.seeds and all(isinstance(s, int) for s in self.seeds),
             "dip.seeds", "a non-empty list of integers")
        need(isinstance(self.seed_per_image, bool) and (not self.seed_per_image or len(self.seeds) == 1),
             "dip.seed_per_image", "true or false; true needs exactly one seed in dip.seeds (the first image's)")
        need(not (self.seed_per_image and any(t.get("images") for t in self.tasks)), "dip.seed_per_image",
             "false when a task names its own images (the images' order sets the seeds)")
        need(self.lr is None or self.lr == "calibrated" or isinstance(self.lr, (int, float))
             or isinstance(self.lr, dict) and all(isinstance(v, (int, float)) and v > 0 or v == "calibrated"
                                                  for v in self.lr.values()),
             "dip.lr", 'null, a number, "calibrated" or {"arch pattern": lr or "calibrated", ...}')
        for arch in archs + self.extra_archs:
            per_arch(self.lr, arch, "dip.lr")
            per_arch(self.iters, arch, "dip.iters")
            for key, value in self.extra.items():
                per_arch(value, arch, f"dip.extra.{key}")


def dip_configs(p, lrs: dict[str, float] | None = None) -> list[dict]:
    """The DIP runs of study preset ``p`` (its archs, then the plan's DIP-only extras): arch x task x image x seed
    batch, each a plain dict {"probe": "dip", "config": the DIPConfig's identity} (hashed into its run id by the
    sweep). ``lrs``: {arch: lr} when the plan's lr is "calibrated"."""
    from biasprobe.probes.dip.config import DIPConfig

    out = []
    drawn = p.dip.image_names()
    for arch in p.archs + [a for a in p.dip.extra_archs if a not in p.archs]:
        extra = {k: per_arch(v, arch, f"dip.extra.{k}") for k, v in p.dip.extra.items()}
        for t in p.dip.tasks:
            for image in t.get("images", drawn):
                for seeds in p.dip.seed_lists(image, drawn):
                    cfg = DIPConfig(
                        arch=arch, image=image, task=t["task"], task_params=dict(t.get("task_params", {})),
                        arch_kwargs=dict(p.dip.arch_kwargs.get(arch, {})), size=p.dip.size, setting=p.dip.setting,
                        input_depth=p.dip.input_depth, reg_noise_std=p.dip.reg_noise_std,
                        iters=per_arch(p.dip.iters, arch, "dip.iters"),
                        log_every=p.dip.log_every, seeds=seeds, spectral=p.dip.spectral,
                        lr=resolve_lr(p.dip.lr, arch, lrs)[0], device=p.device, **extra,
                    )
                    out.append({"probe": "dip", "config": cfg.identity()})
    return out
