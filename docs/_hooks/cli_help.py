"""MkDocs hook: the command line's ``--help`` texts, taken from the parser at build time.

A line ``<!-- bayesda-help: data info -->`` in a page becomes a code block with the output
of ``bayesda data info --help``, so the command-line guide never drifts from the parser.
Building the parser imports no JAX (``bayesda.cli.main``), so this costs well under a second.
"""

from __future__ import annotations

import argparse
import logging
import os
import re

log = logging.getLogger("mkdocs.hooks.cli_help")
_MARK = re.compile(r"^<!-- bayesda-help:(.*?)-->$", re.M)


def _help(words: list[str]) -> str:
    from bayesda.cli.main import build_parser

    parser = build_parser()
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            raise KeyError(" ".join(words))
        parser = subs[0].choices[word]
    return parser.format_help()


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "bayesda-help:" not in markdown:
        return markdown
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width: fix it

    def block(match: re.Match) -> str:
        words = match.group(1).split()
        try:
            text = _help(words)
        except KeyError as err:
            log.warning("%s: no subcommand %r in bayesda's parser", page.file.src_path, str(err))
            return match.group(0)
        return f"```text\n{text.rstrip()}\n```"

    return _MARK.sub(block, markdown)
