"""Shared test fixtures: the real data directory, the NCEP dataset, and tiny grids."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

import bayesda
from bayesda.geo.grid import Grid

# One CPU device per NUTS chain and a persistent compilation cache, before any JAX computation.
bayesda.set_host_device_count()
bayesda.enable_compilation_cache()

_REPO_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The directory with the real datasets: $BAYESDA_DATA_DIR, else ../shared/data."""
    env = os.environ.get("BAYESDA_DATA_DIR")
    path = pathlib.Path(env) if env else _REPO_DATA
    if not (path / "ncep-air" / "air_temperature.nc").is_file():
        if os.environ.get("CI"):  # CI must test on the real data, never skip it silently
            pytest.fail(f"CI: real data not found in {path}; .ci/run sets BAYESDA_DATA_DIR")
        pytest.skip(
            f"real data not found in {path} (set BAYESDA_DATA_DIR to the directory "
            "holding ncep-air/air_temperature.nc)"
        )
    return path


@pytest.fixture(scope="session")
def ncep(data_dir):
    """The standardized NCEP air temperature Dataset (loaded once per session)."""
    from bayesda.data.datasets import load_dataset

    return load_dataset("ncep-air", data_dir)


@pytest.fixture(scope="session")
def small_grid() -> Grid:
    """A coarse regional 6 x 8 grid over North America."""
    return Grid(lat=np.linspace(30.0, 55.0, 6), lon=np.linspace(-120.0, -85.0, 8))


@pytest.fixture(scope="session")
def global_grid() -> Grid:
    """A coarse periodic 7 x 12 global grid (30 degree longitude spacing)."""
    return Grid(lat=np.linspace(-75.0, 75.0, 7), lon=np.arange(-180.0, 180.0, 30.0))


@pytest.fixture
def saved(tmp_path):
    """A tiny VAE model directory: ``(path, params, norm_mean, norm_sd, repr_error)``."""
    from bayesda.testing import save_tiny_model

    return save_tiny_model(tmp_path / "m")
