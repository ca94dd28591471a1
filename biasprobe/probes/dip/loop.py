"""The Deep Image Prior loop (Ulyanov, Vedaldi, Lempitsky 2018), for any registered generator, several seeds at once.

Per seed k: a fixed input z_k (``input_depth`` channels of U(0, 1) * 0.1, or a meshgrid), a randomly initialised
generator f_k, the observation y_k of the task (noisy image, masked image, low-resolution image, ...). The init,
the input, the observation's noise or mask and the reg-noise draws each come from their own stream of seed k
(``seeding.py``), so no draw is a function of another. Each step::

    x_k   = f_k(z_k + reg_noise_std * n_t)               n_t ~ N(0, 1), fresh every step
    loss  = sum_k mean_{seen pixels} (A(x_k) - y_k)^2    A = the task's forward operator
    Adam step on all parameters (each seed's parameters only see its own loss)
    ema_k = 0.99 * ema_k + 0.01 * x_k                    (DIP's exp_weight)

Divergence guard (DIP's backtracking, as the official code does it): when seed k's loss is not finite, or its PSNR
against the observation falls more than ``backtrack_db`` below its last good value, its parameters are restored to
the last good step; Adam's moments keep the bad step's gradient, so the next update differs (``engine.Guard``). A
seed that backtracks on more than ``max_backtrack_share`` of its steps is marked ``failed`` in its summary. On CUDA
the guard runs on the device with ``torch.where`` (no host sync per step); on a CPU it copies the seeds' tensors.

Stopping (``stop``): ``"fixed"`` runs ``iters`` steps; ``"peak"`` stops once every seed's psnr_gt peak and (unless
``stop_on_gap`` is false) its gap crossing (gap = psnr_gt - psnr_obs turning negative and staying so for
``gap_window`` steps) lie ``patience`` steps back, or the seed has collapsed (``collapse_db``: psnr_obs stuck that
far below its best for ``patience`` steps), ``iters`` being the cap. The rule is ``records.StopRule``, an
incremental object fed only the steps since the last log step. Each seed's summary says whether its peak was
reached (``peak_reached``) and whether its gap crossing was observed or is censored at the stop (``gap_censored``).

Batching seeds (:class:`engine.SeedBatch`): all K networks' parameters are updated by one fused Adam call; the nets
run either one after another, each on its own leaf tensors (``batching="loop"``), or as one
``torch.vmap(functional_call)`` over (K, ...) stacked leaves (``"vmap"``); ``"auto"`` (the default) takes loop on a
CPU and vmap elsewhere (:func:`engine.auto_batching`). On a CPU with several threads the seeds are first cut into
groups fitted side by side on threads that share out the cores (:func:`engine.seed_groups`): a batch-1 step of these
nets is too small to keep several cores busy, one step per core is not. Each seed keeps its own weights and its own
BatchNorm batch statistics (BN runs in training mode as in DIP; running averages are never used then and are
switched off). Seed k of a batch follows the same computation as a single run of seed k (same init, input, noise
draws and observation); with loop the numbers are the same at the same intra-op thread count (a seed group's count
is recorded as ``torch_threads_per_group``), with vmap they agree to float rounding (grouped convs sum in another
order). Conv nets run channels-last on CUDA, contiguous on a CPU (:func:`engine.channels_last`); ``amp="bf16"``
autocasts the forward pass (faster on CPUs with AMX/avx512_bf16, far slower on CPUs without bf16 hardware; its
psnr_gt curves then differ from float32's by rounding, see reports/bench_dip.md). Throughput against a plain DIP
loop: benchmarks/bench_dip.py.

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
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from biasprobe import resume, seeding
from biasprobe.probes.dip import checkpoint as saved_state
from biasprobe.probes.dip import quality as metrics
from biasprobe.probes.dip.config import DIPConfig, DIPResult
from biasprobe.probes.dip.engine import Guard, SeedBatch, Stopped, auto_batching, bcast, channels_last, seed_groups
from biasprobe.probes.dip.prepare import build_nets, make_input, observe, prepare_image
from biasprobe.probes.dip.records import StopRule, hwc, summarise
from biasprobe.errors import BiasprobeError
from biasprobe.runinfo import cpu_has_bf16, provenance, resolve_device


def run_dip(cfg: DIPConfig, progress: bool = True, seed_threads: int | None = None) -> DIPResult:
    """Fit ``cfg.arch`` to the corrupted image for every seed in ``cfg.seeds`` at once; return curves and summary.

    ``seed_threads`` (CPU only): split the seeds into that many contiguous groups and fit the groups concurrently,
    each on its own Python thread, the torch threads shared out among them (see :func:`seed_groups`); None = auto.
    Each group is the seed batch a run of those seeds alone would be: a seed's numbers equal those of its group run
    alone on the group's thread count (``meta["torch_threads_per_group"]``). Other thread counts sum in other
    orders, and DIP amplifies such rounding differences (measured in reports/bench_dip.md), as with any change of
    torch's thread count.
    """
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    warn_slow_amp(cfg, device)
    clean, task_params = prepare_image(cfg)  # once: every seed group fits the same image
    groups = seed_groups(cfg, device, tuple(clean.shape[-2:]), seed_threads)
    checkpoint = resume.current()  # read here: the seed groups' threads do not inherit the context
    if len(groups) == 1:
        result, _, _ = _fit(cfg, clean, task_params, device, progress, checkpoint=checkpoint)
        result.meta["seed_threads"] = 1
        result.meta["torch_threads_per_group"] = [torch.get_num_threads()]
        return result
    return _fit_threaded(cfg, clean, task_params, device, groups, progress, checkpoint)


def warn_slow_amp(cfg: DIPConfig, device: torch.device) -> None:
    """Warn when bf16 autocast is asked for on a CPU without bf16 instructions (emulated there: many times slower)."""
    if cfg.amp == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        warnings.warn("--amp bf16 on a CPU without bf16 instructions (no avx512_bf16 or amx_bf16): autocast is "
                      "emulated and many times slower than fp32 here (32 s vs 0.8 s per skip-net step measured on "
                      "such a CPU); use --amp fp32", stacklevel=3)


def _fit_threaded(cfg: DIPConfig, clean: torch.Tensor, task_params: dict, device: torch.device,
                  groups: list[list[int]], progress: bool, checkpoint: resume.Checkpoint | None = None) -> DIPResult:
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
        return _fit(sub, clean, task_params, device, progress and g == shown, stop=stop, desc=desc,
                    checkpoint=checkpoint)

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
        raise next((e for e in errors if not isinstance(e, Stopped)), errors[0])
    parts = [f.result() for f in futures]

    seconds = max(p[2] for p in parts) - min(p[1] for p in parts)
    results = [p[0] for p in parts]
    summary = pd.concat([r.summary for r in results], ignore_index=True)
    summary["sec_per_step"] = seconds / summary["steps_run"].max()
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


def _fit(cfg: DIPConfig, clean: torch.Tensor, task_params: dict, device: torch.device, progress: bool,
         stop: threading.Event | None = None, desc: str | None = None,
         checkpoint: resume.Checkpoint | None = None) -> tuple[DIPResult, float, float]:
    """The DIP loop for one seed batch in this thread; the result and the loop's start and end times.
    ``checkpoint``: where the loop saves its state now and then, and whence it resumes (``checkpoint.py``)."""
    entry = time.perf_counter()
    # what is fitted: the observation of every seed, one generator, input and reg-noise stream per seed
    obs = observe(cfg, clean, task_params).to(device)
    gt, baseline = obs.clean, obs.baseline  # gt: None for tasks without ground truth
    hw, K, channels = tuple(clean.shape[-2:]), len(cfg.seeds), obs.observed.shape[1]
    nets = build_nets(cfg, hw, channels)
    n_params = sum(p.numel() for p in nets[0].parameters())
    batching = auto_batching(cfg.arch, device, K) if cfg.batching == "auto" else cfg.batching
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes all run long: let cuDNN pick the fastest kernels
    net = SeedBatch(nets, device, batching, channels_last=channels_last(cfg, device))
    z = torch.cat([make_input(cfg.input_kind, cfg.input_depth, hw, s) for s in cfg.seeds]).to(device)
    noise_gens = [seeding.generator(s, "reg_noise", device) for s in cfg.seeds]
    z_noisy = torch.empty_like(z)

    # the optimiser (the fused kernel does every seed's update in one call) and the divergence guard
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
    guard = Guard(net, opt, K, cfg.backtrack_db, device) if cfg.backtrack_db > 0 else None
    backtracks = torch.zeros(K, device=device)

    # what is tracked every step on the device: psnr_gt (for the exact peak), the best output, ES-WMV's variance
    ema = None
    hist_psnr_gt = torch.full((cfg.iters, K), math.nan, device=device)
    hist_gap = torch.full((cfg.iters, K), math.nan, device=device)  # psnr_gt - psnr_obs, every step
    best_out = torch.zeros(K, channels, *hw, device=device)
    best_psnr = torch.full((K,), -math.inf, device=device)
    es_var = metrics.WindowVariance(cfg.es_window, (K, channels, *hw), device) if cfg.es_window > 0 else None
    hist_var = torch.full((cfg.iters, K), math.nan, device=device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    log = LogStep(cfg, obs)
    # the input's PSNR for the summary, computed here so that the metrics' first-use imports stay out of the timing
    base_psnr = metrics.psnr(baseline, gt).cpu().numpy() if gt is not None else None
    snapshots: dict[int, np.ndarray] = {}
    if cfg.stop == "peak" and gt is None:
        raise BiasprobeError(f"--stop peak needs a ground truth to find the peak; task {cfg.task!r} has none here: "
                             "use --stop fixed")
    steps_run = cfg.iters
    rule = StopRule(K, cfg.patience, cfg.gap_window, cfg.stop_on_gap, cfg.collapse_db) if cfg.stop == "peak" else None
    dead = DeadCheck(cfg, obs) if rule is not None and cfg.dead_after > 0 else None

    # a killed attempt's last save, if there is one for this very fit: go on from the step after it
    ck_name, start, loop_before, spent_before = saved_state.name(cfg.seeds), 0, 0.0, 0.0
    state = checkpoint.load(ck_name) if checkpoint is not None else None
    def loop_objects():  # what a save holds, as the loop's variables stand now
        return SimpleNamespace(net=net, opt=opt, guard=guard, backtracks=backtracks, ema=ema,
                               hist_psnr_gt=hist_psnr_gt, hist_gap=hist_gap, hist_var=hist_var, best_out=best_out,
                               best_psnr=best_psnr, es_var=es_var, log=log, snapshots=snapshots, rule=rule, dead=dead,
                               noise_gens=noise_gens)

    if saved_state.usable(state, cfg, device):
        s = loop_objects()
        saved_state.restore(state, s, device)
        ema, snapshots, rule, dead = s.ema, s.snapshots, s.rule, s.dead
        start, loop_before, spent_before = int(state["step"]) + 1, state["loop_seconds"], state["spent"]
        checkpoint.carry(ck_name, spent_before)
    del state
    timer = resume.Timer(checkpoint)

    bar = tqdm(range(start, cfg.iters), desc=desc or f"dip {cfg.arch} {cfg.task}", disable=not progress,
               leave=False, initial=start, total=cfg.iters)
    t0 = time.perf_counter() - loop_before
    for step in bar:
        if stop is not None and stop.is_set():
            raise Stopped("stopped: another seed group failed")
        if cfg.reg_noise_std > 0:
            for k, g in enumerate(noise_gens):
                torch.randn(z[k].shape, generator=g, device=device, out=z_noisy[k])
            net_in = z + cfg.reg_noise_std * z_noisy
        else:
            net_in = z
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = net(net_in)
        out = out.float()
        per_seed = obs.loss(out, reduction="none")  # the task's own loss: MSE over the seen entries of A(x)
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
                hist_gap[step] = p_gt - metrics.psnr_masked(obs.forward(x).clamp(0, 1), obs.observed, obs.mask)
                better = p_gt > best_psnr
                best_psnr = torch.where(better, p_gt, best_psnr)
                best_out = torch.where(bcast(better, best_out), x, best_out)
            if es_var is not None:
                var = es_var.push(x)
                if var is not None:
                    hist_var[step] = var

            # stop="peak": read the rule at log steps (they sync with the host anyway); the stop step is logged
            stopping = False
            if rule is not None and step in log.steps and step < cfg.iters - 1:
                rule.update(hist_psnr_gt[rule.steps: step + 1].cpu().numpy(),
                            hist_gap[rule.steps: step + 1].cpu().numpy())  # only the steps since the last log step
                if dead is not None and dead.due(step):
                    dead.check(hist_psnr_gt[: step + 1] - hist_gap[: step + 1])
                done = rule.state().done.to_numpy()
                stopping = bool((done | dead.dead).all()) if dead is not None else bool(done.all())
            if step in log.steps or stopping:
                log(step, x, ema, per_seed, backtracks, hist_psnr_gt[step])
                if step in log.snapshot_steps or stopping:
                    snapshots[step] = hwc(x)
                if progress:
                    bar.set_postfix_str(log.postfix())
            if stopping:
                steps_run = step + 1
                break
            # a regular log step: save when due, and always at the last one before the cap (the fit runs to its cap
            # from here: a higher cap can go on from this state, so it is kept beside the stored run)
            at_cap = checkpoint is not None and cfg.stop == "peak" and step == log.last_regular
            if step % cfg.log_every == 0 and step < cfg.iters - 1 and (at_cap or timer.due()):
                now = time.perf_counter()
                checkpoint.save(ck_name, saved_state.capture(cfg, device, step, now - t0,
                                                             spent_before + now - entry, loop_objects()))
                timer.saved()
                if at_cap:
                    checkpoint.keep(ck_name)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t1 = time.perf_counter()

    curves = pd.DataFrame(log.rows, columns=["seed", "step", "metric", "value"])
    peak_mb = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    summary = summarise(cfg, curves, hist_psnr_gt[:steps_run].cpu().numpy(), hist_var[:steps_run].cpu().numpy(),
                        base_psnr, backtracks.cpu().numpy(), t1 - t0, peak_mb, n_params, hw,
                        hist_gap=hist_gap[:steps_run].cpu().numpy(),
                        dead_stop=dead.dead if dead is not None else None)
    final, observed, smooth = hwc(x), hwc(baseline), hwc(ema)
    best, clean_hwc = (hwc(best_out), hwc(gt)) if gt is not None else (final, None)
    images = {}
    for k, seed in enumerate(cfg.seeds):
        images[seed] = {"observed": observed[k], "best": best[k], "final": final[k], "ema": smooth[k],
                        "snapshots": {s: snap[k] for s, snap in snapshots.items()}}
        if gt is not None:
            images[seed]["clean"] = clean_hwc[k]
    return DIPResult(cfg, curves, summary, images, provenance(device)), t0, t1


class DeadCheck:
    """``dead_after``: once, at the first log step at or after step ``dead_after - 1``, mark dead each seed whose best
    psnr_obs so far (every step's, from the loop's histories) is below ``const_psnr + dead_db``, ``const_psnr`` being
    the psnr_obs of the best constant-colour image (each channel the observation's mean over the seen pixels).
    A dead seed fitted a colour, not an image (e.g. every ReLU of a narrow conv stack off): it counts as done, so a
    one-seed fit stops there (a batch stops when every seed is done or dead; its summary marks it ``dead_stop``)."""

    def __init__(self, cfg: DIPConfig, obs):
        self.after, self.margin = cfg.dead_after, float(cfg.dead_db)
        seen = obs.mask.expand_as(obs.observed).to(obs.observed.dtype) if obs.mask is not None else \
            torch.ones_like(obs.observed)
        mean = (obs.observed * seen).sum(dim=(2, 3), keepdim=True) / seen.sum(dim=(2, 3), keepdim=True)
        self.const_psnr = metrics.psnr_masked(mean.expand_as(obs.observed), obs.observed, obs.mask).cpu().numpy()
        self.dead = np.zeros(len(self.const_psnr), dtype=bool)
        self.checked = False

    def due(self, step: int) -> bool:
        return not self.checked and step >= self.after - 1

    def check(self, hist_psnr_obs: torch.Tensor) -> None:
        """``hist_psnr_obs``: (steps so far, K), psnr_obs of every step (NaN where not computed)."""
        best = torch.nan_to_num(hist_psnr_obs, nan=-math.inf).max(dim=0).values.cpu().numpy()
        self.dead = best < self.const_psnr + self.margin
        self.checked = True


class LogStep:
    """The metrics of a log step as long rows (seed, step, metric, value): psnr_obs, psnr_gt, psnr_gt_ema,
    gap = psnr_gt - psnr_obs, ssim_gt, loss, backtracks and the spectral measures (``spectral.py``), fetched to the
    host in one copy. Logged every ``log_every`` steps and at the last step; five of them keep a snapshot image."""

    def __init__(self, cfg: DIPConfig, obs):
        self.cfg, self.obs = cfg, obs
        steps = sorted(set(range(0, cfg.iters, cfg.log_every)) | {cfg.iters - 1})
        self.steps = set(steps)
        # the last multiple of log_every before the cap's last step: the rule's last read (None: there is none)
        self.last_regular = max((s for s in steps if s % cfg.log_every == 0 and s < cfg.iters - 1), default=None)
        self.snapshot_steps = set(np.array(steps)[np.linspace(0, len(steps) - 1, min(5, len(steps))).astype(int)])
        self.spectral = _SpectralRefs(cfg, obs.clean, obs.baseline) if cfg.spectral else None
        self.rows: list[tuple] = []

    def __call__(self, step, x, ema, per_seed, backtracks, psnr_gt) -> None:
        """``psnr_gt``: this step's psnr_gt, which the loop has already computed."""
        obs = self.obs
        vals: dict[str, torch.Tensor] = {"loss": per_seed.detach(), "backtracks": backtracks}
        vals["psnr_obs"] = metrics.psnr_masked(obs.forward(x).clamp(0, 1), obs.observed, obs.mask)
        if obs.clean is not None:
            vals["psnr_gt"] = psnr_gt
            vals["psnr_gt_ema"] = metrics.psnr(ema, obs.clean)
            vals["gap"] = vals["psnr_gt"] - vals["psnr_obs"]
            vals["ssim_gt"] = metrics.ssim(x, obs.clean)
        stacked = torch.stack([v.float() for v in vals.values()]).cpu().numpy()  # the one host sync of a log step
        host = dict(zip(vals, stacked))
        spectra = self.spectral(x) if self.spectral is not None else [{} for _ in self.cfg.seeds]
        for k, seed in enumerate(self.cfg.seeds):  # seed by seed: a seed's rows do not depend on its batch-mates
            self.rows += [(seed, step, name, float(v[k])) for name, v in host.items()]
            self.rows += [(seed, step, name, float(v)) for name, v in spectra[k].items()]

    def postfix(self) -> str:
        """The progress bar's text: the last seed's latest PSNRs."""
        seed, step = self.rows[-1][0], self.rows[-1][1]
        latest = {}
        for s, st, m, v in reversed(self.rows):  # the last step's rows are at the end
            if st != step:
                break
            if s == seed:
                latest[m] = v
        return " ".join(f"{k}={latest[k]:.2f}" for k in ("psnr_gt", "psnr_obs", "psnr_gt_ema") if k in latest)


class _SpectralRefs:
    """Spectral measures at log steps, with the clean and observed references converted once."""

    def __init__(self, cfg: DIPConfig, gt, baseline):
        from biasprobe.probes import spectral

        self.fn = spectral.spectral_metrics
        self.gt = hwc(gt) if gt is not None else None
        self.obs = hwc(baseline)
        h, w = baseline.shape[-2:]
        # a period needs at least 4 patches per side for the boundary measure to mean anything
        self.periods = {f"p{p}": p for p in cfg.grid_periods if h % p == 0 and w % p == 0 and 4 * p <= min(h, w)}

    def __call__(self, x: torch.Tensor) -> list[dict]:
        out = hwc(x)
        return [self.fn(out[k], None if self.gt is None else self.gt[k], self.obs[k], self.periods)
                for k in range(len(out))]
