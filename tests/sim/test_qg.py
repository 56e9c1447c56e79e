"""The QG simulator (bayesda.sim.qg): a tiny run, its layout, physics, determinism, resumption."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("pyqg_jax")

from bayesda.sim.qg import PRESETS, QGConfig, default_store_path, simulate_qg  # noqa: E402

TINY = PRESETS["tiny"]
VARS = ["q", "q_upper", "psi", "u", "v"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return simulate_qg(TINY, tmp_path_factory.mktemp("qg") / "tiny.zarr")


def test_tiny_run_layout(tiny_run):
    ds = xr.open_zarr(tiny_run.path, consolidated=False)
    assert tiny_run.n_written == TINY.n_snapshots == ds.sizes["time"]
    assert dict(ds.sizes) == {"time": 6, "y": 16, "x": 16}
    assert set(ds.data_vars) == set(VARS)
    assert np.allclose(np.diff(ds["x"].values), TINY.length_km / TINY.nx)
    assert np.all(np.diff(ds["time"].values) == np.timedelta64(6, "h"))
    assert json.loads(ds.attrs["config"])["seed"] == TINY.seed
    assert ds.attrs["wall_seconds"] > 0
    for name in VARS:
        assert np.all(np.isfinite(ds[name].values)), name


def test_tiny_run_is_geostrophic(tiny_run):
    """u = -dpsi/dy and v = dpsi/dx (spectral derivatives of the stored streamfunction)."""
    ds = xr.open_zarr(tiny_run.path, consolidated=False).isel(time=-1).load()
    psi = ds["psi"].values.astype(np.float64)
    n = psi.shape[0]
    k = 2 * np.pi * np.fft.fftfreq(n, d=TINY.length_km * 1e3 / n)
    ph = np.fft.fft2(psi)
    dpsi_dx = np.real(np.fft.ifft2(1j * k[None, :] * ph))
    dpsi_dy = np.real(np.fft.ifft2(1j * k[:, None] * ph))
    scale = np.abs(ds["v"].values).max()
    assert scale > 0
    np.testing.assert_allclose(ds["v"].values, dpsi_dx, atol=1e-3 * scale)
    np.testing.assert_allclose(ds["u"].values, -dpsi_dy, atol=1e-3 * scale)


@pytest.mark.slow  # compiles a second model
def test_same_seed_same_fields_other_seed_other_fields(tiny_run, tmp_path):
    again = simulate_qg(TINY, tmp_path / "again.zarr")
    a = xr.open_zarr(tiny_run.path, consolidated=False).load()
    b = xr.open_zarr(again.path, consolidated=False).load()
    xr.testing.assert_equal(a[VARS], b[VARS])
    other = simulate_qg(dataclasses.replace(TINY, seed=1), tmp_path / "other.zarr")
    c = xr.open_zarr(other.path, consolidated=False).load()
    assert not np.allclose(a["q"].values, c["q"].values)


def test_interrupted_run_resumes_to_the_same_fields(tiny_run, tmp_path):
    path = tmp_path / "resumed.zarr"
    first = simulate_qg(dataclasses.replace(TINY, n_snapshots=TINY.chunk), path)
    assert first.n_written == TINY.chunk
    assert (path.parent / (path.name + ".restart") / f"state_{TINY.chunk}.npz").exists()
    resumed = simulate_qg(TINY, path)
    assert resumed.n_written == TINY.n_snapshots
    a = xr.open_zarr(tiny_run.path, consolidated=False).load()
    b = xr.open_zarr(path, consolidated=False).load()
    xr.testing.assert_allclose(a[VARS], b[VARS], rtol=1e-5, atol=1e-12)


def test_store_with_other_config_is_refused_and_complete_store_is_kept(tiny_run):
    with pytest.raises(ValueError, match="holds a run with config"):
        simulate_qg(dataclasses.replace(TINY, rek=1e-6), tiny_run.path)
    again = simulate_qg(TINY, tiny_run.path)
    assert again.n_written == TINY.n_snapshots and again.wall_seconds < 5


def test_missing_restart_state_is_an_error(tmp_path):
    path = tmp_path / "r.zarr"
    simulate_qg(dataclasses.replace(TINY, n_snapshots=TINY.chunk), path)
    for f in (path.parent / (path.name + ".restart")).iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match="cannot be resumed"):
        simulate_qg(TINY, path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dt_hours": 4.0}, "multiple"),
        ({"n_snapshots": 0}, "n_snapshots"),
        ({"rd": 0.0}, "rd"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QGConfig(**kwargs)


def test_store_name_tells_the_configuration(monkeypatch, tmp_path):
    monkeypatch.setenv("BAYESDA_CACHE", str(tmp_path))
    assert default_store_path(QGConfig()).name == "qg-eddy-64x64-every6h-seed0.zarr"
    assert "custom" in default_store_path(QGConfig(rek=1e-6)).name
    assert default_store_path(QGConfig(n_snapshots=5)) == default_store_path(QGConfig())


@pytest.mark.slow
def test_cli(tmp_path, capsys):
    from bayesda.cli.main import main

    out = tmp_path / "cli.zarr"
    args = ["data", "simulate", "--simulator", "qg", "--preset", "tiny", "--out", str(out)]
    assert main([*args, "--n-snapshots", "4"]) == 0
    assert "4 snapshots" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="Held-Suarez settings"):
        main([*args, "--layers", "3"])
    with pytest.raises(SystemExit, match="qg simulator has"):
        main(["data", "simulate", "--simulator", "qg", "--preset", "small"])
