"""A DIP run's configuration: the named settings, the config dataclass and its checks, and the result type."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import pandas as pd

from biasprobe import seeding
from biasprobe.errors import BiasprobeError
from biasprobe.archs.registry import get_arch

# Named settings: the values a field takes when left at None.
SETTINGS = {
    # Ulyanov et al. 2018, denoising notebook
    "dip": dict(input_depth=32, lr=0.01, reg_noise_std=1.0 / 30, iters=3000),
    # the transformer study: the same for every architecture
    "study": dict(input_depth=3, lr=1e-4, reg_noise_std=0.0, iters=5000),
}


@dataclass
class DIPConfig:
    arch: str = "skipnet"
    image: str = "astronaut"  # path or built-in name (images.list_builtin_images())
    task: str = "denoise"
    task_params: dict = field(default_factory=dict)  # e.g. {"sigma": 25}, {"mask": "kate_mask"}, {"factor": 4}
    arch_kwargs: dict = field(default_factory=dict)
    size: int | None = 128  # resize so the short side is `size`, centre-crop to size x size; None = keep
    setting: str = "dip"  # fills input_depth, lr, reg_noise_std, iters when they are None
    input_depth: int | None = None
    input_kind: str = "noise"  # "noise" (U(0,1) * 0.1, DIP's get_noise) or "meshgrid" (2 channels)
    lr: float | None = None
    reg_noise_std: float | None = None
    iters: int | None = None
    ema_weight: float = 0.99
    log_every: int = 50
    seeds: list[int] = field(default_factory=lambda: [0])
    stop: str = "fixed"  # "fixed": run `iters` steps; "peak": stop `patience` steps after both the psnr_gt peak and
    #                      the gap crossing (records.stop_state), `iters` being the cap
    patience: int = 300  # steps a peak (and a gap crossing) must lie before the stop to count as reached
    backtrack_db: float = 5.0  # <= 0 disables the divergence guard
    max_backtrack_share: float = 0.1  # a seed that backtracks on more than this share of its steps is marked failed
    train_mode: bool = True  # BatchNorm / dropout / drop-path in training mode throughout, as DIP
    spectral: bool = True
    grid_periods: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    es_window: int = 100  # ES-WMV window W (0 disables)
    es_patience: int = 500  # ES-WMV patience
    amp: str = "fp32"  # "fp32", or "bf16" autocast (CPU or CUDA), or "fp16" autocast (CUDA)
    batching: str = "auto"  # how a batch of seeds runs: "vmap" (one vectorised call), "loop" (one net at a time),
    #                         "auto" (engine.auto_batching, measured in benchmarks/bench_dip.py)
    device: str = "auto"
    rng_version: int = seeding.RNG_VERSION  # the random-stream scheme (seeding.py); part of the run's identity
    # Added after runs were stored: left out of a run's identity at their default (``identity``), and their defaults
    # are the behaviour those runs had, so every stored run keeps its id and its meaning.
    gap_window: int = 1  # a gap crossing counts only when the gap stays below zero this many steps (1: one step)
    stop_on_gap: bool = True  # stop="peak" also waits for the gap crossing; False: only for the peak (the gap time
    #                           is then censored at the stop unless it crossed before)
    collapse_db: float = 0.0  # > 0: a seed whose psnr_obs stays this many dB below its best for `patience` steps
    #                           has collapsed: it is stopped, and its peak counts as reached only when it lay
    #                           `patience` steps before the collapse (else "cut by divergence"); 0: no check
    dead_after: int = 0  # > 0 (with stop="peak"): at the first log step at or after step dead_after - 1, a seed whose
    #                      best psnr_obs so far is below the best constant-colour image's (each channel the
    #                      observation's mean over the seen pixels) plus `dead_db` has fitted a colour, not an image:
    #                      it is stopped there, marked dead_stop, its peak_status "dead"; 0: no check
    dead_db: float = 0.5

    def identity(self) -> dict:
        """The fields that name the run (``sweep.run_id`` hashes them): every field, less those of
        ``IDENTITY_DEFAULTS`` that are at their default."""
        out = asdict(self)
        for key, default in IDENTITY_DEFAULTS.items():
            if out.get(key) == default:
                out.pop(key)
        return out

    def resolved(self) -> "DIPConfig":
        """A copy with the setting's values filled in and everything checked (BiasprobeError on bad values)."""
        if self.setting not in SETTINGS:
            raise BiasprobeError(f"unknown setting {self.setting!r}: choose one of {', '.join(SETTINGS)}")
        cfg = copy.deepcopy(self)
        for key, value in SETTINGS[self.setting].items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        if cfg.iters < 1:
            raise BiasprobeError(f"--iters must be at least 1 (got {cfg.iters})")
        if cfg.stop not in ("fixed", "peak"):
            raise BiasprobeError(f"--stop must be fixed or peak (got {cfg.stop!r})")
        if cfg.patience < 1:
            raise BiasprobeError(f"--patience must be at least 1 (got {cfg.patience})")
        if not 0 < cfg.max_backtrack_share <= 1:
            raise BiasprobeError(f"max_backtrack_share must be in (0, 1] (got {cfg.max_backtrack_share})")
        if cfg.log_every < 1:
            raise BiasprobeError(f"--log-every must be at least 1 (got {cfg.log_every})")
        if cfg.lr <= 0:
            raise BiasprobeError(f"--lr must be positive (got {cfg.lr})")
        if cfg.input_kind not in ("noise", "meshgrid"):
            raise BiasprobeError(f"--input-kind must be noise or meshgrid (got {cfg.input_kind!r})")
        if cfg.input_kind == "meshgrid":
            cfg.input_depth = 2
        if cfg.batching not in ("auto", "vmap", "loop"):
            raise BiasprobeError(f"--batching must be auto, vmap or loop (got {cfg.batching!r})")
        if cfg.amp not in ("fp32", "bf16", "fp16"):
            raise BiasprobeError(f"--amp must be fp32, bf16 or fp16 (got {cfg.amp!r})")
        if cfg.rng_version != seeding.RNG_VERSION:
            raise BiasprobeError(f"rng_version {cfg.rng_version} cannot be reproduced by this version of biasprobe "
                                 f"(it draws with scheme {seeding.RNG_VERSION}); drop the field or set it to "
                                 f"{seeding.RNG_VERSION}")
        if not cfg.seeds:
            raise BiasprobeError("give at least one seed")
        if len(set(cfg.seeds)) != len(cfg.seeds):
            raise BiasprobeError(f"seeds repeat: {cfg.seeds}")
        if not isinstance(cfg.gap_window, int) or cfg.gap_window < 1:
            raise BiasprobeError(f"gap_window must be a positive integer (got {cfg.gap_window!r})")
        if not (isinstance(cfg.collapse_db, (int, float)) and cfg.collapse_db >= 0):
            raise BiasprobeError(f"collapse_db must be >= 0 (got {cfg.collapse_db!r}; 0 turns the check off)")
        if not isinstance(cfg.dead_after, int) or cfg.dead_after < 0:
            raise BiasprobeError(f"dead_after must be an integer >= 0 (got {cfg.dead_after!r}; 0 turns the check off)")
        if cfg.dead_after and cfg.stop != "peak":
            raise BiasprobeError("dead_after needs --stop peak (the dead check is part of its stop rule); set "
                                 "dead_after 0 or use --stop peak")
        if not (isinstance(cfg.dead_db, (int, float)) and cfg.dead_db > 0):
            raise BiasprobeError(f"dead_db must be > 0 (got {cfg.dead_db!r})")
        get_arch(cfg.arch)
        return cfg


# fields added after runs were stored, at the default that keeps those runs' ids (see DIPConfig.identity)
IDENTITY_DEFAULTS = {"gap_window": 1, "stop_on_gap": True, "collapse_db": 0.0, "dead_after": 0, "dead_db": 0.5}


@dataclass
class DIPResult:
    config: DIPConfig
    curves: pd.DataFrame  # long: seed, step, metric, value
    summary: pd.DataFrame  # one row per seed
    images: dict  # seed -> {"clean", "observed", "best", "final", "snapshots": {step: array}} (HWC float32)
    meta: dict  # provenance: versions, device, git commit
