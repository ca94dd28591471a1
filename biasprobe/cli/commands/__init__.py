"""CLI subcommands, one module each: ``add_parser(subparsers)`` registers it and sets ``run`` as default.

Building the parser imports every command module, so they import heavy packages (torch, pandas) inside ``run``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


class CommandFailed(Exception):
    """A command ran but some of its work failed (e.g. runs of a study): the CLI prints the message on one line and
    exits 1 (2 is for bad input, :class:`biasprobe.errors.BiasprobeError`)."""


def add_arch_args(p: argparse.ArgumentParser, multiple: bool = False) -> None:
    """``--arch``, ``--arch-module`` (import a user's module that registers more architectures), ``--arch-kw``."""
    p.add_argument("--arch", nargs="+" if multiple else None, required=True,
                   help="registered architecture name(s); hybrids as kc+NAME / NAME+kc (see `biasprobe archs`)")
    add_arch_module_arg(p)
    add_arch_kw_arg(p)


def add_arch_module_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch-module", action="append", default=[], metavar="PATH_OR_MODULE",
                   help="a .py file or module that registers architectures with @register_arch (repeatable)")


def add_arch_kw_arg(p: argparse.ArgumentParser, help: str = "") -> None:
    p.add_argument("--arch-kw", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help=help or "constructor kwargs, values as Python literals (e.g. num_scales=3 depths=[2,2])")


def load_arch_modules(args) -> None:
    from biasprobe.errors import BiasprobeError
    from biasprobe.archs.registry import load_arch_module

    for m in getattr(args, "arch_module", []) or []:
        if Path(m).exists() and (Path(m).suffix != ".py" or not Path(m).is_file()):
            raise BiasprobeError(f"--arch-module {m}: give a .py file or a module name")
        try:
            load_arch_module(m)
        except (SyntaxError, AttributeError, NameError, TypeError, ValueError) as exc:  # the user's module
            raise BiasprobeError(f"--arch-module {m}: importing it failed ({type(exc).__name__}: "
                                 f"{(str(exc).splitlines() or [''])[0]})") from None


def arch_kwargs(args) -> dict:
    """``--arch-kw`` as a dict, checked against each ``--arch`` (unknown names, keywords or values fail in one
    line before any work starts)."""
    from biasprobe.archs.factory import check_arch_kwargs

    kw = parse_kv(args.arch_kw, "--arch-kw")
    for arch in args.arch if isinstance(args.arch, list) else [args.arch]:
        check_arch_kwargs(arch, **kw)
    return kw


def out_dir(path, flag: str = "--out") -> Path:
    """``path`` as a folder to write into (created later if missing); a one-line BiasprobeError if it, or a folder
    above it, is an existing file, or if it cannot be written (checked now, before any compute)."""
    from biasprobe.preflight import check_writable

    return check_writable(path, flag)


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")


def parse_kv(items: list[str], flag: str) -> dict:
    """KEY=VALUE strings -> dict; values parsed as Python literals when they are (numbers, lists, True), else str."""
    from biasprobe.errors import BiasprobeError
    from biasprobe.literal import parse_literal

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BiasprobeError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key] = parse_literal(value)
    return out


def number_or_calibrated(text: str):
    """argparse type: a float, or the word ``calibrated`` (the arch's calibrated value, as in presets). The former
    word ``auto`` fails in one line naming it."""
    if text == "calibrated":
        return "calibrated"
    if text == "auto":
        raise argparse.ArgumentTypeError("'auto' is now 'calibrated' (one word for a calibrated rate, as in presets)")
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or calibrated, got {text!r}") from None
