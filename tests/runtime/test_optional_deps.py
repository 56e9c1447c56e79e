"""A base install (no extras) runs the command line: dask, zarr and cfgrib only where used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bayesda.runtime.optional import require

# Block the optional packages in a fresh interpreter, as if they were not installed.
_BLOCK = (
    "import sys\n"
    "for m in ('dask', 'dask.array', 'distributed', 'zarr', 'cfgrib'):\n"
    "    sys.modules[m] = None\n"
)


_COMMANDS = [[], ["assimilate"], ["reanalyse"], ["train"], ["data", "info"], ["demo"], ["diagnose"]]


def test_help_without_extras():
    code = _BLOCK + (
        "from bayesda.cli.main import main\n"
        f"for cmd in {_COMMANDS!r}:\n"
        "    try:\n"
        "        main([*cmd, '--help'])\n"
        "    except SystemExit as e:\n"
        "        print('EXIT', cmd, e.code)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    exits = [ln for ln in res.stdout.splitlines() if ln.startswith("EXIT")]
    assert len(exits) == len(_COMMANDS) and all(ln.endswith(" 0") for ln in exits), exits
    assert res.stdout.count("usage: bayesda") == len(_COMMANDS)


def test_missing_extra_names_the_install_command():
    sys.modules.setdefault("bayesda_test_absent", None)  # type: ignore[arg-type]
    with pytest.raises(ImportError, match=r"pip install 'bayesda\[all\]'"):
        require("bayesda_test_absent", "testing")
    code = _BLOCK + (
        "import numpy as np\n"
        "from bayesda.geo.grid import Grid\n"
        "from bayesda.outputs import store\n"
        "try:\n"
        "    store.open_or_create('x.zarr', np.array(['2020-01-01'], 'datetime64[ns]'),\n"
        "                         Grid(lat=np.arange(3.0), lon=np.arange(4.0)))\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'bayesda[zarr]'" in res.stdout, res.stdout + res.stderr
