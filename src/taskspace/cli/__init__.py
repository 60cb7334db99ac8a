"""The ``taskspace`` command line. Every command has ``--help``; models load only when a command runs."""

from __future__ import annotations

import sys
from typing import Sequence

from .. import __version__
from ..errors import TaskspaceError
from . import analysis, export, subspace, tune
from .common import Parser, parse_options
from .configfile import apply_config

__all__ = ["build_parser", "main", "parse_options"]


def build_parser() -> Parser:
    p = Parser(prog="taskspace",
               description="Delta-tuning methods as flat vectors and the low-dimensional task subspaces they share.")
    p.add_argument("--version", action="version", version=f"taskspace {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tune.add_commands(sub)
    export.add_commands(sub)
    subspace.add_commands(sub)
    analysis.add_commands(sub)
    for command in sub.choices.values():  # read by apply_config before parsing; listed here for --help
        command.add_argument("--config", metavar="FILE",
                             help="YAML or JSON file of this command's options (a run's config.json repeats the "
                                  "run); options given here override it")
        command.add_argument("--set", action="append", metavar="KEY=VALUE",
                             help="override one value of --config (dotted keys reach into sections: train.lr=0.01)")
    return p


def _record_defaults(command: str) -> dict:
    """Defaults of the settings a record holds that no option sets (see :mod:`taskspace.cli.configfile`)."""
    if command == "tune":
        return {"test_sample_seed": 0, "zero_shot": True}
    if command == "subspace-tune":
        return {"test_sample_seed": 0}
    if command == "bank":
        return {"zero_shot": False}
    return {}


#: Commands that train one thing, data-parallel when launched on several processes (torchrun); ``bank`` shares
#: its entries out instead.
DATA_PARALLEL = ("tune", "multitask", "fit-subspace", "subspace-tune")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = apply_config(parser, argv, _record_defaults)
    except TaskspaceError as e:
        command = next((a for a in argv if not a.startswith("-")), "")
        print(f"taskspace {command}: error: {e}".replace("taskspace : ", "taskspace: "), file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        if args.command in DATA_PARALLEL:
            from ..parallel import data_parallel

            with data_parallel(args):
                return args.func(args)
        return args.func(args)
    except TaskspaceError as e:
        print(f"taskspace {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
