"""The Deep Image Prior loop (Ulyanov, Vedaldi, Lempitsky 2018), for any registered generator, several seeds at once.

Per seed k: a fixed input z_k (``input_depth`` channels of U(0, 1) * 0.1, or a meshgrid), a randomly initialised
generator f_k, the observation y_k of the task (noisy image, masked image, low-resolution image, ...). The init,
the input, the observation's noise or mask and the reg-noise draws each come from their own stream of seed k
(``seeding.py``), so no draw is a function of another. Each step::

    x_k   = f_k(z_k + reg_noise_std * n_t)               n_t ~ N(0, 1), fresh every step
    loss  = sum_k mean_{seen pixels} (A(x_k) - y_k)^2    A = the task's forward operator
    Adam step on all parameters (each seed's parameters only see its own loss)
    ema_k = 0.99 * ema_k + 0.01 * x_k                    (DIP's exp_weight)

Divergence guard (DIP's backtracking, made exact): when seed k's loss is not finite, or its PSNR against the
observation falls more than ``backtrack_db`` below its last good value, its parameters *and* Adam moments are
restored to the last good step and that update is skipped (Adam's step counter is shared by the seed batch and is
not rolled back). On CUDA the guard runs on the device with ``torch.where`` (no host sync per step); on a CPU it
copies the seeds' tensors (see :class:`_Guard`).

Batching seeds (:class:`SeedBatch`): all K networks' parameters are updated by one fused Adam call; the nets run
either one after another, each on its own leaf tensors (``batching="loop"``), or as one
``torch.vmap(functional_call)`` over (K, ...) stacked leaves (``"vmap"``); ``"auto"`` (the default) takes loop on a
CPU and vmap elsewhere (:func:`auto_batching`). On a CPU with several threads the seeds are first cut into groups
fitted side by side on threads that share out the cores (:func:`seed_groups`): a batch-1 step of these nets is too
small to keep several cores busy, one step per core is not. Each seed keeps its own weights and its own BatchNorm
batch statistics (BN runs in training mode as in DIP; running averages are never used then and are switched off).
Seed k of a batch follows the same computation as a single run of seed k (same init, input, noise draws and
observation); with loop the numbers are the same at the same intra-op thread count (a seed group's count is recorded
as ``torch_threads_per_group``), with vmap they agree to float rounding (grouped convs sum in another order). Conv
nets run channels-last (:func:`_channels_last`); ``amp="bf16"`` autocasts the forward pass (on CPUs with
AMX/avx512_bf16 the skip-net runs ~2x faster; its psnr_gt curves then differ from float32's by tenths of a dB, see
reports/bench_dip.md). Throughput numbers against a plain DIP loop: studies/bench_dip.py.

Every ``log_every`` steps (and at the last step) the loop fetches metrics to the host: psnr_obs, psnr_gt,
psnr_gt_ema, gap = psnr_gt - psnr_obs, ssim_gt, loss, backtracks, and spectral measures (``spectral.py``).
Per step it keeps only device tensors: psnr_gt (for the exact peak), the best output, and the ES-WMV variance.
"""

from __future__ import annotations

import copy
import math
import resource
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy.integrate import trapezoid
from torch.func import functional_call, stack_module_state
from tqdm.auto import tqdm

from biasprobe import images as imagelib
from biasprobe import metrics, seeding, tasks
from biasprobe.errors import BiasprobeError
from biasprobe.registry import check_size, create_generator, get_arch
from biasprobe.runinfo import provenance, resolve_device

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
    backtrack_db: float = 5.0  # <= 0 disables the divergence guard
    train_mode: bool = True  # BatchNorm / dropout / drop-path in training mode throughout, as DIP
    spectral: bool = True
    grid_periods: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    es_window: int = 100  # ES-WMV window W (0 disables)
    es_patience: int = 500  # ES-WMV patience
    amp: str = "fp32"  # "fp32", or "bf16" autocast (CPU or CUDA), or "fp16" autocast (CUDA)
    batching: str = "auto"  # how a batch of seeds runs: "vmap" (one vectorised call), "loop" (one net at a time),
    #                         "auto" (loop on a CPU, vmap elsewhere: auto_batching, measured in studies/bench_dip.py)
    device: str = "auto"
    rng_version: int = seeding.RNG_VERSION  # the random-stream scheme (seeding.py); part of the run's identity

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
        get_arch(cfg.arch)
        return cfg


@dataclass
class DIPResult:
    config: DIPConfig
    curves: pd.DataFrame  # long: seed, step, metric, value
    summary: pd.DataFrame  # one row per seed
    images: dict  # seed -> {"clean", "observed", "best", "final", "snapshots": {step: array}} (HWC float32)
    meta: dict  # provenance: versions, device, git commit


# ----------------------------------------------------------------------------------------------------------------
# Inputs


def prepare_image(cfg: DIPConfig) -> tuple[torch.Tensor, dict]:
    """Load, resize and centre-crop the image to the architecture's size multiple: (1, C, H, W), and the task
    parameters completed so that a mask file goes through the same resize and crop."""
    img = imagelib.load_image(cfg.image)
    if cfg.size:
        img = imagelib.resize_short_side(img, cfg.size)
    spec = get_arch(cfg.arch)
    h, w = img.shape[-2:]
    minimum = spec.min_size(**cfg.arch_kwargs)
    if min(h, w) < minimum:
        raise BiasprobeError(f"image {h}x{w} is too small for {cfg.arch}: it needs at least {minimum}x{minimum} "
                             f"pixels (use a larger image or --size)")
    multiple = spec.size_multiple((h, w), **cfg.arch_kwargs)
    img = imagelib.crop_to_multiple(img, multiple)
    check_size(cfg.arch, img.shape[-2:], **cfg.arch_kwargs)
    params = dict(cfg.task_params)
    if cfg.task == "inpaint" and params.get("mask") not in (None, "random", "block", "text"):
        params.setdefault("size", cfg.size)
        params.setdefault("multiple", multiple)
    return (img[None] if img.dim() == 3 else img), params


def make_input(kind: str, depth: int, hw: tuple[int, int], seed: int) -> torch.Tensor:
    """DIP's get_noise: U(0, 1) * 0.1 noise of ``depth`` channels, or a 2-channel [0, 1] meshgrid; (1, D, H, W).
    The noise comes from the run's ``input`` stream (seeding.py), independent of the init and the observation."""
    h, w = hw
    if kind == "meshgrid":
        ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        return torch.stack([xs, ys])[None]
    return torch.rand(1, depth, h, w, generator=seeding.generator(seed, "input")) * 0.1


_BUILD_LOCK = threading.Lock()  # nets are initialised from the global generator: one seed group at a time


def build_nets(cfg: DIPConfig, hw, out_chans: int) -> list[torch.nn.Module]:
    """One generator per seed, initialised from that seed's ``init`` stream."""
    nets = []
    for seed in cfg.seeds:
        with _BUILD_LOCK, seeding.manual_seed(seed, "init"):
            net = create_generator(cfg.arch, in_chans=cfg.input_depth, out_chans=out_chans, img_size=hw,
                                   **cfg.arch_kwargs)
        if cfg.train_mode:
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    # training-mode BN uses batch statistics only; running averages would be dead state
                    m.track_running_stats = False
                    m.running_mean = m.running_var = m.num_batches_tracked = None
        net.train(cfg.train_mode)
        nets.append(net)
    return nets


class SeedBatch:
    """K networks of one architecture evaluated as one, with their parameters held as autograd leaves that one
    fused Adam step updates together (one kernel for all seeds' tensors) and that the divergence guard can copy
    seed by seed.

    * ``mode="loop"``: each seed has its own leaf per weight (``seed_leaves[k]``) and the K nets run one after
      another through ``functional_call``: the same ops on the same shapes as a single run, and gradients land in
      the leaves with no gather or scatter. Conv weights of channels-last nets are stored channels-last.
    * ``mode="vmap"``: one (K, ...) leaf per weight (``torch.func.stack_module_state``) and one vectorised call,
      ``torch.vmap`` of ``functional_call`` (batched matmuls, grouped convs). timm's fused attention has no vmap
      batching rule (vmap would loop over seeds), so attention modules use their explicit
      ``softmax(q k^T / sqrt(d)) v`` path under vmap; it computes the same function.

    Which is faster depends on the architecture family and the device (``batching="auto"``, see
    :func:`auto_batching` and studies/bench_dip.py).
    """

    def __init__(self, nets: list[torch.nn.Module], device: torch.device, mode: str = "vmap",
                 channels_last: bool = False):
        if mode not in ("vmap", "loop"):
            raise BiasprobeError(f"seed batching mode must be vmap or loop (got {mode!r})")
        nets = [n.to(device) for n in nets]
        params, self.buffers = stack_module_state(nets)  # buffers: (K, ...) each; params: used by vmap only
        self.k = len(nets)
        self.names = list(params)
        self.base = copy.deepcopy(nets[0]).to("meta")
        self.mode = "loop" if self.k == 1 else mode
        self.channels_last = channels_last
        if self.mode == "loop":
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            self.seed_leaves = [[p.detach().clone(memory_format=fmt if p.dim() == 4 else torch.contiguous_format)
                                 .requires_grad_() for p in net.parameters()] for net in nets]
            self.leaves = [t for row in self.seed_leaves for t in row]
            # functional_call's (params, buffers) per seed, built once: the leaves and buffer views never change
            self._seed_args = [(dict(zip(self.names, self.seed_leaves[k])),
                                {n: t[k] for n, t in self.buffers.items()}) for k in range(self.k)]
        else:
            self.leaves = list(params.values())
            for m in self.base.modules():
                if hasattr(m, "fused_attn"):
                    m.fused_attn = False

        def one(params, buffers, z):
            return functional_call(self.base, (params, buffers), (z[None],))[0]

        self._vmapped = torch.vmap(one, randomness="different")

    def rows(self, tensors: list[torch.Tensor], k: int) -> list[torch.Tensor]:
        """Seed k's part of ``tensors``, a list aligned with ``self.leaves`` (the leaves, or their Adam moments)."""
        if self.mode == "loop":
            n = len(self.names)
            return tensors[k * n : (k + 1) * n]
        return [t[k] for t in tensors]

    def seed_params(self, k: int) -> dict:
        """Seed k's weights as a name -> tensor dict (detached views)."""
        return dict(zip(self.names, (t.detach() for t in self.rows(self.leaves, k))))

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """z: (K, D, H, W) -> (K, C, H, W)."""
        if self.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        if self.mode == "loop":
            outs = [functional_call(self.base, self._seed_args[k], (z[k : k + 1],)) for k in range(self.k)]
            return outs[0] if self.k == 1 else torch.cat(outs)
        return self._vmapped(dict(zip(self.names, self.leaves)), self.buffers, z)

    def parameters(self) -> list[torch.Tensor]:
        return self.leaves


def auto_batching(arch: str, device: torch.device, k: int) -> str:
    """The faster seed-batching mode (studies/bench_dip.py, reports/bench_dip.md). On a CPU, ``loop`` for conv nets:
    vmap turns convs into grouped convs (skipnet 4 seeds at 128 px: ~2x slower than 4 plain calls). For
    transformers and their hybrids on a CPU it depends on the threads: with one thread vmap gains nothing (a bmm of
    K is no faster than K mm on one core, and the explicit attention vmap needs is slower than fused attention);
    with two or more, vmap's K-wide matmuls split across the cores better than K narrow ones (4 seeds at 128 px, 2
    threads: vit 0.140 vs 0.152 s per step, swin 0.259-0.268 vs 0.295-0.309, vit+3c 0.145 vs 0.167). Elsewhere
    (CUDA) ``vmap``: one wide kernel per layer instead of K narrow ones."""
    if k == 1:
        return "loop"
    if device.type != "cpu":
        return "vmap"
    return "vmap" if _family(arch) != "cnn" and torch.get_num_threads() > 1 else "loop"


def _channels_last(cfg: DIPConfig, device: torch.device) -> bool:
    """Channels-last (NHWC) activations for conv nets: oneDNN's fast layout on a CPU (skipnet at 128 px: ~5% in
    float32, ~1.5x in bf16 autocast with AMX), and the tensor-core layout on CUDA."""
    return _family(cfg.arch) == "cnn"


def _family(arch: str) -> str:
    """The architecture's family, or for a hybrid its backbone's (``vit+3c`` -> ``vit``)."""
    spec = get_arch(arch)
    return get_arch(spec.backbone).family if spec.backbone else spec.family


# ----------------------------------------------------------------------------------------------------------------
# The loop


def run_dip(cfg: DIPConfig, progress: bool = True, seed_threads: int | None = None) -> DIPResult:
    """Fit ``cfg.arch`` to the corrupted image for every seed in ``cfg.seeds`` at once; return curves and summary.

    ``seed_threads`` (CPU only): split the seeds into that many contiguous groups and fit the groups concurrently,
    each on its own Python thread, the torch threads shared out among them (see :func:`seed_groups`); None = auto.
    Each group is the seed batch a run of those seeds alone would be: a seed's numbers equal those of its group run
    alone on the group's thread count (``meta["torch_threads_per_group"]``). Other thread counts sum in other
    orders, and DIP amplifies such rounding differences (tenths of a dB over hundreds of steps at lr 0.01; see
    reports/bench_dip.md), as with any change of torch's thread count.
    """
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    groups = seed_groups(cfg, device, seed_threads)
    if len(groups) == 1:
        result, _, _ = _fit(cfg, device, progress)
        result.meta["seed_threads"] = 1
        result.meta["torch_threads_per_group"] = [torch.get_num_threads()]
        return result
    return _fit_threaded(cfg, device, groups, progress)


def seed_groups(cfg: DIPConfig, device: torch.device, seed_threads: int | None = None) -> list[list[int]]:
    """The seed batch cut into W contiguous groups of near-equal size, W = ``seed_threads`` or, when None, the
    torch thread count; at most one group per seed, and one group on a GPU or when the nets draw random numbers
    in their forward pass (dropout / drop-path use the global generator, which threads would share).

    Why: on a small CPU, several seeds' steps run faster side by side on one thread each than one after another
    on all threads, because a batch-1 step of these nets is too small to keep several cores busy (2 cores, 4 seeds
    at 128 px, reports/bench_dip_options.md: one batch on both threads takes 1.06x the time for skipnet, 1.18x for
    vit, 1.17x for swin; and batching seeds with vmap on one core is slower than a loop).
    """
    k = len(cfg.seeds)
    w = torch.get_num_threads() if seed_threads is None else int(seed_threads)
    if w < 1:
        raise BiasprobeError(f"--seed-threads must be at least 1 (got {w})")
    w = min(w, k)
    if w == 1 or device.type != "cpu" or _draws_random(cfg):
        return [list(cfg.seeds)]
    bounds = np.linspace(0, k, w + 1).round().astype(int)
    return [list(cfg.seeds[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


_RANDOM_CACHE: dict[str, bool] = {}


def _draws_random(cfg: DIPConfig) -> bool:
    """Whether the architecture's forward pass in training mode draws random numbers, judged from its modules:
    dropout (``nn.Dropout*``, ``nn.MultiheadAttention(dropout=...)``, timm's DropPath / DropBlock ``drop_prob`` and
    PatchDropout ``prob``) with a nonzero rate. Random draws made in a module's own code (functional dropout, noise
    injection) are invisible here: an architecture that makes them must be run with ``seed_threads=1``."""
    if not cfg.train_mode:
        return False
    key = repr((cfg.arch, sorted(cfg.arch_kwargs.items()), cfg.input_depth, cfg.image, cfg.size))
    if key not in _RANDOM_CACHE:
        hw = tuple(prepare_image(cfg)[0].shape[-2:])
        with _BUILD_LOCK, seeding.manual_seed(cfg.seeds[0], "init"):
            net = create_generator(cfg.arch, in_chans=cfg.input_depth, out_chans=3, img_size=hw, **cfg.arch_kwargs)
        _RANDOM_CACHE[key] = any(_module_draws(m) for m in net.modules())
    return _RANDOM_CACHE[key]


def _module_draws(m: torch.nn.Module) -> bool:
    if isinstance(m, torch.nn.modules.dropout._DropoutNd):
        return m.p > 0
    if isinstance(m, torch.nn.MultiheadAttention):
        return m.dropout > 0
    return any((getattr(m, name, None) or 0) > 0 for name in ("drop_prob", "prob")
               if isinstance(getattr(m, name, None), (int, float)))


class _Stopped(BiasprobeError):
    """A seed group stopped because another group failed or the run was interrupted."""


def _fit_threaded(cfg: DIPConfig, device: torch.device, groups: list[list[int]], progress: bool) -> DIPResult:
    """Fit each seed group on its own thread, the torch threads shared out among them (one each when there are as
    many groups as threads); one result with the groups' seeds in order, whose sec_per_step is the wall time from
    the first group's first step to the last group's last step."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    stop = threading.Event()
    before = torch.get_num_threads()
    # the torch threads shared out, the remainder to the first groups (1 each on a 2-core CPU); never fewer than 1
    per_group = [max(1, before // len(groups) + (g < before % len(groups))) for g in range(len(groups))]
    shown = max(range(len(groups)), key=lambda g: len(groups[g]))  # the bar follows the group that ends last

    def work(g: int, seeds: list[int]):
        torch.set_num_threads(per_group[g])  # this thread's intra-op threads (OpenMP's count is per thread)
        sub = copy.deepcopy(cfg)
        sub.seeds = seeds
        desc = f"dip {cfg.arch} {cfg.task} ({len(cfg.seeds)} seeds on {len(groups)} threads)"
        return _fit(sub, device, progress and g == shown, stop=stop, desc=desc)

    try:
        with ThreadPoolExecutor(len(groups), thread_name_prefix="biasprobe-seeds") as ex:
            futures = [ex.submit(work, g, seeds) for g, seeds in enumerate(groups)]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                if any(f.exception() is not None for f in done):
                    stop.set()  # a group failed: the others stop at their next step
                wait(futures)
            except BaseException:
                stop.set()  # KeyboardInterrupt: the same
                raise
    finally:
        torch.set_num_threads(before)
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:  # the group that failed, not one that was stopped because of it
        raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
    parts = [f.result() for f in futures]

    seconds = max(p[2] for p in parts) - min(p[1] for p in parts)
    results = [p[0] for p in parts]
    summary = pd.concat([r.summary for r in results], ignore_index=True)
    summary["sec_per_step"] = seconds / cfg.iters
    summary["peak_mem_mb"] = summary["peak_mem_mb"].max()
    meta = provenance(device)
    meta["seed_threads"] = len(groups)
    meta["torch_threads_per_group"] = per_group  # seed k's numbers: a run of its group alone on this many threads
    curves = pd.concat([r.curves for r in results])
    order = curves.seed.map({seed: i for i, seed in enumerate(cfg.seeds)})
    curves = curves.assign(_o=order).sort_values(["step", "_o"], kind="stable").drop(columns="_o")
    curves = curves.reset_index(drop=True)
    return DIPResult(cfg, curves, summary,
                     {seed: img for r in results for seed, img in r.images.items()}, meta)


def _fit(cfg: DIPConfig, device: torch.device, progress: bool, stop: threading.Event | None = None,
         desc: str | None = None) -> tuple[DIPResult, float, float]:
    """The DIP loop for one seed batch in this thread; the result and the loop's start and end times."""
    clean, task_params = prepare_image(cfg)
    hw = tuple(clean.shape[-2:])
    K = len(cfg.seeds)

    obs = [tasks.make_task(cfg.task, clean, seed, **task_params) for seed in cfg.seeds]
    forward = obs[0].forward
    y = torch.cat([o.observed for o in obs]).to(device)
    mask = torch.cat([o.mask for o in obs]).to(device) if obs[0].mask is not None else None
    gt = torch.cat([o.clean for o in obs]).to(device) if obs[0].clean is not None else None
    baseline = torch.cat([o.baseline for o in obs]).to(device)
    channels = y.shape[1]

    nets = build_nets(cfg, hw, channels)
    batching = auto_batching(cfg.arch, device, K) if cfg.batching == "auto" else cfg.batching
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes all run long: let cuDNN pick the fastest kernels
    net = SeedBatch(nets, device, batching, channels_last=_channels_last(cfg, device))
    n_params = sum(p.numel() for p in nets[0].parameters())
    z = torch.cat([make_input(cfg.input_kind, cfg.input_depth, hw, s) for s in cfg.seeds]).to(device)
    noise_gens = [seeding.generator(s, "reg_noise", device) for s in cfg.seeds]
    z_noisy = torch.empty_like(z)

    # the fused kernel does Adam's whole update, every seed's tensors, in one call (same formula as the for-loop one)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
    guard = _Guard(net, opt, K, cfg.backtrack_db, device) if cfg.backtrack_db > 0 else None
    backtracks = torch.zeros(K, device=device)

    n_seen = mask.expand(K, channels, *y.shape[-2:]).sum((1, 2, 3)) if mask is not None else None
    ema = None
    hist_psnr_gt = torch.full((cfg.iters, K), math.nan, device=device)
    best_out = torch.zeros(K, channels, *hw, device=device)
    best_psnr = torch.full((K,), -math.inf, device=device)
    es_var = WindowVariance(cfg.es_window, (K, channels, *hw), device) if cfg.es_window > 0 else None
    hist_var = torch.full((cfg.iters, K), math.nan, device=device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)

    log_steps = sorted(set(range(0, cfg.iters, cfg.log_every)) | {cfg.iters - 1})
    log_set = set(log_steps)
    snap_steps = set(np.array(log_steps)[np.linspace(0, len(log_steps) - 1, min(5, len(log_steps))).astype(int)])
    rows: list[tuple] = []
    snapshots: dict[int, np.ndarray] = {}
    spectral_cache = _SpectralRefs(cfg, gt, baseline) if cfg.spectral else None

    bar = tqdm(range(cfg.iters), desc=desc or f"dip {cfg.arch} {cfg.task}", disable=not progress, leave=False)
    t0 = time.perf_counter()
    for step in bar:
        if stop is not None and stop.is_set():
            raise _Stopped("stopped: another seed group failed")
        if cfg.reg_noise_std > 0:
            for k, g in enumerate(noise_gens):
                torch.randn(z[k].shape, generator=g, device=device, out=z_noisy[k])
            net_in = z + cfg.reg_noise_std * z_noisy
        else:
            net_in = z
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = net(net_in)
        out = out.float()
        err = (forward(out) - y) ** 2
        if mask is not None:
            per_seed = (err * mask).sum((1, 2, 3)) / n_seen
        else:
            per_seed = err.mean((1, 2, 3))
        opt.zero_grad(set_to_none=True)
        per_seed.sum().backward()

        with torch.no_grad():
            psnr_obs_now = -10 * torch.log10(per_seed.detach())
            if guard is not None:
                backtracks += guard.before_update(per_seed.detach(), psnr_obs_now)
        opt.step()
        with torch.no_grad():
            if guard is not None:
                guard.after_update()

            x = out.detach().clamp(0, 1)
            ema = x.clone() if ema is None else ema.mul_(cfg.ema_weight).add_(x, alpha=1 - cfg.ema_weight)
            if gt is not None:
                p_gt = metrics.psnr(x, gt)
                hist_psnr_gt[step] = p_gt
                better = p_gt > best_psnr
                best_psnr = torch.where(better, p_gt, best_psnr)
                best_out = torch.where(_bcast(better, best_out), x, best_out)
            if es_var is not None:
                var = es_var.push(x)
                if var is not None:
                    hist_var[step] = var

            if step in log_set:
                rows += _log_rows(step, cfg, x, ema, y, gt, mask, forward, per_seed, backtracks, spectral_cache,
                                  hist_psnr_gt[step])
                if step in snap_steps:
                    snapshots[step] = _hwc(x)
                if progress:
                    bar.set_postfix_str(_postfix(rows, step))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t1 = time.perf_counter()
    seconds = t1 - t0

    curves = pd.DataFrame(rows, columns=["seed", "step", "metric", "value"])
    peak_mb = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    summary = _summarise(cfg, curves, hist_psnr_gt.cpu().numpy(), hist_var.cpu().numpy(), baseline, gt,
                         backtracks.cpu().numpy(), seconds, peak_mb, n_params, hw)
    final = _hwc(x)
    best = _hwc(best_out) if gt is not None else final
    images = {}
    for k, seed in enumerate(cfg.seeds):
        images[seed] = {
            "observed": _hwc(baseline)[k],
            "best": best[k],
            "final": final[k],
            "ema": _hwc(ema)[k],
            "snapshots": {s: snap[k] for s, snap in snapshots.items()},
        }
        if gt is not None:
            images[seed]["clean"] = _hwc(gt)[k]
    return DIPResult(cfg, curves, summary, images, provenance(device)), t0, t1


class WindowVariance:
    """ES-WMV's VAR_t = mean_pixels(1/W sum_w x_w^2 - (1/W sum_w x_w)^2) over the last W outputs x_w, per seed,
    from running sums kept in float64 (adding and removing an output is exact far below float32 rounding): two
    passes over one output per step instead of a variance over all W."""

    def __init__(self, window: int, shape: tuple, device: torch.device):
        self.window, self.t = window, 0
        self.buf = torch.zeros(window, *shape, device=device)
        self.sum = torch.zeros(shape, device=device, dtype=torch.float64)
        self.sq = torch.zeros_like(self.sum)

    def push(self, x: torch.Tensor) -> torch.Tensor | None:
        """Add output x (K, ...); returns VAR (K,) once W outputs have been seen, else None."""
        slot = self.buf[self.t % self.window]
        if self.t >= self.window:
            self.sum -= slot
            self.sq -= slot.double() ** 2
        slot.copy_(x)
        self.sum += x
        self.sq += x.double() ** 2
        self.t += 1
        if self.t < self.window:
            return None
        mean = self.sum / self.window
        return (self.sq / self.window - mean**2).mean(tuple(range(1, x.dim()))).float()


class _Guard:
    """DIP's backtracking, exact and per seed. Before Adam's update, seed k is *bad* when its loss is not finite or
    its PSNR against the observation fell more than ``threshold`` dB below its last good value. Good seeds save
    their pre-update parameters and Adam moments; after the update, bad seeds get theirs back (so their update is
    undone and the weights are the last good ones). Saving is one multi-tensor copy per step (all seeds good) or
    one per good seed.

    On a CPU the bad mask is read on the host (there is no device queue to drain) and only the seeds' own tensors
    are copied: ``torch.where`` over every tensor costs several times a copy there. On other devices it stays on
    the device (``torch.where``, no host sync per step).
    """

    def __init__(self, net: SeedBatch, opt: torch.optim.Optimizer, k: int, threshold: float,
                 device: torch.device):
        self.net, self.opt, self.k, self.threshold = net, opt, k, threshold
        self.saved = [[p.detach().clone() for p in net.leaves]]  # groups: parameters, exp_avg, exp_avg_sq
        self.last_good = torch.full((k,), -math.inf, device=device)
        self.host = device.type == "cpu"
        self.bad = torch.zeros(k, dtype=torch.bool, device=device)
        self.bad_rows: list[int] = []
        self._cache: list[list[torch.Tensor]] = []

    def _live(self) -> list[list[torch.Tensor]]:
        if len(self._cache) == 3:  # parameters and both moments: fixed tensors from Adam's first update on
            return self._cache
        leaves = self.net.leaves
        live = [[p.detach() for p in leaves]]
        state = [self.opt.state.get(p, {}) for p in leaves]
        live += [[s[key] for s in state] for key in ("exp_avg", "exp_avg_sq") if key in state[0]]
        # Adam's moments appear at its first update; before it they are 0
        self.saved += [[torch.zeros_like(t) for t in group] for group in live[len(self.saved):]]
        self._cache = live
        return live

    def _copy(self, dst: list[list[torch.Tensor]], src: list[list[torch.Tensor]], seeds: list[int]) -> None:
        for d, s in zip(dst, src):
            if len(seeds) == self.k:
                torch._foreach_copy_(d, s)
            else:
                for k in seeds:
                    torch._foreach_copy_(self.net.rows(d, k), self.net.rows(s, k))

    def _where(self, dst: list[list[torch.Tensor]], a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]):
        """dst = a where the seed is bad, else b (on the device, no host sync)."""
        for dg, ag, bg in zip(dst, a, b):
            if self.net.mode == "loop":
                for k in range(self.k):
                    for d, x, y in zip(*(self.net.rows(g, k) for g in (dg, ag, bg))):
                        torch.where(self.bad[k], x, y, out=d)
            else:
                for d, x, y in zip(dg, ag, bg):
                    torch.where(_bcast(self.bad, d), x, y, out=d)

    def before_update(self, loss: torch.Tensor, psnr_obs: torch.Tensor) -> torch.Tensor:
        """Decide which seeds are bad, save the good ones; returns the bad mask as floats (to count)."""
        bad = ~torch.isfinite(loss) | (psnr_obs < self.last_good - self.threshold)
        self.bad = bad
        self.last_good = torch.where(bad, self.last_good, psnr_obs)
        live = self._live()
        if self.host:
            self.bad_rows = [k for k, b in enumerate(bad.tolist()) if b]
            self._copy(self.saved, live, [k for k in range(self.k) if k not in self.bad_rows])
        else:
            self._where(self.saved, self.saved, live)
        return bad.float()

    def after_update(self) -> None:
        """Put the bad seeds' saved parameters and moments back."""
        live = self._live()
        if self.host:
            self._copy(live, self.saved, self.bad_rows)
        else:
            self._where(live, self.saved, live)


def _bcast(mask_k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask_k.view(-1, *([1] * (like.dim() - 1)))


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)


class _SpectralRefs:
    """Spectral measures at log steps, with the clean and observed references converted once."""

    def __init__(self, cfg: DIPConfig, gt, baseline):
        from biasprobe import spectral

        self.fn = spectral.spectral_metrics
        self.gt = _hwc(gt) if gt is not None else None
        self.obs = _hwc(baseline)
        h, w = baseline.shape[-2:]
        # a period needs at least 4 patches per side for the boundary measure to mean anything
        self.periods = {f"p{p}": p for p in cfg.grid_periods if h % p == 0 and w % p == 0 and 4 * p <= min(h, w)}

    def __call__(self, x: torch.Tensor) -> list[dict]:
        out = _hwc(x)
        return [self.fn(out[k], None if self.gt is None else self.gt[k], self.obs[k], self.periods)
                for k in range(len(out))]


def _log_rows(step, cfg, x, ema, y, gt, mask, forward, per_seed, backtracks, spectral_cache,
              psnr_gt) -> list[tuple]:
    """The long rows of one log step; ``psnr_gt``: this step's psnr_gt, which the loop has already computed."""
    vals: dict[str, torch.Tensor] = {"loss": per_seed.detach(), "backtracks": backtracks}
    vals["psnr_obs"] = metrics.psnr_masked(forward(x).clamp(0, 1), y, mask)
    if gt is not None:
        vals["psnr_gt"] = psnr_gt
        vals["psnr_gt_ema"] = metrics.psnr(ema, gt)
        vals["gap"] = vals["psnr_gt"] - vals["psnr_obs"]
        vals["ssim_gt"] = metrics.ssim(x, gt)
    stacked = torch.stack([v.float() for v in vals.values()]).cpu().numpy()  # the one host sync of a log step
    host = dict(zip(vals, stacked))
    spectra = spectral_cache(x) if spectral_cache is not None else [{} for _ in cfg.seeds]
    rows = []
    for k, seed in enumerate(cfg.seeds):  # seed by seed: a seed's rows do not depend on its batch-mates
        rows += [(seed, step, name, float(v[k])) for name, v in host.items()]
        rows += [(seed, step, name, float(v)) for name, v in spectra[k].items()]
    return rows


def _postfix(rows, step) -> str:
    latest = {m: v for s, st, m, v in rows if st == step and s == rows[-1][0]}
    keys = [k for k in ("psnr_gt", "psnr_obs", "psnr_gt_ema") if k in latest]
    return " ".join(f"{k}={latest[k]:.2f}" for k in keys)


def _summarise(cfg, curves, hist_psnr_gt, hist_var, baseline, gt, backtracks, seconds, peak_mb, n_params, hw):
    out = []
    base_psnr = metrics.psnr(baseline, gt).cpu().numpy() if gt is not None else None
    for k, seed in enumerate(cfg.seeds):
        c = curves[curves.seed == seed].pivot(index="step", columns="metric", values="value")
        row = dict(arch=cfg.arch, task=cfg.task, image=cfg.image, seed=seed, setting=cfg.setting,
                   height=hw[0], width=hw[1], iters=cfg.iters, lr=cfg.lr, n_params=n_params,
                   sec_per_step=seconds / cfg.iters, peak_mem_mb=peak_mb, backtracks=int(backtracks[k]),
                   final_psnr_obs=float(c["psnr_obs"].iloc[-1]))
        es = metrics.es_wmv_step(hist_var[:, k], cfg.es_patience) if cfg.es_window > 0 else -1
        row["es_step"] = es
        if gt is not None:
            h = hist_psnr_gt[:, k]
            best = int(np.nanargmax(h))
            gap = c["gap"]
            row.update(
                baseline_psnr=float(base_psnr[k]),
                max_psnr_gt=float(h[best]),
                max_psnr_gt_step=best,
                gain_db=float(h[best] - base_psnr[k]),
                final_psnr_gt=float(c["psnr_gt"].iloc[-1]),
                final_psnr_gt_ema=float(c["psnr_gt_ema"].iloc[-1]),
                max_psnr_gt_ema=float(c["psnr_gt_ema"].max()),
                final_gap=float(gap.iloc[-1]),
                gap_negative_step=_gap_negative_step(gap),
                gap_area=float(trapezoid(gap.clip(lower=0).to_numpy(), gap.index.to_numpy()))
                if len(gap) > 1 else 0.0,
                es_psnr_gt=float(h[es]) if es >= 0 else math.nan,
                es_gap_to_peak_db=float(h[best] - h[es]) if es >= 0 else math.nan,
            )
        out.append(row)
    return pd.DataFrame(out)


def _gap_negative_step(gap: pd.Series) -> float:
    """First logged step at which the gap psnr_gt - psnr_obs is below zero after having been >= 0 (the net starts
    fitting the corruption); 0 if it is never positive; NaN if it stays positive to the end."""
    positive = gap >= 0
    if not positive.any():
        return 0.0
    after = gap[gap.index > positive.idxmax()]
    neg = after[after < 0]
    return float(neg.index[0]) if len(neg) else math.nan


def config_dict(cfg: DIPConfig) -> dict:
    return asdict(cfg)


def save_result(result: DIPResult, out_root) -> list:
    """Write one directory per seed: config.json, curves.parquet, summary.json, images.npz and PNGs
    (snapshots, best step, PSNR-vs-iteration plot). Returns the directories."""
    from pathlib import Path

    from biasprobe import plots
    from biasprobe.runinfo import write_atomic, write_json, write_parquet

    cfg = result.config
    dirs = []
    for seed in cfg.seeds:
        single = copy.deepcopy(cfg)
        single.seeds = [seed]
        name = f"{cfg.arch}-{cfg.task}-{Path(str(cfg.image)).stem}-s{seed}".replace("+", "p").replace("/", "_")
        d = Path(out_root) / name
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / "config.json", {"config": asdict(single), "seed": seed, **result.meta})
        curves = result.curves[result.curves.seed == seed]
        write_parquet(d / "curves.parquet", curves)
        summary = result.summary[result.summary.seed == seed].iloc[0].to_dict()
        write_json(d / "summary.json", summary)
        imgs = result.images[seed]
        arrays = {k: v for k, v in imgs.items() if k != "snapshots"}
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        write_atomic(d / "images.npz", buf.getvalue())
        for key in ("clean", "observed", "best", "final", "ema"):
            if key in imgs:
                imagelib.save_png(imgs[key], d / f"{key}.png")
        for step, arr in imgs["snapshots"].items():
            imagelib.save_png(arr, d / f"step{step:05d}.png")
        plots.psnr_curves(curves, d / "psnr.png", title=f"{cfg.arch} {cfg.task} {Path(str(cfg.image)).stem} seed {seed}")
        dirs.append(d)
    return dirs
