"""``bayesda assimilate --format metar`` on the raw bulletin stream, without a station table."""

from __future__ import annotations

import json
import pathlib

import pandas as pd
import pytest

import bayesda.preflight.pipeline as pipeline
from bayesda.cli import main as cli

REAL = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "metar_20190701_1200.txt.gz"
SMALL = ["--method", "laplace", "--chains", "2", "--warmup", "20", "--draws", "20"]


def _args(run) -> list[str]:
    return [
        "assimilate",
        "--model",
        "models/ncep-air",
        "--obs",
        str(REAL),
        "--format",
        "metar",
        "--time",
        "2019-07-01T12",
        "--out",
        str(run),
        *SMALL,
        "--no-progress",
    ]


class _Stop(Exception):
    pass


def test_raw_bulletin_stream_reaches_the_analysis(monkeypatch, tmp_path, capsys):
    """The file as distributed goes in with no --stations: the analysis starts on the
    stations inside the model grid (stopped at the preflight, which the lead's work
    speeds up; the slow test below runs it)."""
    seen = {}

    def stop(prior, obs, **kw):
        seen["obs"], seen["kw"] = obs, kw
        raise _Stop("stopped after reading")

    monkeypatch.setattr(pipeline, "preflight", stop)
    assert cli.main(_args(tmp_path / "run")) == 1
    out = capsys.readouterr()
    assert "stopped after reading" in out.err
    # what the reader dropped is said, and where the run record lists it
    assert "metar: read 20246, missing 2461" in out.out and "implausible 1" in out.out
    assert "station id(s) without a position (run.json" in out.out
    obs = seen["obs"]
    # reports of the 2,705 stations inside the grid with a position (measured:
    # bayesda.obs.metar.read_metar, then the grid), all of them anomalies in K
    assert obs["station_id"].nunique() == pytest.approx(2705, rel=0.01)
    assert obs["value"].abs().max() < 40.0
    assert pd.Timestamp(seen["kw"]["time"]) == pd.Timestamp("2019-07-01T12")  # parsed as UTC


@pytest.mark.slow  # the shipped model on ~270 stations with Laplace: ~1-3 min
def test_raw_bulletin_stream_to_a_run(monkeypatch, tmp_path, capsys):
    """End to end on every 10th station of the file: window, QC, the check and Laplace;
    the run record lists what the reader dropped and which stations it could not place."""
    real = pipeline.preflight

    def thinned(prior, obs, **kw):
        keep = obs["station_id"].isin(sorted(set(obs["station_id"]))[::10])
        return real(prior, obs[keep.to_numpy()].reset_index(drop=True), **kw)

    monkeypatch.setattr(pipeline, "preflight", thinned)
    run = tmp_path / "run"
    assert cli.main([*_args(run), "--calibrate", "none"]) == 0
    info = json.loads((run / "run.json").read_text())
    rec = info["observations"]
    assert rec["format"] == "metar" and rec["counts"]["implausible"] == 1
    assert rec["details"]["implausible"][0]["station"] == "CXHM"
    assert len(rec["details"]["no_station"]) == rec["details"]["stations"]["unresolved"] > 0
    assert (run / "posterior.nc").is_file()
