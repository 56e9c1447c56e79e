"""``bayesda assimilate --window-times`` end to end on a tiny saved model with dynamics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.cli import main as cli
from bayesda.prior.checkpoint import update_card
from bayesda.testing import TINY_VAE_GRID, make_dynamics, make_obs, save_tiny_model

FAST = ["--method", "laplace", "--chains", "2", "--draws", "100", "--no-progress", "--qc", "off"]
T0 = pd.Timestamp("2014-01-07T12")


@pytest.fixture()
def model(tmp_path):
    path = save_tiny_model(tmp_path / "m")[0]
    update_card(path, dynamics=make_dynamics(3, repr_corr=0.5))
    return path


def _obs_file(tmp_path, hours):
    frames = []
    for k, h in enumerate(hours):
        o = make_obs(TINY_VAE_GRID, 6, seed=10 + k)
        o["time"] = T0 + pd.Timedelta(hours=h)
        o["station_id"] = [f"S{i}" for i in range(6)]
        frames.append(o)
    path = tmp_path / "obs.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_window_run_writes_every_time(model, tmp_path, capsys):
    # observations 6 h before and after, none at the analysis time itself
    obs = _obs_file(tmp_path, [-6, 6, 12])
    run = tmp_path / "run"
    args = ["assimilate", "--model", str(model), "--obs", str(obs), "--out", str(run)]
    rc = cli.main([*args, "--time", str(T0), "--window-times", "3", *FAST])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "observations per time [6, 0, 6]" in printed
    info = json.loads((run / "run.json").read_text())
    w = info["window"]
    assert w["n_obs"] == [6, 0, 6] and info["n_obs"] == 0
    assert w["times"][1] == "2014-01-07T12:00:00"
    assert sorted(w["dirs"]) == ["2014-01-07T06:00", "2014-01-07T18:00"]
    for sub in w["dirs"].values():
        d = run / sub
        assert {"posterior.nc", "inference.nc", "diagnostics.json", "run.json"} <= {
            p.name for p in d.iterdir()
        }
        assert cli.main(["diagnose", str(d)]) in (0, 3)
    with (
        xr.open_dataset(run / "posterior.nc") as centre,
        xr.open_dataset(run / "window" / "2014-01-07T06:00" / "posterior.nc") as before,
    ):
        assert centre["anomaly"].shape == (2, 100, *TINY_VAE_GRID.shape)
        # the analysis time has no observation of its own: wider than an observed neighbour
        assert float(centre["sd"].mean()) > float(before["sd"].mean())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ([], "needs --time"),
        (["--time", str(T0), "--window-times", "4"], "must be odd"),
        (["--time", str(T0), "--offset", "uniform"], "--offset none"),
        (["--time", str(T0), "--errors", "learned"], "--errors stated"),
    ],
    ids=["no-time", "even", "offset", "learned"],
)
def test_window_refusals_at_parse_time(model, tmp_path, capsys, extra, match):
    obs = _obs_file(tmp_path, [0])
    run = tmp_path / "run"
    base = ["assimilate", "--model", str(model), "--obs", str(obs), "--out", str(run), *FAST]
    with pytest.raises(SystemExit) as exit_:
        cli.main([*base, "--window-times", "3", *extra])
    assert exit_.value.code == 2 and match in capsys.readouterr().err
    assert not run.exists()


def test_model_without_dynamics_is_refused(tmp_path, capsys):
    path = save_tiny_model(tmp_path / "m")[0]
    obs = _obs_file(tmp_path, [0])
    rc = cli.main(
        [
            "assimilate",
            "--model",
            str(path),
            "--obs",
            str(obs),
            "--out",
            str(tmp_path / "run"),
            "--time",
            str(T0),
            "--window-times",
            "3",
            *FAST,
        ]
    )
    assert rc == 1 and "no latent dynamics" in capsys.readouterr().err


def test_reanalyse_smoother_fills_and_resumes_the_store(model, tmp_path, capsys):
    obs = _obs_file(tmp_path, [0, 6, 12, 24])
    out = tmp_path / "s.zarr"
    args = ["reanalyse", "--model", str(model), "--obs", str(obs), "--out", str(out)]
    quick = ["--method", "laplace", "--chains", "1", "--draws", "50", "--no-progress"]
    smooth = ["--smoother", "--window-times", "3", "--window-stride", "1"]
    assert cli.main([*args, *smooth, *quick]) == 0, capsys.readouterr().err
    assert "4/4 times done" in capsys.readouterr().out
    with xr.open_zarr(out, consolidated=False) as ds:
        assert bool(ds["done"].all()) and ds.sizes["time"] == 4
        means = ds["mean"].values
    assert cli.main([*args, *smooth, *quick]) == 0  # nothing left to do: same store
    with xr.open_zarr(out, consolidated=False) as ds:
        np.testing.assert_array_equal(ds["mean"].values, means)
    # the single-time reanalysis may not resume a smoother's store
    assert cli.main([*args, *quick]) == 1
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main([*args, *quick, "--smoother", "--window-stride", "11"])
    assert exit_.value.code == 2 and "at most the window" in capsys.readouterr().err
