"""A DIP fit's whole state at a log step, so that a killed fit goes on from there (``biasprobe.resume``).

Saved at a regular log step s (a multiple of ``log_every`` below the cap's last step, after the step's update,
stop-rule read and log row): every seed's weights and buffers, Adam's state, the divergence guard's saved weights
and last good PSNR, the backtrack counts, the EMA output, the per-step histories (psnr_gt, gap, ES-WMV variance)
with the variance window, the best output, the log rows and snapshots, the stop rule and dead check, and the
reg-noise generators' states. The input, the observation and the image are functions of the config and seeds and
are rebuilt. Loading them back and running steps s+1, ... computes what the uninterrupted fit computes, number for
number, on the same device and torch thread count (``tests/test_resume.py`` checks it); a save made on another
thread count, device, torch version or config is not used (a warning; the fit starts over). One exception: a save
of the same fit under a lower cap (stop rule "peak"), which a fit that ran to its cap keeps at its last log step
before the cap (``resume.KEPT``): the fit under the higher cap goes on from it, as it would have computed those
steps itself (its tables equal a fresh fit's; only the CLI's five snapshot images keep the lower cap's schedule).
"""

from __future__ import annotations

import dataclasses
import warnings

import torch

VERSION = 1


def name(seeds) -> str:
    """The file a seed batch saves under (each seed group of a threaded fit has its own)."""
    return "dip-seeds-" + "-".join(str(int(s)) for s in seeds)


def _identity(cfg, device: torch.device) -> dict:
    return dict(version=VERSION, config=dataclasses.asdict(cfg), device=device.type,
                threads=torch.get_num_threads(), torch=torch.__version__)


def capture(cfg, device, step: int, loop_seconds: float, spent: float, s) -> dict:
    """The state to save after log step ``step``; ``s``: the loop's objects (a namespace: net, opt, guard,
    backtracks, ema, hist_psnr_gt, hist_gap, hist_var, best_out, best_psnr, es_var, log, snapshots, rule, dead,
    noise_gens)."""
    guard = None if s.guard is None else dict(saved=[[t.detach().cpu().clone() for t in g] for g in s.guard.saved],
                                              last_good=s.guard.last_good.cpu(), bad=s.guard.bad.cpu(),
                                              bad_rows=list(s.guard.bad_rows))
    es = None if s.es_var is None else dict(t=s.es_var.t, buf=s.es_var.buf.cpu(), sum=s.es_var.sum.cpu(),
                                            sq=s.es_var.sq.cpu())
    return dict(
        **_identity(cfg, device), step=int(step), loop_seconds=float(loop_seconds), spent=float(spent),
        leaves=[t.detach().cpu().clone() for t in s.net.leaves],
        buffers={n: t.cpu().clone() for n, t in s.net.buffers.items()},
        opt=s.opt.state_dict(), guard=guard, backtracks=s.backtracks.cpu(), ema=s.ema.cpu(),
        hist_psnr_gt=s.hist_psnr_gt.cpu(), hist_gap=s.hist_gap.cpu(), hist_var=s.hist_var.cpu(),
        best_out=s.best_out.cpu(), best_psnr=s.best_psnr.cpu(), es_var=es, rows=list(s.log.rows),
        snapshots=dict(s.snapshots), rule=s.rule, dead=s.dead, noise=[g.get_state() for g in s.noise_gens],
    )


def higher_cap(saved: dict, now: dict) -> bool:
    """Whether config ``now`` is config ``saved`` under a higher cap (``iters``), all else equal, stop rule "peak":
    then the saved fit's states below its cap's last step are this fit's too (``extend.py`` says why)."""
    differ = {k for k in set(saved) | set(now) if saved.get(k) != now.get(k)}
    return differ == {"iters"} and now["iters"] > saved["iters"] and now.get("stop") == "peak"


def usable(state: dict | None, cfg, device) -> bool:
    """Whether ``state`` was saved by this very fit (config, device, thread count, torch version), or by the same
    fit under a lower cap (:func:`higher_cap`), and a step of it is still to come; warns when a save is there but
    not usable."""
    if state is None:
        return False
    want = _identity(cfg, device)
    if isinstance(state.get("config"), dict) and higher_cap(state["config"], want["config"]):
        want["config"] = state["config"]
    differ = [k for k in want if state.get(k) != want[k]]
    if differ:
        warnings.warn(f"a saved state of this DIP fit differs in {', '.join(differ)}; the fit starts over",
                      stacklevel=3)
        return False
    return int(state["step"]) < cfg.iters - 1


@torch.no_grad()
def restore(state: dict, s, device: torch.device) -> None:
    """Put ``state`` back into the loop's objects ``s`` (built fresh for the same config), in place."""
    for t, v in zip(s.net.leaves, state["leaves"], strict=True):
        t.copy_(v)
    for n, t in s.net.buffers.items():
        t.copy_(state["buffers"][n])
    s.opt.load_state_dict(state["opt"])
    if s.guard is not None:
        for group, saved in zip(s.guard.saved, state["guard"]["saved"], strict=True):
            for t, v in zip(group, saved, strict=True):
                t.copy_(v)
        s.guard.last_good = state["guard"]["last_good"].to(device)
        s.guard.bad = state["guard"]["bad"].to(device)
        s.guard.bad_rows = list(state["guard"]["bad_rows"])
    if s.es_var is not None:
        es = state["es_var"]
        s.es_var.t = es["t"]
        s.es_var.buf.copy_(es["buf"])
        s.es_var.sum.copy_(es["sum"])
        s.es_var.sq.copy_(es["sq"])
    for key in ("backtracks", "best_out", "best_psnr"):
        getattr(s, key).copy_(state[key])
    for key in ("hist_psnr_gt", "hist_gap", "hist_var"):  # (cap, K): a save under a lower cap fills the first rows
        getattr(s, key)[: len(state[key])].copy_(state[key])
    s.ema = state["ema"].to(device)
    s.log.rows = list(state["rows"])
    s.snapshots = dict(state["snapshots"])
    s.rule, s.dead = state["rule"], state["dead"]
    for g, st in zip(s.noise_gens, state["noise"], strict=True):
        g.set_state(st)
