"""The presets shipped with biasprobe, as package data, one system for both kinds (plain JSON: copy one, edit it,
and give the copy's path as the preset):

- study presets, ``NAME.json`` for each name in :func:`names` (``biasprobe study --preset NAME``);
- calibration presets, ``calibration/lr-NAME.json`` for each name in :func:`calibration_names`: the learning-rate
  grid, seeds and base run of each probe (``biasprobe calibrate --preset lr-NAME``, a study preset's
  ``calibration.preset``). Their names start with ``lr-`` so that none is also a study preset's.

They are found through the installed package (``importlib.resources``), not through a checkout's folders.
"""

from __future__ import annotations

from importlib.resources import files

from biasprobe.errors import BiasprobeError

PRESET_DIR = files(__name__)  # a pathlib.Path where the package is installed as files (pip's way)


def names() -> list[str]:
    """The packaged presets' names, sorted."""
    return sorted(p.name.removesuffix(".json") for p in PRESET_DIR.iterdir() if p.name.endswith(".json"))


def preset_path(name: str):
    """The packaged preset ``NAME.json``; a one-line BiasprobeError naming the known ones when there is none."""
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise BiasprobeError(f"no preset {name!r}: give a JSON file or one of {', '.join(names())}")
    return path


CALIBRATION_DIR = PRESET_DIR / "calibration"
RENAMED = {"smoke": "lr-smoke", "quick": "lr-quick", "paper": "lr-paper", "zoo": "lr-zoo"}  # calibration presets' former names


def calibration_names() -> list[str]:
    """The packaged calibration presets' names, sorted."""
    return sorted(p.name.removesuffix(".json") for p in CALIBRATION_DIR.iterdir() if p.name.endswith(".json"))


def calibration(name: str) -> dict:
    """Calibration preset ``name`` (a packaged name or a JSON file's path): {probe: {grid, seeds, base, ...}}; a
    one-line BiasprobeError for an unknown one, naming the new spelling of a former name."""
    import json
    from pathlib import Path

    if name in RENAMED:
        raise BiasprobeError(f"calibration preset {name!r} is now called {RENAMED[name]!r}")
    path = Path(name) if name.endswith(".json") else CALIBRATION_DIR / f"{name}.json"
    if not path.is_file():
        raise BiasprobeError(f"unknown calibration preset {name!r}: choose one of {', '.join(calibration_names())} "
                             f"or give a JSON file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BiasprobeError(f"calibration preset {path}: not valid JSON ({exc})") from exc
    data.pop("description", None)
    return data

