"""The ``flowff`` command: one module per subcommand, each exposing ``register(subparsers)``.

A subcommand module defines ``register(subparsers: argparse._SubParsersAction) -> None`` that adds
its parser and sets ``func=<callable(args) -> int>`` as the parser's default.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from flowff import __version__

#: Subcommand modules under ``flowff.cli``, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "data", "resample", "train", "evaluate", "md", "drift", "equivariant",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="flowff",
        description="Smooth normalizing flows as molecular force fields for OpenMM.",
    )
    parser.add_argument("--version", action="version", version=f"flowff {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"flowff.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowff`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
