"""Studies: the runner every study shares, and one module per study, so adding a study is adding a file here.

Shared by every study:

* ``runner``: a preset (plain JSON) -> each probe's grid of runs -> resumable sweeps -> tidy tables;
* ``sweep``, ``executors``: the results store (one folder per run, named by its config's hash) and where runs
  execute (in process, a process pool, Slurm);
* ``calibrate``: per-architecture learning-rate calibration, for each probe;
* ``presets/``: the shipped presets (``NAME.json``; calibration grids under ``presets/calibration/``).

A study module (``biasprobe/studies/NAME.py``; ``biasprobe study NAME`` runs it) defines:

* a docstring whose first sentence says what it does (``biasprobe study --help`` lists it, without importing);
* ``prepare(preset) -> StudyPreset``: the runs it needs from a preset (its grid: which archs each probe runs);
* ``analyse(tables, preset) -> dict``: its claims and analysis of the runner's tidy tables (``runner.run_study``),
  through the shared decision layer (``biasprobe.analysis.verdicts``) and statistics (``biasprobe.analysis.stats``);
* ``write_report(out_dir, tables, analysis, meta) -> Path``: its report (sections from ``biasprobe.analysis.report``).

A module of this package is a study when it defines those three functions (read from its source, not imported).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from biasprobe.errors import BiasprobeError


STUDY_FUNCTIONS = {"prepare", "analyse", "write_report"}


def names() -> list[str]:
    """The studies: the modules of this package that define ``prepare``, ``analyse`` and ``write_report``."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.ispkg and not m.name.startswith("_")
                  and STUDY_FUNCTIONS <= _functions(m.name))


def _functions(name: str) -> set[str]:
    """The top-level function names of module ``name``'s source."""
    tree = ast.parse((Path(__file__).parent / f"{name}.py").read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def get(name: str) -> ModuleType:
    """The study module ``name``; a one-line error naming the studies for an unknown one."""
    if name not in names():
        raise BiasprobeError(f"no study {name!r}: one of {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name}")


def describe(name: str) -> str:
    """The first sentence of study ``name``'s docstring, read from its source (no import: listing is cheap)."""
    doc = ast.get_docstring(ast.parse((Path(__file__).parent / f"{name}.py").read_text())) or ""
    return " ".join(doc.split()).split(". ")[0].rstrip(".")
