"""Reanalysis across processes: killed with a real signal and resumed; Dask workers agree.

Both use a tiny (untrained) VAE written with the real checkpoint code, so the model is
loaded from disk exactly as ``bayesda reanalyse`` and the Dask workers load it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.geo.grid import Grid
from bayesda.prior.checkpoint import save_model
from bayesda.prior.representation import RepresentationError
from bayesda.prior.vae import VAE, VAEConfig
from bayesda.workflows.reanalysis import ReanalysisSettings, reanalyse

GRID = Grid(lat=np.linspace(30.0, 45.0, 6), lon=np.linspace(-110.0, -90.0, 8))
TIMES = pd.date_range("2014-02-01", periods=6, freq="6h")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    cfg = VAEConfig(nlat=6, nlon=8, latent_dim=3, channels=(4,))
    x = np.zeros((1, 6, 8), np.float32)
    params = jax.device_get(VAE(cfg).init(jax.random.key(0), x, jax.random.key(1))["params"])
    rng = np.random.default_rng(0)
    repr_error = RepresentationError(
        (0.3 * rng.normal(size=(2, 6, 8))).astype(np.float32), np.full((6, 8), 0.05, np.float32)
    )
    path = tmp_path_factory.mktemp("model") / "tiny"
    return save_model(
        path,
        params=params,
        config=cfg,
        grid=GRID,
        norm_mean=np.zeros((6, 8)),
        norm_sd=np.full((6, 8), 2.0),
        repr_error=repr_error,
        card={"name": "tiny"},
    )


@pytest.fixture(scope="module")
def obs_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    rows = []
    for t in TIMES:
        n = 8
        rows.append(
            pd.DataFrame(
                {
                    "time": t,
                    "lat": rng.uniform(31, 44, n),
                    "lon": rng.uniform(-109, -91, n),
                    "value": rng.normal(0, 1.5, n),
                    "sigma": 0.5,
                }
            )
        )
    path = tmp_path_factory.mktemp("obs") / "obs.csv"
    pd.concat(rows).to_csv(path, index=False)
    return path


def _cli(model_dir, obs_csv, out, *extra):
    return [
        sys.executable,
        "-m",
        "bayesda.cli.main",
        "reanalyse",
        "--model",
        str(model_dir),
        "--obs",
        str(obs_csv),
        "--out",
        str(out),
        "--chains",
        "2",
        "--warmup",
        "150",
        "--draws",
        "150",
        "--no-progress",
        *extra,
    ]


def _done(out: Path) -> int:
    try:
        return int(xr.open_zarr(out, consolidated=False)["done"].sum())
    except Exception:  # store not created yet
        return 0


@pytest.mark.slow
def test_killed_run_resumes_to_a_complete_store(model_dir, obs_csv, tmp_path):
    out = tmp_path / "r.zarr"
    proc = subprocess.Popen(
        _cli(model_dir, obs_csv, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while _done(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _done(out)
    assert 2 <= partial < TIMES.size
    done = subprocess.run(
        _cli(model_dir, obs_csv, out), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ds = xr.open_zarr(out, consolidated=False).load()
    np.testing.assert_array_equal(ds["time"].values, TIMES.values)  # every time exactly once
    assert ds["done"].all()
    assert np.isfinite(ds["mean"]).all() and np.isfinite(ds["sd"]).all()
    assert (ds["n_obs"] == 8).all()
    assert not list(out.rglob("*.partial"))


@pytest.mark.slow
def test_dask_workers_write_the_same_values_as_one_process(model_dir, obs_csv, tmp_path):
    from bayesda.workflows.reanalysis import read_obs_source

    obs = read_obs_source(obs_csv, grid=GRID)
    settings = ReanalysisSettings(num_chains=2, num_warmup=150, num_samples=150, keep_samples=2)
    one = reanalyse(
        model_dir, obs, tmp_path / "one.zarr", settings=settings, end=TIMES[3], progress=False
    )
    many = reanalyse(
        model_dir,
        obs,
        tmp_path / "dask.zarr",
        settings=settings,
        end=TIMES[3],
        scheduler="local",
        n_workers=2,
        progress=False,
    )
    a = xr.open_zarr(one, consolidated=False).load()
    b = xr.open_zarr(many, consolidated=False).load()
    assert b["done"].all()
    for name in ("mean", "sd", "q05", "q95", "samples"):
        np.testing.assert_allclose(
            b[name].values, a[name].values, rtol=1e-4, atol=1e-5, err_msg=name
        )
