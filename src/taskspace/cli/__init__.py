"""The ``taskspace`` command line. Every command has ``--help``; models load only when a command runs."""

from __future__ import annotations

import sys
from typing import Sequence

from ..errors import TaskspaceError
from . import subspace, tune
from .common import Parser, parse_options

__all__ = ["build_parser", "main", "parse_options"]


def build_parser() -> Parser:
    p = Parser(prog="taskspace",
               description="Delta-tuning methods as flat vectors and the low-dimensional task subspaces they share.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tune.add_commands(sub)
    subspace.add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TaskspaceError as e:
        print(f"taskspace {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
