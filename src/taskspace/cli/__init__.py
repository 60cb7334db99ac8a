"""The ``taskspace`` command line. Every command has ``--help``; models load only when a command runs.

A command ends on one line, never a traceback, for what is not a bug: bad input and files that cannot be written
or read (``taskspace COMMAND: error: ...``, exit status 2), and Ctrl-C (what was saved, exit status 130, the
shell's code for SIGINT; a command that resumes says so when it is run again)."""

from __future__ import annotations

import sys
from typing import Sequence

from .. import __version__
from ..errors import Interrupted, TaskspaceError
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
#: Commands whose work an interruption keeps: running the same command again resumes it.
RESUMABLE = (*DATA_PARALLEL, "bank")


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
    except OSError as e:  # a file that cannot be read or written, named by the operating system's message
        print(f"taskspace {args.command}: error: {_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"taskspace {args.command}: {_interrupted(args, e)}", file=sys.stderr)
        return 130


def _os_error(e: OSError) -> str:
    """An OSError on one line: the path, then the reason."""
    if e.filename is None:
        return " ".join(str(e).split())
    where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
    return f"{where}: {e.strerror or e}"


def _interrupted(args, e: KeyboardInterrupt) -> str:
    """What a command interrupted by Ctrl-C kept (what training saved, when it was training), in one line."""
    if args.command not in RESUMABLE:
        return "interrupted"
    if isinstance(e, Interrupted):
        saved = e.saved
    else:
        saved = f"what it finished is kept in {args.out}"
    return f"interrupted; {saved}; run the same command to resume"


if __name__ == "__main__":
    sys.exit(main())
