"""The Held-Suarez simulator wrapper: a tiny run, its convention, determinism and resumption."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("dinosaur")

from bayesda.sim.heldsuarez import PRESETS, HeldSuarezConfig, simulate  # noqa: E402

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


@pytest.mark.slow  # two dinosaur compilations, about 60 s on 2 busy cores
def test_column_fields_agree_with_the_stored_level_and_forcing_can_be_changed():
    from dinosaur import scales

    from bayesda.data.fieldstats import sphere_gradient
    from bayesda.sim.heldsuarez import build_model

    model = build_model(TINY)
    state = model.advance(model.advance(model.initial_state))
    low = model.to_fields(state)
    col = model.column_fields(state)
    assert col["t"].shape == (TINY.layers, 64, 32) and model.sigma.shape == (TINY.layers,)
    assert np.all(np.diff(model.sigma) > 0)  # top to bottom
    np.testing.assert_allclose(col["t"][-1], low["tas"], rtol=1e-6)
    np.testing.assert_allclose(col["u"][-1], low["ua"], rtol=1e-5, atol=1e-5)
    # vorticity in s-1: the spectral field against centred differences of u, v (lat-lon order)
    lat, lon = model.lat, model.lon
    u, v = col["u"][-1].T, col["v"][-1].T  # [lat, lon]
    tan = np.tan(np.radians(lat))[:, None] / 6.371e6
    fd = sphere_gradient(v, lat, lon)[0] - sphere_gradient(u, lat, lon)[1] + u * tan
    mid = np.abs(lat) < 60
    corr = np.corrcoef(fd[mid].ravel(), col["vor"][-1].T[mid].ravel())[0, 1]
    assert corr > 0.95, corr
    hot = build_model(TINY, forcing={"dTy": 100 * scales.units.degK})
    state_hot = hot.advance(hot.advance(hot.initial_state))
    assert not np.allclose(hot.to_fields(state_hot)["tas"], low["tas"])
    # a passive tracer starts at its profile, is carried along, and does not feed back
    with_q = build_model(TINY, tracer=(lambda lat: np.tanh((np.abs(lat) - 45.0) / 10.0), 5.0))
    q0 = with_q.column_fields(with_q.initial_state)["q"]
    profile = np.tanh((np.abs(with_q.lat) - 45.0) / 10.0)
    assert np.abs(q0[-1] - profile[None, :]).max() < 0.15  # spectral truncation of a front
    state_q = with_q.advance(with_q.advance(with_q.initial_state))
    q = with_q.column_fields(state_q)["q"]
    assert np.all(np.isfinite(q)) and np.abs(q).max() < 1.3
    np.testing.assert_allclose(with_q.to_fields(state_q)["tas"], low["tas"], rtol=1e-5)
