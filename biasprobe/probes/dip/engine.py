"""The seed-batched engine: K networks of one architecture fitted as one (:class:`SeedBatch`), the exact
divergence guard (:class:`Guard`), how seeds are batched (:func:`auto_batching`) and how a CPU's threads are shared
out among seed groups (:func:`seed_groups`)."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch.func import functional_call, stack_module_state

from biasprobe import seeding
from biasprobe.probes.dip.config import DIPConfig
from biasprobe.probes.dip.prepare import BUILD_LOCK
from biasprobe.errors import BiasprobeError
from biasprobe.archs.factory import create_generator
from biasprobe.archs.registry import get_arch


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
    :func:`auto_batching` and benchmarks/bench_dip.py).
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
    """The faster seed-batching mode (measured by benchmarks/bench_dip.py, reports/bench_dip_options.md). On a CPU,
    ``loop`` for conv nets: vmap turns convs into grouped convs, which are slower than K plain calls. For
    transformers and their hybrids on a CPU it depends on the threads: with one thread vmap gains nothing (a bmm of
    K is no faster than K mm on one core, and the explicit attention vmap needs is slower than fused attention);
    with two or more, vmap's K-wide matmuls split across the cores better than K narrow ones. Elsewhere (CUDA)
    ``vmap``: one wide kernel per layer instead of K narrow ones."""
    if k == 1:
        return "loop"
    if device.type != "cpu":
        return "vmap"
    return "vmap" if _family(arch) != "cnn" and torch.get_num_threads() > 1 else "loop"


def channels_last(cfg: DIPConfig, device: torch.device) -> bool:
    """Channels-last (NHWC) activations for conv nets on CUDA (the tensor-core layout). Not on a CPU: there it was
    neutral on an Intel Xeon with AMX (reports/bench_dip_options.md, 1.01x) and slower on a 2-core AMD EPYC
    (skip-net step at 128 px, one seed: 1.09 s vs 0.80 s contiguous on one thread, 0.69 vs 0.62 on two)."""
    return _family(cfg.arch) == "cnn" and device.type == "cuda"


def _family(arch: str) -> str:
    """The architecture's family, or for a hybrid its backbone's (``vit+3c`` -> ``vit``)."""
    spec = get_arch(arch)
    return get_arch(spec.backbone).family if spec.backbone else spec.family


def seed_groups(cfg: DIPConfig, device: torch.device, hw: tuple[int, int],
                seed_threads: int | None = None) -> list[list[int]]:
    """The seed batch cut into W contiguous groups of near-equal size, W = ``seed_threads`` or, when None, the
    torch thread count; at most one group per seed, and one group on a GPU or when the nets (at image size ``hw``)
    draw random numbers in their forward pass (dropout / drop-path use the global generator, which threads would
    share).

    Why: on a small CPU, several seeds' steps run faster side by side on one thread each than one after another
    on all threads, because a batch-1 step of these nets is too small to keep several cores busy; and batching
    seeds with vmap on one core is slower than a loop (measured: reports/bench_dip_options.md).
    """
    k = len(cfg.seeds)
    w = torch.get_num_threads() if seed_threads is None else int(seed_threads)
    if w < 1:
        raise BiasprobeError(f"--seed-threads must be at least 1 (got {w})")
    w = min(w, k)
    if w == 1 or device.type != "cpu" or _draws_random(cfg, hw):
        return [list(cfg.seeds)]
    bounds = np.linspace(0, k, w + 1).round().astype(int)
    return [list(cfg.seeds[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


_RANDOM_CACHE: dict[str, bool] = {}


def _draws_random(cfg: DIPConfig, hw: tuple[int, int]) -> bool:
    """Whether the architecture's forward pass in training mode draws random numbers, judged from its modules:
    dropout (``nn.Dropout*``, ``nn.MultiheadAttention(dropout=...)``, timm's DropPath / DropBlock ``drop_prob`` and
    PatchDropout ``prob``) with a nonzero rate. Random draws made in a module's own code (functional dropout, noise
    injection) are invisible here: an architecture that makes them must be run with ``seed_threads=1``."""
    if not cfg.train_mode:
        return False
    key = repr((cfg.arch, sorted(cfg.arch_kwargs.items()), cfg.input_depth, tuple(hw)))
    if key not in _RANDOM_CACHE:
        with BUILD_LOCK, seeding.manual_seed(cfg.seeds[0], "init"):
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


class Stopped(BiasprobeError):
    """A seed group stopped because another group failed or the run was interrupted."""


class Guard:
    """DIP's backtracking, per seed, as the official DIP code does it. Before Adam's update, seed k is *bad* when
    its loss is not finite or its PSNR against the observation fell more than ``threshold`` dB below its last good
    value. Good seeds save their pre-update parameters; after the update, bad seeds get their last good
    *parameters* back. Adam's moments are not restored: they keep the bad step's gradient, so the update that
    follows a backtrack differs from the one that led to it (restoring the moments too made the same bad update
    recur: 749 backtracks in 1500 steps at lr 0.01). Saving is one multi-tensor copy per step (all seeds good) or
    one per good seed.

    On a CPU the bad mask is read on the host (there is no device queue to drain) and only the seeds' own tensors
    are copied: ``torch.where`` over every tensor costs several times a copy there. On other devices it stays on
    the device (``torch.where``, no host sync per step).
    """

    def __init__(self, net: SeedBatch, opt: torch.optim.Optimizer, k: int, threshold: float,
                 device: torch.device):
        self.net, self.opt, self.k, self.threshold = net, opt, k, threshold
        self.live = [[p.detach() for p in net.leaves]]  # one group: the parameters
        self.saved = [[p.clone() for p in self.live[0]]]
        self.last_good = torch.full((k,), -math.inf, device=device)
        self.host = device.type == "cpu"
        self.bad = torch.zeros(k, dtype=torch.bool, device=device)
        self.bad_rows: list[int] = []

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
                    torch.where(bcast(self.bad, d), x, y, out=d)

    def before_update(self, loss: torch.Tensor, psnr_obs: torch.Tensor) -> torch.Tensor:
        """Decide which seeds are bad, save the good ones; returns the bad mask as floats (to count)."""
        bad = ~torch.isfinite(loss) | (psnr_obs < self.last_good - self.threshold)
        self.bad = bad
        self.last_good = torch.where(bad, self.last_good, psnr_obs)
        live = self.live
        if self.host:
            self.bad_rows = [k for k, b in enumerate(bad.tolist()) if b]
            self._copy(self.saved, live, [k for k in range(self.k) if k not in self.bad_rows])
        else:
            self._where(self.saved, self.saved, live)
        return bad.float()

    def after_update(self) -> None:
        """Put the bad seeds' saved parameters back (not their Adam moments)."""
        live = self.live
        if self.host:
            self._copy(live, self.saved, self.bad_rows)
        else:
            self._where(live, self.saved, live)


def bcast(mask_k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask_k.view(-1, *([1] * (like.dim() - 1)))
