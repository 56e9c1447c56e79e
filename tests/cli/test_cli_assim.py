"""The assimilate / diagnose / plot commands end to end on a tiny in-memory model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from bayesda.cli import assim
from bayesda.cli import main as cli
from bayesda.settings import ModelOptions, SamplerSettings
from bayesda.testing import make_linear_prior, make_obs

FAST = ["--chains", "2", "--warmup", "100", "--draws", "100", "--no-progress"]
LAPLACE = ["--method", "laplace", *FAST]


@pytest.fixture()
def tiny(monkeypatch, tmp_path):
    prior = make_linear_prior()
    monkeypatch.setattr(assim, "load_prior", lambda path: prior)
    obs = make_obs(prior.grid, 10, seed=4)
    path = tmp_path / "obs.csv"
    obs.to_csv(path, index=False)
    return prior, path


@pytest.mark.parametrize("method", [pytest.param("nuts", marks=pytest.mark.slow), "laplace"])
def test_assimilate_diagnose_plot(tiny, tmp_path, capsys, method):
    prior, obs_path = tiny
    run = tmp_path / "run"
    args = ["assimilate", "--model", "m", "--obs", str(obs_path), "--out", str(run)]
    assert cli.main([*args, *FAST, "--method", method]) == 0
    files = sorted(p.name for p in run.iterdir())
    expected = [
        "posterior.nc",
        "inference.nc",
        "obs.csv",
        "diagnostics.json",
        "maps.png",
        "run.json",
    ]
    for f in expected + (["trace.png"] if method == "nuts" else []):
        assert f in files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
    info = json.loads((run / "run.json").read_text())
    assert info["n_obs"] == 10 and info["settings"]["num_chains"] == 2
    assert (info["grad_evals"]["sampling"] > 0) == (method == "nuts")
    with xr.open_dataset(run / "posterior.nc") as ds:
        assert ds["anomaly"].shape == (2, 100, *prior.grid.shape)
        assert ds["sd"].attrs["units"] == "K"
    capsys.readouterr()
    rc = cli.main(["diagnose", str(run)])
    out = capsys.readouterr().out
    assert "verdict:" in out and "r_hat" in out
    status = json.loads((run / "diagnostics.json").read_text())["status"]
    assert rc == (assim.FAIL_EXIT_CODE if status == "FAIL" else 0)
    if method == "laplace":
        assert status == "WARN" and "no sampler statistics" in out
    truth = xr.DataArray(
        np.zeros(prior.grid.shape, np.float32), dims=("lat", "lon"), coords=prior.grid.coords()
    )
    truth.to_dataset(name="anomaly").to_netcdf(tmp_path / "truth.nc")
    assert (
        cli.main(
            [
                "plot",
                str(run),
                "--truth",
                str(tmp_path / "truth.nc"),
                "--out",
                str(tmp_path / "m.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "m.png").stat().st_size > 20_000


def test_existing_run_is_not_overwritten(tiny, tmp_path, capsys):
    _, obs_path = tiny
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    rc = cli.main(
        [
            "assimilate",
            "--model",
            "m",
            "--obs",
            str(obs_path),
            "--out",
            str(run),
            "--method",
            "laplace",
            *FAST,
        ]
    )
    assert rc == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("bad", ["nan", "offgrid"])
def test_bad_obs_leave_no_output(tiny, tmp_path, capsys, bad):
    prior, obs_path = tiny
    obs = make_obs(prior.grid, 10, seed=4)
    if bad == "nan":
        obs.loc[3, "value"] = np.nan
    else:
        obs.loc[3, "lat"] = 10.0
    obs.to_csv(obs_path, index=False)
    run = tmp_path / "run"
    rc = cli.main(
        ["assimilate", "--model", "m", "--obs", str(obs_path), "--out", str(run), *LAPLACE]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "error" in err and ("row 3" in err or "lat" in err)
    assert not run.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obs.csv"]


def test_diagnose_requires_a_complete_run(tmp_path, capsys):
    assert cli.main(["diagnose", str(tmp_path)]) == 1
    assert "not a complete run directory" in capsys.readouterr().err


def test_failure_during_writing_leaves_no_output(tiny, tmp_path, monkeypatch):
    prior, obs_path = tiny
    import bayesda.outputs.maps

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bayesda.outputs.maps, "plot_posterior", boom)
    obs = make_obs(prior.grid, 10, seed=4)
    with pytest.raises(RuntimeError, match="disk full"):
        assim.assimilate_to_run(
            prior,
            obs,
            tmp_path / "run",
            progress_bar=False,
            sampler=SamplerSettings(method="laplace", num_chains=2, num_samples=20),
            options=ModelOptions(errors="stated"),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obs.csv"]


def test_pick_time_is_a_held_out_winter_noon():
    import pandas as pd

    from bayesda.data.split import block_split
    from bayesda.workflows.demo import pick_time

    times = pd.date_range("2013-01-01", "2014-12-31T18", freq="6h").values
    t = pick_time(times)
    _, test = block_split(times)
    k = int(np.flatnonzero(times == t)[0])
    assert test[k]
    assert (
        pd.Timestamp(t).month == 1 and pd.Timestamp(t).hour == 12 and pd.Timestamp(t).year == 2014
    )


class _Clim:
    def mean(self, time):
        return np.zeros((4, 5))


def test_demo_rejects_a_model_on_another_grid(data_dir, tmp_path):
    import dataclasses

    from bayesda.workflows.demo import run_demo

    prior = dataclasses.replace(make_linear_prior(), climatology=_Clim())
    with pytest.raises(ValueError, match=r"model grid \(4, 5\) does not match the NCEP grid"):
        run_demo(
            tmp_path / "demo",
            prior=prior,
            data_dir=data_dir,
            verbose=False,
            options=ModelOptions(errors="stated"),
        )
    assert not (tmp_path / "demo").exists()


def _pca_prior(ncep, k=16):
    """A linear PCA prior with a climatology, on the real NCEP grid (stand-in for the VAE)."""
    import dataclasses

    from bayesda.data.climatology import Climatology
    from bayesda.data.split import split_dataset
    from bayesda.geo.grid import Grid
    from bayesda.prior.generative import linear_prior
    from bayesda.prior.representation import estimate

    train, _ = split_dataset(ncep)
    train = train.isel(time=slice(None, None, 4))
    clim = Climatology.fit(train["tas"])
    anom = clim.to_anomaly(train["tas"]).values
    X = anom.reshape(anom.shape[0], -1)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    W = (vt[:k].T * s[:k] / np.sqrt(X.shape[0])).reshape(*anom.shape[1:], k)
    resid = (X - (X @ vt[:k].T) @ vt[:k]).reshape(anom.shape)
    prior = linear_prior(
        W, np.zeros(anom.shape[1:]), Grid.from_xarray(ncep), estimate(resid, 8), name="pca16"
    )
    return dataclasses.replace(prior, climatology=clim)


@pytest.mark.slow
def test_demo_end_to_end_on_real_data(ncep, data_dir, tmp_path, capsys):
    from bayesda.workflows.demo import run_demo

    info = run_demo(
        tmp_path / "demo",
        prior=_pca_prior(ncep),
        data_dir=data_dir,
        progress_bar=False,
        sampler=SamplerSettings(num_chains=2, num_warmup=150, num_samples=150),
        options=ModelOptions(errors="stated"),
    )
    out = capsys.readouterr().out
    assert "verification against the held-out truth" in out
    v = info["verification"]["unobserved"]
    with xr.open_dataset(tmp_path / "demo" / "truth.nc") as t:
        truth_rms = float(np.sqrt((t["anomaly"].values ** 2).mean()))
    # Better than climatology (anomaly 0), with honest (not collapsed) intervals.
    assert v["rmse"] < truth_rms and 0.5 < v["coverage_90"] <= 1.0
    for f in ("maps.png", "truth.nc", "verification.json", "climatology_sd.nc", "posterior.nc"):
        assert (tmp_path / "demo" / f).is_file()
    assert cli_plot_ok(tmp_path / "demo")


def cli_plot_ok(run) -> bool:
    return (
        cli.main(["plot", str(run), "--out", str(run / "again.png")]) == 0
        and (run / "again.png").is_file()
    )


def test_demo_defaults_to_the_stated_error_model():
    """Pseudo-observations carry exactly their stated errors: the demo uses that model unless
    told otherwise; assimilate's default stays the learned errors."""
    from bayesda.cli.main import build_parser
    from bayesda.settings import DEMO_OPTIONS

    parser = build_parser()
    assert parser.parse_args(["demo"]).errors == "stated" == DEMO_OPTIONS.errors
    assert parser.parse_args(["demo", "--errors", "learned"]).errors == "learned"
    args = parser.parse_args(["assimilate", "--model", "m", "--obs", "o.csv", "--out", "r"])
    assert args.errors in (None, "learned")  # None: filled in by window_defaults
