"""The Held-Suarez simulator wrapper: a tiny run, its convention, determinism and resumption."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("dinosaur")

from bayesda.simulate import PRESETS, HeldSuarezConfig, simulate  # noqa: E402

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("osse") / "tiny.zarr"
    return simulate(TINY, path)


def test_tiny_run_layout_and_physics(tiny_run):
    ds = xr.open_zarr(tiny_run.path, consolidated=False)
    assert tiny_run.n_written == TINY.n_snapshots == ds.sizes["time"]
    assert dict(ds.sizes) == {"time": 6, "lat": 32, "lon": 64}
    assert set(ds.data_vars) == {"tas", "ps", "ua", "va"}
    lat, lon = ds["lat"].values, ds["lon"].values
    assert np.all(np.diff(lat) > 0) and lat[0] > -90 and lat[-1] < 90
    assert lon[0] == -180.0 and lon[-1] < 180.0 and np.allclose(np.diff(lon), 5.625)
    assert np.all(np.diff(ds["time"].values) == np.timedelta64(6, "h"))
    tas, ps = ds["tas"].values, ds["ps"].values
    assert np.all(np.isfinite(tas)) and 250 < tas.min() and tas.max() < 320
    assert 950 < ps.min() and ps.max() < 1050  # hPa, isothermal start near 1000 hPa
    assert json.loads(ds.attrs["config"])["layers"] == TINY.layers
    assert ds.attrs["wall_seconds"] > 0


def test_store_with_other_config_is_refused(tiny_run):
    other = dataclasses.replace(TINY, seed=TINY.seed + 1)
    with pytest.raises(ValueError, match="holds a run with config"):
        simulate(other, tiny_run.path)


def test_complete_store_is_not_recomputed(tiny_run):
    again = simulate(TINY, tiny_run.path)
    assert again.n_written == TINY.n_snapshots and again.wall_seconds < 5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"grid": "T5"}, "grid="),
        ({"dt_minutes": 50.0}, "multiple"),
        ({"n_snapshots": 0}, "n_snapshots"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HeldSuarezConfig(**kwargs)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_fields(tiny_run, tmp_path):
    """Stopping after the first chunk and extending gives the uninterrupted run's fields."""
    path = tmp_path / "resumed.zarr"
    first = simulate(dataclasses.replace(TINY, n_snapshots=TINY.chunk), path)
    assert first.n_written == TINY.chunk
    resumed = simulate(TINY, path)
    assert resumed.n_written == TINY.n_snapshots
    a = xr.open_zarr(tiny_run.path, consolidated=False).load()
    b = xr.open_zarr(path, consolidated=False).load()
    xr.testing.assert_allclose(
        a[["tas", "ps", "ua", "va"]], b[["tas", "ps", "ua", "va"]], rtol=1e-6, atol=1e-4
    )
