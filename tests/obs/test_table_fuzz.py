"""Fuzzing the observation reader: any CSV text gives a valid table or a ValueError.

``read_obs`` on arbitrary CSV text must either return a table that satisfies every
documented invariant, or raise a :class:`ValueError` (naming the problem); never another
exception type, and never leave a file behind. Tables it accepts survive a
``write_obs``/``read_obs`` round trip.
"""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bayesda.geo.grid import Grid  # noqa: E402
from bayesda.obs.table import read_obs, write_obs  # noqa: E402

GRID = Grid(lat=np.linspace(30.0, 45.0, 4), lon=np.linspace(-110.0, -90.0, 5))

_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(
        [
            "",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e309",
            "0",
            "-0",
            "0x10",
            "1,5",
            "  3.5 ",
            "'4'",
            '"5"',
            "None",
            "true",
            "2014-01-01",
            "1_000",
            "٣",
        ]
    ),
)
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
_cell = st.one_of(_numbers, _text)
_times = st.sampled_from(
    [
        "2014-01-07T12:00",
        "2014-01-07 12:00:00",
        "",
        "not a date",
        "9999-99-99",
        "1677-09-21",
        "2262-04-12",
        "0",
        "2014-13-01",
    ]
)
_columns = st.one_of(
    # mostly the required columns (in any order) plus some optional ones ...
    st.tuples(
        st.permutations(["lat", "lon", "value"]),
        st.lists(st.sampled_from(["sigma", "station_id", "time", "extra"]), unique=True),
    ).map(lambda t: [*t[0], *t[1]]),
    # ... sometimes anything, duplicated or missing columns included
    st.lists(
        st.sampled_from(["lat", "lon", "value", "sigma", "station_id", "time", "extra", "lat"]),
        max_size=7,
    ),
)


def _quote(cell: str) -> str:
    if any(c in cell for c in ',"\n\r'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


@st.composite
def csv_text(draw):
    cols = draw(_columns)
    clean = draw(st.booleans())  # half the tables have only well-formed cells
    n = draw(st.integers(0, 6))
    rows = []
    for _ in range(n):
        row = []
        for c in cols:
            if c == "time":
                row.append("2014-01-07T12:00" if clean else draw(_times))
            elif c in ("station_id", "extra"):
                row.append(draw(st.text("abc XYZ-_.", max_size=6)) if clean else draw(_cell))
            elif c in ("lat", "lon", "value", "sigma") and (clean or draw(st.booleans())):
                lo, hi = {
                    "lat": (30.0, 45.0),
                    "lon": (-110.0, -90.0),
                    "value": (-30.0, 30.0),
                    "sigma": (0.0, 3.0),
                }[c]
                x = draw(st.floats(lo, hi))
                if c == "lon" and draw(st.booleans()):
                    x += 360.0  # degrees east in [0, 360)
                row.append(repr(x))
            else:
                row.append(draw(_cell))
        rows.append(",".join(_quote(x) for x in row))
    if not clean and draw(st.booleans()) and rows:  # a ragged line
        rows[draw(st.integers(0, len(rows) - 1))] += "," + draw(_cell)
    header = ",".join(cols)
    return "\n".join([header, *rows]) + draw(st.sampled_from(["", "\n", "\r\n", "\n\n"]))


def _check_valid(df: pd.DataFrame) -> None:
    for col in ("lat", "lon", "value"):
        assert col in df and df[col].dtype == np.float64
        assert np.all(np.isfinite(df[col]))
    if "sigma" in df:
        assert np.all(np.isfinite(df["sigma"])) and np.all(df["sigma"] > 0)
    assert np.all(GRID.contains(df["lat"].to_numpy(), df["lon"].to_numpy()))
    assert np.all((df["lon"] >= -180) & (df["lon"] < 180))
    assert len(df) >= 1 and df.attrs["kind"] == "anomaly"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=csv_text(), units=st.sampled_from(["K", "degC", "0.1degC"]))
def test_read_obs_gives_a_valid_table_or_a_value_error(text, units):
    with tempfile.TemporaryDirectory() as d:
        _one_table(pathlib.Path(d), text, units)


def _one_table(tmp_path: pathlib.Path, text: str, units: str) -> None:
    path = tmp_path / "obs.csv"
    path.write_text(text, encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        df = read_obs(path, units=units, grid=GRID, time="2014-01-07T12")
    except ValueError as err:
        assert str(err)  # names the problem
    else:
        _check_valid(df)
        back = read_obs(write_obs(df, tmp_path / "back.csv"), grid=GRID, duplicates="keep")
        np.testing.assert_allclose(back["value"], df["value"], rtol=1e-8, atol=1e-12)
        if "sigma" in df:
            np.testing.assert_allclose(back["sigma"], df["sigma"], rtol=1e-8)
        (tmp_path / "back.csv").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing left behind
