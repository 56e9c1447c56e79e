"""What the wheel holds: every subpackage of bayesda, and the shipped models as package data.

pyproject.toml lists the packages by name (a ``packages.find`` cannot also map the
repository's ``models/`` onto ``bayesda._models``), so a new subpackage must be added there:
this test says so. .ci/run builds the wheel and loads a model by name from it.
"""

from __future__ import annotations

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed_for_the_wheel():
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bayesda").rglob("__init__.py")
    }
    listed = set(SETUPTOOLS["packages"]) - {"bayesda._models"}
    assert listed == on_disk, f"add to / remove from pyproject.toml: {on_disk ^ listed}"


def test_shipped_models_are_package_data():
    assert SETUPTOOLS["package-dir"] == {"bayesda._models": "models"}
    assert "bayesda._models" in SETUPTOOLS["packages"]
    (pattern,) = SETUPTOOLS["package-data"]["bayesda._models"]
    assert pattern == "*/*"
    models = [d for d in (ROOT / "models").iterdir() if d.is_dir()]
    assert {d.name for d in models} >= {"ncep-air", "hs-t21-tas"}
    for d in models:
        # the pattern takes the files directly inside each model directory, nothing deeper
        assert (d / "model.json").is_file()
        assert not [p for p in d.iterdir() if p.is_dir()], f"{d} has a subfolder"
