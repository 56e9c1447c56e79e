"""Import a script of ``analysis/`` as a module (for tests of its pure functions)."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

ANALYSIS = pathlib.Path(__file__).resolve().parents[1] / "analysis"


def analysis_module(name: str):
    """``analysis/<name>.py`` as a module; ``analysis/`` goes on ``sys.path`` for its imports."""
    if str(ANALYSIS) not in sys.path:
        sys.path.insert(0, str(ANALYSIS))
    spec = importlib.util.spec_from_file_location(name, ANALYSIS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
