"""Paths, atomic writes, recorded commands and JSON ledgers of the analysis scripts."""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[2]
"""The repository root (the scripts run from there as ``python -m analysis.<study>.<script>``)."""

ANALYSIS = ROOT / "analysis"
SHIPPED_MODEL = ROOT / "models" / "ncep-air"


def results_dir(study: str) -> pathlib.Path:
    """``analysis/<study>/results``: where a study keeps its current results and figures."""
    return ANALYSIS / study / "results"


def command(module: str, argv: Sequence[str] | None = None) -> str:
    """The command line that reruns a script, as recorded in its result files.

    Args:
      module: the script's module name (its ``__spec__.name``, e.g.
        ``"analysis.skill.benchmark_skill"``).
      argv: its arguments (default ``sys.argv[1:]``).

    Returns:
      ``"python -m <module> <args>"`` without trailing spaces.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python", "-m", module, *args]).strip()


def atomic_write(path: pathlib.Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it into place.

    The folder is created if needed; on any error the temporary file is removed and
    ``path`` is left as it was.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(pathlib.Path(path), lambda tmp: pathlib.Path(tmp).write_text(text))


def write_json(path: pathlib.Path, obj, indent: int = 1) -> None:
    """Write ``obj`` as JSON (with a final newline) to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def append_rows(path: pathlib.Path, rows: list[dict]) -> None:
    """Append rows to a JSON list (a ledger such as ``throughput.json``) atomically."""
    path = pathlib.Path(path)
    old = json.loads(path.read_text()) if path.exists() else []
    write_text(path, json.dumps(old + rows, indent=2) + "\n")
