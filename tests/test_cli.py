"""The command line: light start-up, one-line errors (exit 2) for bad --arch-kw and --out, packaged presets."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from biasprobe.cli import main
from biasprobe.errors import BiasprobeError
from biasprobe.studies.presets import preset_path

REPO = Path(__file__).resolve().parent.parent


def test_help_and_archs_import_no_heavy_packages():
    """`biasprobe --help` and `biasprobe archs` answer at once: registry lookups import no model code."""
    code = ("import sys, contextlib, io; from biasprobe.cli import build_parser, main; build_parser(); "
            "out = io.StringIO(); contextlib.redirect_stdout(out).__enter__(); assert main(['archs']) == 0; "
            "from biasprobe.archs.registry import get_arch; assert get_arch('vit+3c').backbone == 'vit'; "
            "heavy = {'torch', 'timm', 'torchmetrics', 'pandas', 'seaborn', 'numpy', 'biasprobe.archs.nets.vit'}; "
            "assert not heavy & set(sys.modules), heavy & set(sys.modules); assert 'vit+3c' in out.getvalue()")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_archs_params_counts_with_arch_kw(capsys):
    assert main(["archs", "skipnet", "--params", "--arch-kw", "num_scales=3", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "gen_params" in out and "multiple" in out and "skipnet  cnn" in out
    assert out.splitlines()[1].split()[4] == "8"  # 2^num_scales


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("biasprobe: error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("command", [["archs", "vit"], ["classify", "--arch", "vit", "--data", "unused"]])
@pytest.mark.parametrize("kw, words", [
    ("nonsense=3", ["'nonsense'", "accepted: patch_size, embed_dim, depth, num_heads, mlp_ratio"]),
    ("embed_dim=abc", ["embed_dim='abc'", "integer", "accepted: patch_size"]),
])
def test_bad_arch_kw_is_a_one_line_error(capsys, command, kw, words):
    err = one_line_error(capsys, command + ["--arch-kw", kw])
    assert all(w in err for w in words), err


@pytest.mark.parametrize("argv", [
    ["classify", "--arch", "skipnet", "--data", "unused"],
    ["calibrate", "--arch", "skipnet", "--probe", "dip", "--preset", "lr-smoke"],
    ["spectrum", "--init", "--arch", "skipnet"],
    ["study", "generative_vs_predictive", "--preset", "smoke"],
])
@pytest.mark.parametrize("below", [False, True])
def test_out_that_is_a_file_is_a_one_line_error(capsys, tmp_path, argv, below):
    file = tmp_path / "taken.txt"
    file.write_text("not a folder")
    err = one_line_error(capsys, argv + ["--out", str(file / "sub" if below else file)])
    assert f"{file} is a file, not a folder" in err


def test_presets_are_package_data(tmp_path):
    """Found through the installed package from any folder, and listed as package data for a non-editable install."""
    code = ("import json; from biasprobe.studies import presets; "
            "[json.loads(presets.preset_path(n).read_text()) for n in presets.names()]; "
            "print(json.dumps({n: str(presets.preset_path(n)) for n in presets.names()}))")
    found = json.loads(subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True,
                                      text=True).stdout)
    assert {"smoke", "preview", "standard", "paper"} <= set(found)
    with pytest.raises(BiasprobeError, match="no preset 'nope': give a JSON file or one of paper, preview, smoke, "
                                             "standard"):
        preset_path("nope")
    package_dir = REPO / "biasprobe" / "studies" / "presets"
    assert all(Path(p) == package_dir / f"{n}.json" for n, p in found.items())
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert all(any(p.relative_to(package_dir).match(g) for g in data["biasprobe.studies.presets"])
               for p in package_dir.rglob("*.json")) and list(package_dir.glob("calibration/lr-*.json"))


def test_study_threads_override(capsys):
    """--threads sets the torch threads of every run (the preset's threads_per_job); below 1 is a one-line error."""
    import argparse

    from biasprobe.cli.commands.study import _apply_overrides
    from biasprobe.studies.runner import load_preset

    args = argparse.Namespace(executor="local", jobs=None, threads=2, device=None, partition=None, sensitivity=False,
                              data=None, data_root=None, download=False)
    preset = _apply_overrides(load_preset("standard"), args)
    assert (preset.executor, preset.threads_per_job) == ("local", 2)
    err = one_line_error(capsys, ["study", "generative_vs_predictive", "--preset", "smoke", "--threads", "0"])
    assert "--threads must be at least 1" in err


def test_study_data_naming_the_default_subset_keeps_the_run_ids(tmp_path):
    """--data pointing at the default CIFAR-10 subset (by any spelling of its path) is the same data, so the runs
    keep the ids a study without --data gives them (a committed store is reused, not recomputed); another folder
    is recorded, as an absolute path."""
    import argparse
    import os

    import pytest

    from biasprobe.cli.commands.study import _apply_overrides
    from biasprobe.probes.classify.cifar import default_data_dir
    from biasprobe.studies.runner import grid, load_preset

    default = default_data_dir()
    if default is None:
        pytest.skip("no default CIFAR-10 subset beside the checkout")

    def configs(data):
        args = argparse.Namespace(executor=None, jobs=None, threads=None, device=None, partition=None,
                                  sensitivity=False, data=data, data_root=None, download=False)
        preset = _apply_overrides(load_preset("standard"), args)
        return [r for r in grid(preset) if r["probe"] == "classify"], preset

    plain, _ = configs(None)
    named, preset = configs(os.path.relpath(default))
    assert preset.classify.data is None and named == plain
    other, preset = configs(str(tmp_path))
    assert preset.classify.data == str(tmp_path.resolve()) and other != plain


@pytest.mark.parametrize("argv, words", [
    (["dip", "--arch", "0c+vit"], ["0c+vit", "1 to 16"]),
    (["dip", "--arch", "vit+999999c"], ["999999", "1 to 16"]),
    (["dip", "--arch", "skipnet", "--seed", "99999999999999999999999"], ["--seed", "2^63-1"]),
    (["dip", "--arch", "skipnet", "--seed", "-1"], ["--seed", "2^63-1"]),
    (["dip", "--arch", "skipnet", "--seeds", "0", str(2**64 - 1)], ["--seeds", "2^63-1"]),
    (["dip", "--arch", "skipnet", "--sigma", "nan"], ["--sigma", "finite"]),
    (["dip", "--arch", "skipnet", "--lr", "inf"], ["--lr", "finite"]),
    (["dip", "--arch", "skipnet", "--task", "inpaint", "--mask", "random", "--drop", "nan"], ["--drop", "finite"]),
    (["dip", "--arch", "skipnet", "--size", "100000"], ["size 100000", "GiB", "more than the"]),
])
def test_resource_guards_and_bad_numbers_are_one_line_errors(capsys, tmp_path, argv, words):
    err = one_line_error(capsys, argv + (["--out", str(tmp_path / "runs")] if argv[0] == "dip" else []))
    assert all(w in err for w in words), err
    assert not (tmp_path / "runs").exists()  # nothing fitted, nothing written


def test_arch_module_that_is_not_python_is_one_line(capsys, tmp_path):
    path = tmp_path / "notpython.txt"
    path.write_text("not python")
    err = one_line_error(capsys, ["archs", "--arch-module", str(path)])
    assert "notpython.txt" in err and ".py" in err


def test_json_is_written_without_bare_nan_and_with_the_umask_mode(tmp_path):
    import math
    import os

    import numpy as np

    from biasprobe.runinfo import write_json

    write_json(tmp_path / "s.json", {"a": math.nan, "b": [np.float32("inf"), 1.5], "c": np.float64(2.0)})
    text = (tmp_path / "s.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": 2.0}
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o666 & ~umask
