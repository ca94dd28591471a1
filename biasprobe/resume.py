"""Runs that go on after a kill: a run's loop saves its whole state now and then, and a new attempt at the same run
starts from the last save instead of step 0.

The sweep (``studies.sweep``) opens a :func:`scope` around each run it computes, naming the run's own folder
``<store>/partial/<run_id>/``; a loop that can resume asks :func:`current` for it (None outside a sweep: a plain
CLI fit saves nothing). Within the folder each loop has its own file, named by the caller (a DIP fit: its seeds).
The sweep removes the folder once the run is stored or recorded as failed; a killed sweep leaves it, and the next
attempt resumes. A loop saves at most every ``every_s`` seconds (``EVERY_S``; ``BIASPROBE_CHECKPOINT_S`` overrides,
0 turns the timed saves off), each save atomic (a temporary file, then a rename), so a kill mid-save leaves the
previous one.

What a loop saves is its business; what it must guarantee is that a resumed run equals the uninterrupted one (the
DIP loop's test checks that number for number). The seconds a killed attempt spent up to its last save are carried
into the run's stored time (:meth:`Checkpoint.carried`), so the study's cost counts them; time after the last save
is lost, as before. These files are not committed (``.gitignore``): a fresh clone restarts in-flight runs from
step 0.

A loop may also ask to :meth:`Checkpoint.keep` a save beyond its run: the sweep then moves it to
``<store>/at_cap/<run_id>/`` when the run is stored. A DIP fit that runs to its cap keeps its state at the last log
step before the cap, so that a plan with a higher cap can go on from there (``studies.reuse``) instead of from step 0.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import time
import warnings
from pathlib import Path

from biasprobe.errors import BiasprobeError

EVERY_S = 300.0  # seconds between saves: a killed run loses at most this much (plus a save's own time)
FOLDER = "partial"
KEPT = "at_cap"  # saves a loop asked to keep after its run is stored (a DIP fit's last state before its cap)

_CURRENT: contextvars.ContextVar["Checkpoint | None"] = contextvars.ContextVar("biasprobe_checkpoint", default=None)


def every_s() -> float:
    """Seconds between saves: ``BIASPROBE_CHECKPOINT_S`` if set (0: no timed saves; a state kept at a cap is still
    saved), else ``EVERY_S``. A value that is not a number >= 0 is a one-line BiasprobeError."""
    raw = os.environ.get("BIASPROBE_CHECKPOINT_S")
    if raw is None or raw == "":
        return EVERY_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise BiasprobeError(f"BIASPROBE_CHECKPOINT_S must be a number of seconds >= 0 (0: no timed saves), got "
                             f"{raw!r}: set it to one, or unset it for the default {EVERY_S:g}")
    return value


class Checkpoint:
    """The save folder of one run, and the seconds its loops carried over from killed attempts."""

    def __init__(self, folder: str | Path, every: float | None = None):
        self.folder = Path(folder)
        self.every = every_s() if every is None else float(every)
        self._carried: dict[str, float] = {}
        self.kept: set[str] = set()

    @property
    def carried(self) -> float:
        """Seconds of killed attempts carried into this run: the longest of its loops' (they run side by side)."""
        return max(self._carried.values(), default=0.0)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.pt"

    def load(self, name: str) -> dict | None:
        """The state saved under ``name``, or None (none saved, or unreadable: then a warning, and the run starts
        over)."""
        import torch

        path = self.path(name)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # a damaged file: start over rather than fail the run
            warnings.warn(f"could not read the checkpoint {path} ({type(e).__name__}: {e}); the run starts over",
                          stacklevel=2)
            return None

    def save(self, name: str, state: dict) -> None:
        """Write ``state`` under ``name`` atomically."""
        import torch

        path = self.path(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def carry(self, name: str, seconds: float) -> None:
        """Loop ``name`` resumed from a save made ``seconds`` into the run (killed attempts included)."""
        self._carried[name] = float(seconds)

    def keep(self, name: str) -> None:
        """Keep save ``name`` after the run is stored (:meth:`discard` moves it aside instead of removing it)."""
        self.kept.add(name)

    def discard(self, keep_to: str | Path | None = None) -> None:
        """Remove the run's saves; those marked :meth:`keep` go to the folder ``keep_to`` (if given) first."""
        if keep_to is not None:
            for name in sorted(self.kept):
                if self.path(name).is_file():
                    Path(keep_to).mkdir(parents=True, exist_ok=True)
                    os.replace(self.path(name), Path(keep_to) / self.path(name).name)
        shutil.rmtree(self.folder, ignore_errors=True)


class Timer:
    """When a loop should save: never when saving is off or there is no checkpoint; else once ``every`` seconds
    have passed since the last save (or the loop's start)."""

    def __init__(self, checkpoint: Checkpoint | None):
        self.checkpoint = checkpoint
        self.last = time.monotonic()

    def due(self) -> bool:
        c = self.checkpoint
        return c is not None and c.every > 0 and time.monotonic() - self.last >= c.every

    def saved(self) -> None:
        self.last = time.monotonic()


def current() -> Checkpoint | None:
    """The checkpoint of the run being computed in this context (None outside a sweep's run)."""
    return _CURRENT.get()


@contextlib.contextmanager
def scope(folder: str | Path, every: float | None = None):
    """Run the body with ``Checkpoint(folder)`` as :func:`current`; yields it."""
    checkpoint = Checkpoint(folder, every)
    token = _CURRENT.set(checkpoint)
    try:
        yield checkpoint
    finally:
        _CURRENT.reset(token)
