"""CLI subcommands, one module per concern (see bayesda.cli)."""

__all__ = []
