"""The ``biasprobe`` command: one subcommand per module in ``biasprobe/cli/commands``.

Errors a user can cause (BiasprobeError) print one line on stderr and exit with code 2; a command some of whose
work failed (runs of a study) prints one line and exits with code 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from biasprobe.cli.commands import CommandFailed
from biasprobe.errors import BiasprobeError

# subcommand name -> module in biasprobe.cli.commands with add_parser(subparsers) and run(args)
COMMANDS = ("archs", "dip", "spectrum", "classify", "calibrate", "study")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biasprobe", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"biasprobe.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"biasprobe.cli.commands.{name}":
                continue  # subcommand not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except BiasprobeError as exc:
        print(f"biasprobe: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"biasprobe: failed: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("biasprobe: interrupted", file=sys.stderr)
        return 130
    return 0

