"""CLI subcommands, one module per concern (see bayesda.cli)."""
