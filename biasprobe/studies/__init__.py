"""Studies: one module per study, so adding a study is adding a file here.

A study module (``biasprobe/studies/NAME.py``; ``biasprobe study NAME`` runs it) defines:

* a docstring whose first sentence says what it does (``biasprobe study --help`` lists it, without importing);
* ``prepare(preset) -> StudyPreset``: the runs it needs from a preset (its grid: which archs each probe runs);
* ``analyse(tables, preset) -> dict``: its claims and analysis of the runner's tidy tables (``study.run_study``),
  through the shared decision layer (``biasprobe.verdicts``) and statistics (``biasprobe.stats``);
* ``write_report(out_dir, tables, analysis, meta) -> Path``: its report (sections from ``biasprobe.report``).

The runner (``biasprobe.study``: presets, grids, resumable sweeps) and the presets (``biasprobe/presets``) are
shared by every study.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from biasprobe.errors import BiasprobeError


def names() -> list[str]:
    """The studies, one per module of this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str) -> ModuleType:
    """The study module ``name``; a one-line error naming the studies for an unknown one."""
    if name not in names():
        raise BiasprobeError(f"no study {name!r}: one of {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name}")


def describe(name: str) -> str:
    """The first sentence of study ``name``'s docstring, read from its source (no import: listing is cheap)."""
    doc = ast.get_docstring(ast.parse((Path(__file__).parent / f"{name}.py").read_text())) or ""
    return " ".join(doc.split()).split(". ")[0].rstrip(".")
