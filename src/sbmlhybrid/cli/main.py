"""Entry point of the `sbmlhybrid` command.

Each capability adds its sub-command from its own module in this package; a
module exposes ``register(subparsers)`` that adds a parser whose ``func``
default is a callable ``(args) -> int``. Exit codes: 0 success, 1 a run that
failed (integration or optimisation failure), 2 invalid input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from sbmlhybrid.errors import InputError, SbmlHybridError

# Modules of this package that contribute sub-commands, in help order.
_COMMAND_MODULES = ("core", "analysis", "media")

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sbmlhybrid",
        description="Compile SBML/PEtab models with AMICI, fit them with pyPESTO, "
        "augment them with PyTorch.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"sbmlhybrid.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"sbmlhybrid.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")  # the CLI only writes files: no display needed, none opened
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INPUT
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except FileNotFoundError as err:
        print(f"error: file not found: {err.filename or err}", file=sys.stderr)
        return EXIT_INPUT
    except SbmlHybridError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
