"""``bayesda assimilate`` with QC, the calibration check and real station formats."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayesda.cli import assim
from bayesda.cli import main as cli
from bayesda.testing import grf_prior as _grf_prior
from bayesda.testing import obs_of as _obs_of

try:
    import rasterio  # noqa: F401

    _HAVE_RIO = True
except ImportError:
    _HAVE_RIO = False

LAPLACE = ["--method", "laplace", "--chains", "2", "--draws", "100", "--no-progress"]


def _metar(station: str, hhmm: str, degc: float) -> str:
    """A METAR report on the 21st with the temperature to tenths in its remark."""
    sign = "1" if degc < 0 else "0"
    tt = f"M{abs(round(degc)):02d}" if round(degc) < 0 else f"{round(degc):02d}"
    return (
        f"METAR {station} 21{hhmm}Z 18010KT 10SM CLR {tt}/M20 A3000 "
        f"RMK AO2 T{sign}{abs(round(degc * 10)):03d}1200"
    )


def _metar_args(tmp_path) -> list[str]:
    """``bayesda assimilate`` of tmp_path's obs.metar and stations.csv, 2014-01-21 12 UTC."""
    return [
        "assimilate",
        "--model",
        "models/ncep-air",
        "--obs",
        str(tmp_path / "obs.metar"),
        "--format",
        "metar",
        "--stations",
        str(tmp_path / "stations.csv"),
        "--time",
        "2014-01-21T12",
        *LAPLACE,
    ]


@pytest.mark.slow  # ~15 s idle, 100 s on a loaded 2-core machine
def test_assimilate_flags_gross_error_and_writes_site_table(monkeypatch, tmp_path, capsys):
    prior, grf = _grf_prior()
    monkeypatch.setattr(assim, "load_prior", lambda path: prior)
    obs = _obs_of(prior, grf, 30, seed=2)
    obs.loc[4, "value"] += 15.0
    path = tmp_path / "obs.csv"
    obs.to_csv(path, index=False)
    run = tmp_path / "run"
    assert (
        cli.main(
            [
                "assimilate",
                "--model",
                "m",
                "--obs",
                str(path),
                "--out",
                str(run),
                "--calibrate",
                "auto",
                "--errors",
                "stated",
                *(["--geotiff"] if _HAVE_RIO else []),
                *LAPLACE,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "QC: 30 obs," in out  # S4 is rejected by the background check or the mixture
    assert "S4 (" in out and "calibration check (5-fold" in out and "calibrate auto" in out
    info = json.loads((run / "run.json").read_text())
    assert [f["station_id"] for f in info["qc"]["flagged"]] == ["S4"]
    fit = info["calibration"]["fit"]
    assert fit["scale_q05"] <= fit["scale"] <= fit["scale_q95"]
    assert fit["scale_obs_q05"] <= fit["scale_obs"] <= fit["scale_obs_q95"]
    if _HAVE_RIO:
        assert "p_exceed_p5K.tif" in info["geotiff"] and (run / "geotiff" / "sd.tif").is_file()
    sites = pd.read_csv(run / "obs_posterior.csv")
    assert sites.loc[4, "qc"] != "ok" and (sites["qc"] == "ok").sum() == 29
    # the posterior at the bad station ignores it: its residual is about the 15 K error
    assert sites.loc[4, "residual"] > 10.0
    assert np.abs(sites.loc[sites["qc"] == "ok", "z"]).max() < 4.0


def test_assimilate_qc_off_keeps_stated_sigma(monkeypatch, tmp_path, capsys):
    prior, grf = _grf_prior()
    monkeypatch.setattr(assim, "load_prior", lambda path: prior)
    path = tmp_path / "obs.csv"
    _obs_of(prior, grf, 12, seed=5).to_csv(path, index=False)
    run = tmp_path / "run"
    assert (
        cli.main(
            [
                "assimilate",
                "--model",
                "m",
                "--obs",
                str(path),
                "--out",
                str(run),
                "--qc",
                "off",
                "--calibrate",
                "none",
                *LAPLACE,
            ]
        )
        == 0
    )
    info = json.loads((run / "run.json").read_text())
    assert "qc" not in info and "calibration" not in info
    np.testing.assert_allclose(pd.read_csv(run / "obs.csv")["sigma"], 0.5)


@pytest.mark.slow
def test_metar_file_to_maps_with_the_shipped_model(tmp_path, capsys, ncep):
    """A METAR file of real-format reports of an NCEP day, one of them wrong by 15 K."""
    from bayesda.obs.table import pseudo_obs
    from bayesda.prior.checkpoint import load_model

    prior = load_model("models/ncep-air")
    t = np.datetime64("2014-01-21T12:00")
    tas = ncep["tas"].sel(time=t)
    truth = prior.climatology.to_anomaly(tas).drop_vars("time")
    obs = pseudo_obs(truth, 40, network="station", sigma=0.3, seed=3)
    clim = prior.climatology.mean(t).interp(lat=("o", obs["lat"]), lon=("o", obs["lon"]))
    degc = obs["value"].to_numpy() + clim.values - 273.15
    degc[7] += 15.0
    ids = [f"K{i:03d}" for i in range(len(obs))]
    lines = []
    for i, c in enumerate(degc):
        lines.append(_metar(ids[i], "1153" if i % 2 else "1205", c))  # from 11:53 to 12:05
    lines.append(f"METAR {ids[0]} 210553Z 18010KT 10SM CLR 01/M20 A3000")  # outside the window
    (tmp_path / "obs.metar").write_text("\n".join(lines) + "\n")
    pd.DataFrame({"id": ids, "lat": obs["lat"], "lon": obs["lon"]}).to_csv(
        tmp_path / "stations.csv", index=False
    )
    run = tmp_path / "run"
    assert cli.main([*_metar_args(tmp_path), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "window: +-3 h" in out and "1 reports outside" in out
    info = json.loads((run / "run.json").read_text())
    assert [f["station_id"] for f in info["qc"]["flagged"]] == ["K007"]
    assert info["observations"]["counts"]["read"] == 41
    assert (run / "maps.png").is_file()


@pytest.mark.slow  # two runs of the shipped model: ~30 s idle, 200 s on a loaded machine
def test_metar_stations_above_the_model_surface_are_adjusted_not_flagged(tmp_path, capsys, ncep):
    """Two stations 2 km above the model surface report 13 K colder: with their elevations
    the lapse-rate adjustment moves them to the model surface, and QC keeps them."""
    from bayesda.obs.elevation import surface_height_at
    from bayesda.obs.table import pseudo_obs
    from bayesda.prior.checkpoint import load_model

    prior = load_model("models/ncep-air")
    t = np.datetime64("2014-01-21T12:00")
    truth = prior.climatology.to_anomaly(ncep["tas"].sel(time=t)).drop_vars("time")
    obs = pseudo_obs(truth, 40, network="station", sigma=0.3, seed=3)
    clim = prior.climatology.mean(t).interp(lat=("o", obs["lat"]), lon=("o", obs["lon"]))
    height = surface_height_at(prior, obs["lat"], obs["lon"])
    elevation = np.where(np.isfinite(height), height, 0.0)
    high = [10, 20]
    elevation[high] += 2000.0
    degc = obs["value"].to_numpy() + clim.values - 273.15
    degc[high] -= 6.5 * 2.0  # the standard atmosphere, 2 km up
    ids = [f"K{i:03d}" for i in range(len(obs))]
    lines = [_metar(ids[i], "1200", c) for i, c in enumerate(degc)]
    (tmp_path / "obs.metar").write_text("\n".join(lines) + "\n")
    pd.DataFrame({"id": ids, "lat": obs["lat"], "lon": obs["lon"], "elevation": elevation}).to_csv(
        tmp_path / "stations.csv", index=False
    )
    run = tmp_path / "run"
    args = _metar_args(tmp_path)
    assert cli.main([*args, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "elevation: 40 stations moved to the model surface at 6.5 +- 2 K/km" in out
    info = json.loads((run / "run.json").read_text())
    assert info["elevation"]["n_adjusted"] == 40
    assert info["elevation"]["max_abs_height_difference_m"] == pytest.approx(2000.0, abs=1.0)
    assert info["qc"]["flagged"] == []
    # the same file without the adjustment: the two high stations read as 13 K too cold
    assert (
        cli.main(
            [*args, "--out", str(tmp_path / "raw"), "--lapse-rate", "0", "--lapse-rate-sd", "0"]
        )
        == 0
    )
    raw = json.loads((tmp_path / "raw" / "run.json").read_text())
    assert {f["station_id"] for f in raw["qc"]["flagged"]} == {"K010", "K020"}
