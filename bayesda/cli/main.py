"""The ``bayesda`` command line.

Each concern registers its own subcommands from its own module: a module listed in
``_COMMAND_MODULES`` defines ``register(subparsers)``, which adds parsers whose
``func(args) -> int`` runs the command.

:func:`main` is the one error boundary: every failure a user can cause (a missing,
unreadable, corrupt or wrongly typed file, a full disk, a permission, a bad value) is
printed as one line ``bayesda COMMAND: error: ...`` naming the file and the fix, with exit
code 1 (argparse's own errors: 2; ``diagnose`` on a FAIL verdict: 3; an interrupt: 130).
``-v``/``--verbose`` (anywhere on the line) prints the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

__all__ = ["build_parser", "main"]

_COMMAND_MODULES = [
    "bayesda.cli.data",
    "bayesda.cli.assim",
    "bayesda.cli.reanalyse",
    "bayesda.cli.train",
]


def build_parser() -> argparse.ArgumentParser:
    from bayesda._version import __version__

    parser = argparse.ArgumentParser(
        prog="bayesda",
        description="Bayesian data assimilation with a learned generative (VAE) prior.",
    )
    parser.add_argument("--version", action="version", version=f"bayesda {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _add_verbose(parser, top=True)
    return parser


def _add_verbose(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``-v/--verbose`` on the top parser and every subcommand, so it works anywhere."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show the full traceback of an error",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_verbose(child)


def error_message(err: BaseException) -> str:
    """The one line a user sees for an error (without the ``bayesda CMD: error:`` prefix)."""
    from bayesda.runtime.files import describe_os_error

    if isinstance(err, OSError):
        return describe_os_error(err)
    if isinstance(err, KeyError) and len(err.args) == 1:
        return str(err.args[0])
    if isinstance(err, ValueError | TypeError | RuntimeError):
        return str(err) or type(err).__name__
    return f"{type(err).__name__}: {err} (unexpected; rerun with -v and report the traceback)"


def _subparser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The (sub)parser of the command that ``args`` runs, for its usage line."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if name in (getattr(args, "command", None), getattr(args, "data_command", None),
                            getattr(args, "obs_command", None)):  # fmt: skip
                    return _subparser(child, args)
    return parser


def _check_combinations(parser: argparse.ArgumentParser, args) -> None:
    """Options that parse one by one but contradict each other: a command's ``check(args)``
    raises ValueError, reported like any other bad option (exit 2, before any work)."""
    check = getattr(args, "check", None)
    if check is None:
        return
    try:
        check(args)
    except ValueError as err:
        _subparser(parser, args).error(str(err))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from bayesda.runtime.xla import enable_compilation_cache, set_host_device_count

    set_host_device_count()  # one CPU device per NUTS chain; before any JAX computation
    enable_compilation_cache()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _check_combinations(parser, args)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"bayesda {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the error boundary: one line, the traceback only with -v
        if args.verbose:
            traceback.print_exc()
        line = " ".join(error_message(err).split())
        print(f"bayesda {args.command}: error: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
