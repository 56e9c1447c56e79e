"""Station positions by ICAO id: the user's table, airportsdata, NOAA's nsd_cccc list."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bayesda.obs.stationdb import FEET, StationDB, parse_nsd_position


@pytest.mark.parametrize(
    "text, value",
    [("49-41N", 49 + 41 / 60), ("054-48W", -(54 + 48 / 60)), ("09-25S", -(9 + 25 / 60)),
     ("160-03-30E", 160 + 3 / 60 + 30 / 3600), ("", math.nan), ("49.5N", math.nan)],
)  # fmt: skip
def test_nsd_positions(text, value):
    got = parse_nsd_position(text)
    assert (math.isnan(got) and math.isnan(value)) or got == pytest.approx(value)


@pytest.fixture(scope="module")
def db():
    user = pd.DataFrame(
        {"lat": [40.0], "lon": [-105.0], "elevation": [np.nan]}, index=pd.Index(["KDEN"])
    )
    return StationDB(user)


def test_lookup_order_and_units(db):
    import airportsdata

    got = db.lookup(["KDEN", "KSFO", "CWDO", "ZZZZ", "KSFO"])
    assert list(got.index) == ["KDEN", "KSFO", "CWDO", "ZZZZ", "KSFO"]
    assert list(got["source"]) == ["user", "airportsdata", "nsd_cccc", "", "airportsdata"]
    assert got.loc["KDEN"].lat == 40.0  # the user's table wins
    sfo = airportsdata.load("ICAO")["KSFO"]
    assert got["lat"].iloc[1] == pytest.approx(sfo["lat"])
    assert got["elevation"].iloc[1] == pytest.approx(sfo["elevation"] * FEET)  # feet -> m
    assert got["elevation"].iloc[2] == 92.0  # nsd_cccc gives metres
    assert np.isnan(got.loc["ZZZZ"].lat) and np.isnan(got.loc["ZZZZ"].elevation)


def test_without_the_databases_only_the_user_table_places_stations():
    user = pd.DataFrame({"lat": [1.0], "lon": [2.0], "elevation": [3.0]}, index=["KAAA"])
    got = StationDB(user, databases=False).lookup(["KAAA", "KSFO"])
    assert list(got["source"]) == ["user", ""]
    assert StationDB(None, databases=False).lookup([]).empty
