"""The ``bayesda`` command line.

Each concern registers its own subcommands from its own module: a module listed in
``_COMMAND_MODULES`` defines ``register(subparsers)``, which adds parsers whose
``func(args) -> int`` runs the command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["build_parser", "main"]

_COMMAND_MODULES = [
    "bayesda.commands.data",
    "bayesda.commands.assim",
    "bayesda.commands.reanalyse",
    "bayesda.commands.train",
]


def build_parser() -> argparse.ArgumentParser:
    from bayesda import __version__

    parser = argparse.ArgumentParser(
        prog="bayesda",
        description="Bayesian data assimilation with a learned generative (VAE) prior.",
    )
    parser.add_argument("--version", action="version", version=f"bayesda {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from bayesda import enable_compilation_cache, set_host_device_count

    set_host_device_count()  # one CPU device per NUTS chain; before any JAX computation
    enable_compilation_cache()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"bayesda {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
