"""The generative probe: Deep Image Prior (Ulyanov, Vedaldi, Lempitsky 2018) for any registered generator,
several seeds at once. One module per concern, in the order a run goes through them:

- ``config``: the named settings (``dip``, ``study``), :class:`DIPConfig` and its checks, :class:`DIPResult`;
- ``prepare``: the image (resized, cropped to the architecture's multiple; a mask file with it), the task's
  observation of every seed, the fixed input z and the nets, each from its own random stream (``seeding.py``);
- ``engine``: the seed batch (:class:`SeedBatch`), the divergence guard (:class:`Guard`), seed batching and
  seed groups on threads;
- ``loop``: :func:`run_dip`, the loop itself, readable top to bottom, and what a log step records;
- ``records``: the per-seed summary and the run directory (unique to its config) written and read back.
"""

from biasprobe.dip.config import SETTINGS, DIPConfig, DIPResult
from biasprobe.dip.engine import Guard, SeedBatch, auto_batching, seed_groups
from biasprobe.dip.loop import run_dip
from biasprobe.dip.prepare import build_nets, make_input, observe, prepare_image
from biasprobe.dip.records import check_new, load_run, run_dir, save_result

__all__ = ["SETTINGS", "DIPConfig", "DIPResult", "Guard", "SeedBatch", "auto_batching", "seed_groups", "run_dip",
           "build_nets", "make_input", "observe", "prepare_image", "check_new", "load_run", "run_dir",
           "save_result"]
