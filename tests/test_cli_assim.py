"""The assimilate / diagnose / plot commands end to end on a tiny in-memory model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from _assim_synthetic import make_linear_prior, make_obs

from bayesda import cli
from bayesda.commands import assim

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
    import bayesda.plots

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bayesda.plots, "plot_posterior", boom)
    obs = make_obs(prior.grid, 10, seed=4)
    with pytest.raises(RuntimeError, match="disk full"):
        assim.assimilate_to_run(
            prior,
            obs,
            tmp_path / "run",
            method="laplace",
            num_chains=2,
            num_samples=20,
            progress_bar=False,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obs.csv"]
