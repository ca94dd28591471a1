"""A stored DIP fit under a higher cap: when it is the same fit, and its tables then (``DIPProbe.extend``).

With ``stop="peak"`` a fit runs until its stop rule ends it, ``iters`` being the cap. Nothing in the loop depends on
the cap before the stop: Adam's lr is constant, the random streams are drawn step by step, the log steps below
``iters - 1`` are the multiples of ``log_every`` whatever the cap, and the rule is read only at those. So a stored
fit that its rule ended at step s (s below its cap's last step) is exactly the fit a config with a higher cap
(anything else equal) makes: it stops at s too. A fit that ran to its cap is not: under a higher cap it would go on.

A dead check (``dead_after``) in the new config is met by the stored fit when it stopped before the check, or when
its best logged psnr_obs up to the check's log step clears the constant-colour image's by ``dead_db`` (the loop
reads every step's psnr_obs, whose best is at least the logged best, so such a fit is alive there too). A fit that
does not clear it logged is computed again.
"""

from __future__ import annotations

import json
import math

# the fields a higher budget may change; everything else must be equal (reuse.extend_key)
BUDGET_FIELDS = ("iters", "dead_after", "dead_db")
ROUNDING_DB = 1e-3  # a logged psnr_obs this close to the dead bar is not taken as alive: the fit is computed


def extend(donor, donor_rid: str, new_fields: dict):
    """(tables, raw, how) for the run ``new_fields`` asks, taken from the donor's run ``donor_rid``, or None when the
    donor's fit is not that run. ``tables``: the summary with the new cap; ``raw``: the donor's other tables as
    parquet bytes; ``how``: in words."""
    from biasprobe.probes.dip.config import DIPConfig

    old_fields = donor.config(donor_rid)["config"]
    old, new = DIPConfig(**old_fields).resolved(), DIPConfig(**new_fields).resolved()
    if old.stop != "peak" or new.stop != "peak" or new.iters <= old.iters:
        return None
    if old.dead_after and (old.dead_after, old.dead_db) != (new.dead_after, new.dead_db):
        return None
    summary = donor.load("summary", [donor_rid]).drop(columns="run_id")
    if not len(summary):
        return None
    steps_run = int(summary.steps_run.max())
    if steps_run >= old.iters:  # ran to its cap: a higher cap goes on
        return None
    stop = steps_run - 1
    how = f"stopped by its rule at step {stop} of cap {old.iters}: the same fit under cap {new.iters}"
    if new.dead_after and not old.dead_after:
        check = _check_step(new)
        if check is not None and stop >= check:
            curves = donor.load("curves", [donor_rid])
            obs = curves[(curves.metric == "psnr_obs") & (curves.step <= check)].groupby("seed").value.max()
            const = const_psnr(new)
            # clearly alive only: the loop reads psnr_gt - gap, the log psnr_obs itself (equal up to rounding)
            if any(not (obs.get(s, -math.inf) >= const[k] + new.dead_db + ROUNDING_DB)
                   for k, s in enumerate(new.seeds)):
                return None
            how += f"; alive at the dead check (step {check})"
    summary["iters"] = new.iters
    if "dead_stop" not in summary:
        summary["dead_stop"] = False
    files = {}
    for name in donor.tables(donor_rid):
        if name != "summary":
            files[name] = (donor.runs_dir / donor_rid / f"{name}.parquet").read_bytes()
    return {"summary": summary}, files, how


def _check_step(cfg) -> int | None:
    """The log step at which a run of ``cfg`` makes its dead check (None: it never does before its cap)."""
    first = cfg.dead_after - 1
    step = -(-first // cfg.log_every) * cfg.log_every  # the first multiple of log_every at or after it
    return step if step < cfg.iters - 1 else None


def const_psnr(cfg) -> list[float]:
    """Per seed, the psnr_obs of the best constant-colour image for ``cfg``'s observation (as the loop's check)."""
    from biasprobe.probes.dip.loop import DeadCheck
    from biasprobe.probes.dip.prepare import observe, prepare_image

    clean, task_params = prepare_image(cfg)
    obs = observe(cfg, clean, task_params)
    return [float(v) for v in DeadCheck(cfg, obs).const_psnr]


def key(fields: dict) -> str:
    """The config's canonical JSON without the budget fields: what a stored fit must share to be extended."""
    return json.dumps({k: v for k, v in fields.items() if k not in BUDGET_FIELDS}, sort_keys=True,
                      separators=(",", ":"))

