"""The study presets shipped with biasprobe, as package data: ``NAME.json`` for each name in :func:`names`
(plain JSON: copy one, edit it, and give the copy's path as the preset).

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
