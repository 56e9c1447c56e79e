"""The package's public surface: no side effects on import, opt-in JAX set-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _run(code: str, env: dict | None = None) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
    full.update(env or {})
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_command_line_parser_imports_no_jax():
    """``bayesda --help`` (and every argparse error) builds the parser: it must stay light."""
    out = _run(
        "import sys, bayesda.cli.main as cli; cli.build_parser(); "
        "print([m for m in ('jax', 'flax', 'numpyro', 'arviz', 'matplotlib', 'xarray') "
        "if m in sys.modules])"
    )
    assert out.strip() == "[]"


def test_import_has_no_side_effects():
    out = _run(
        "import json, os, sys; before = dict(os.environ); import bayesda; "
        "print(json.dumps({'env': dict(os.environ) == before, 'jax': 'jax' in sys.modules}))"
    )
    assert json.loads(out) == {"env": True, "jax": False}


def test_set_host_device_count_and_cache(tmp_path):
    out = _run(
        "import json, bayesda; bayesda.set_host_device_count(3); "
        f"p = bayesda.enable_compilation_cache({str(tmp_path)!r}); import jax; "
        "print(json.dumps([jax.local_device_count('cpu'), str(p), "
        "jax.config.jax_compilation_cache_dir]))"
    )
    assert json.loads(out) == [3, str(tmp_path), str(tmp_path)]


def test_user_xla_flags_win():
    out = _run(
        "import bayesda; print(bayesda.set_host_device_count(5)); import jax; "
        "print(jax.local_device_count('cpu'))",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert out.split() == ["None", "2"]


def test_cache_can_be_switched_off():
    out = _run(
        "import bayesda; print(bayesda.enable_compilation_cache())",
        env={"BAYESDA_JAX_CACHE": "off"},
    )
    assert out.strip() == "None"


def test_late_device_count_warns():
    out = _run(
        "import warnings, jax, jax.numpy as jnp, bayesda; jnp.zeros(1).block_until_ready()\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    bayesda.set_host_device_count(jax.local_device_count('cpu') + 1)\n"
        "print(w[0].category.__name__, 'before the first JAX computation' in str(w[0].message))"
    )
    assert out.split() == ["RuntimeWarning", "True"]


def test_top_level_names_resolve_and_are_sorted():
    import bayesda

    assert bayesda.__all__ == sorted(bayesda.__all__)
    for name in bayesda.__all__:
        assert getattr(bayesda, name) is not None, name
    from bayesda.inference.assimilate import assimilate

    assert bayesda.assimilate is assimilate
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bayesda.nope  # noqa: B018


def test_every_module_declares_all():
    import pathlib

    import bayesda

    root = pathlib.Path(bayesda.__path__[0])
    for path in root.rglob("*.py"):
        if path.name == "__init__.py" or path.name.startswith("_"):
            continue
        assert "__all__" in path.read_text(), f"{path.relative_to(root)} has no __all__"
