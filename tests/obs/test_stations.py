"""Station-format readers: fixtures written from the formats' public specifications."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesda.obs import stations as st
from bayesda.obs.table import validate_obs
from bayesda.obs.window import select_window


def _dly_line(sid, year, month, element, days):
    """A GHCN-Daily .dly record; ``days`` maps day -> (value, qflag)."""
    out = f"{sid:<11}{year:04d}{month:02d}{element:<4}"
    for d in range(1, 32):
        v, q = days.get(d, (-9999, " "))
        out += f"{v:>5d} {q}7"  # MFLAG blank, QFLAG, SFLAG '7'
    return out


def _stations_txt(path):
    # ghcnd-stations.txt: ID 1-11, LAT 13-20, LON 22-30, ELEV 32-37, ST 39-40, NAME 42-71
    lines = [
        f"{'USW00023062':<11} {39.8328:8.4f} {-104.6575:9.4f} {1650.2:6.1f} CO DENVER INTL AP",
        f"{'USC00051294':<11} {38.8333:8.4f} {-106.1333:9.4f} {-999.9:6.1f} CO BUENA VISTA",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def dly(tmp_path):
    lines = [
        _dly_line(
            "USW00023062",
            2014,
            1,
            "TAVG",
            {1: (-52, " "), 2: (-9999, " "), 3: (120, "I"), 21: (35, " ")},
        ),
        _dly_line("USW00023062", 2014, 1, "TMAX", {1: (100, " ")}),
        _dly_line("USC00051294", 2014, 1, "TAVG", {21: (-10, " ")}),
        _dly_line("USC00099999", 2014, 1, "TAVG", {21: (0, " ")}),  # not in the stations file
    ]
    path = tmp_path / "stations.dly"
    path.write_text("\n".join(lines) + "\n")
    return path, _stations_txt(tmp_path / "ghcnd-stations.txt")


def test_ghcn_stations_fixed_width(tmp_path):
    s = st.read_ghcn_stations(_stations_txt(tmp_path / "s.txt"))
    assert list(s["id"]) == ["USW00023062", "USC00051294"]
    assert s["elevation"].iloc[0] == pytest.approx(1650.2)
    assert np.isnan(s["elevation"].iloc[1])  # -999.9 is missing


def test_ghcn_dly_values_flags_missing(dly):
    path, stations = dly
    df = st.read_ghcn_dly(path, stations=st.read_ghcn_stations(stations), element="TAVG")
    # 3 TAVG months in January of known stations: day 1 and 21 kept at USW, 21 at USC
    assert len(df) == 3
    first = df.iloc[0]
    assert first["station_id"] == "USW00023062"
    assert first["value"] == pytest.approx(-5.2 + 273.15)
    assert first["time"] == pd.Timestamp("2014-01-01T12")
    assert first["elevation"] == pytest.approx(1650.2)
    c = df.attrs["counts"]
    assert c["flagged"] == 1  # day 3 has QFLAG 'I'
    assert c["read"] == 3 * 31  # the three TAVG records
    assert c["missing"] == 3 * 31 - 5  # every -9999 (day 2 among them)
    assert c["no_station"] == 1 and c["kept"] == 3
    validate_obs(df)  # the standard table


def test_ghcn_dly_error_names_line_and_value(tmp_path):
    bad = _dly_line("USW00023062", 2014, 1, "TAVG", {1: (5, " ")})
    bad = bad[:21] + "  x12" + bad[26:]
    path = tmp_path / "bad.dly"
    path.write_text(_dly_line("USW00023062", 2014, 2, "TAVG", {}) + "\n" + bad + "\n")
    with pytest.raises(st.StationFormatError, match=r"bad.dly:2: VALUE1 .*'  x12'"):
        st.read_ghcn_dly(path, stations=None)


def test_ghcn_by_station_csv(tmp_path):
    path = tmp_path / "USW00023062.csv"
    path.write_text(
        "USW00023062,20140121,TAVG,35,,,W,\n"
        "USW00023062,20140121,TMAX,100,,,W,0700\n"
        "USW00023062,20140122,TAVG,-9999,,,W,\n"
        "USW00023062,20140123,TAVG,40,,G,W,\n"
        "USW00023062,20140124,TAVG,12,,,W,1800\n"
    )
    df = st.read_ghcn_csv(path, stations=st.read_ghcn_stations(_stations_txt(tmp_path / "s")))
    assert len(df) == 2
    assert df["value"].iloc[0] == pytest.approx(3.5 + 273.15)
    assert df["time"].iloc[1] == pd.Timestamp("2014-01-24T18")
    assert df.attrs["counts"]["missing"] == 1 and df.attrs["counts"]["flagged"] == 1
    path.write_text("USW00023062,2014-01-2x,TAVG,35,,,W,\n")
    with pytest.raises(st.StationFormatError, match="1: date '2014-01-2x'"):
        st.read_ghcn_csv(path, stations=None)


def _isd_line(y, m, d, h, t, dew=-9999):
    # ISD-Lite: year 1-4, month 6-7, day 9-10, hour 12-13, temp 14-19, dew 20-24, ...
    return (
        f"{y:4d} {m:02d} {d:02d} {h:02d}{t:6d}{dew:6d}{10230:6d}{270:6d}{31:6d}"
        f"{-9999:6d}{-9999:6d}{-9999:6d}"
    )


def test_isd_lite(tmp_path):
    path = tmp_path / "724940-23234-2014"
    path.write_text(
        "\n".join(
            [
                _isd_line(2014, 1, 21, 11, 56),
                _isd_line(2014, 1, 21, 12, -9999),
                _isd_line(2014, 1, 21, 13, 61),
            ]
        )
        + "\n"
    )
    hist = tmp_path / "isd-history.csv"
    hist.write_text(
        '"USAF","WBAN","STATION NAME","CTRY","STATE","ICAO","LAT","LON","ELEV(M)",'
        '"BEGIN","END"\n"724940","23234","SAN FRANCISCO INTL","US","CA","KSFO",'
        '"+37.620","-122.365","+0002.4","19730101","20250101"\n'
    )
    df = st.read_isd_lite(path, stations=st.read_isd_history(hist))
    assert list(df["value"]) == pytest.approx([5.6 + 273.15, 6.1 + 273.15])
    assert df["station_id"].iloc[0] == "724940-23234"
    assert df["lat"].iloc[0] == pytest.approx(37.62)
    assert df["elevation"].iloc[0] == pytest.approx(2.4)
    assert df.attrs["counts"]["missing"] == 1
    path.write_text(_isd_line(2014, 1, 21, 11, 56).replace("   56", "  5.6") + "\n")
    with pytest.raises(st.StationFormatError, match=r"1: air temperature .*'   5.6'"):
        st.read_isd_lite(path, stations=None)


METAR = """\
METAR KDEN 211253Z 19010KT 10SM FEW100 M02/M09 A3012 RMK AO2 SLP224 T10221089=
SPECI KDEN 211353Z 20008KT 10SM CLR 01/M08 A3010 RMK AO2
KSFO 211256Z 29012KT 10SM FEW008 12/09 A3016
KBOS 211254Z NIL=
KJFK 211251Z 31015KT 10SM SKC A3020
"""


def test_metar(tmp_path):
    path = tmp_path / "metar.txt"
    path.write_text(METAR)
    stations = pd.DataFrame(
        {
            "id": ["KDEN", "KSFO", "KJFK"],
            "lat": [39.83, 37.62, 40.64],
            "lon": [-104.66, -122.37, -73.78],
            "elevation": [1656, 3, 4],
        }
    )
    df = st.read_metar(path, stations=stations, time="2014-01-21T12")
    assert list(df["station_id"]) == ["KDEN", "KDEN", "KSFO"]
    # the remark's tenths group wins: T1022 -> -2.2 degC
    assert list(df["value"] - 273.15) == pytest.approx([-2.2, 1.0, 12.0])
    assert df["time"].iloc[0] == pd.Timestamp("2014-01-21T12:53")
    assert df.attrs["counts"]["missing"] == 2  # NIL, no temperature group
    path.write_text("KDEN 2112Z 19010KT M02/M09\n")
    with pytest.raises(st.StationFormatError, match="1: time group '2112Z'"):
        st.read_metar(path, stations=stations, time="2014-01-21T12")
    path.write_text("KDEN 211253Z 19010KT 2A/M09\n")
    with pytest.raises(st.StationFormatError, match="'2A/M09'"):
        st.read_metar(path, stations=stations, time="2014-01-21T12")


def test_mapped_csv(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text(
        "STN,LAT,LON,ELEV,DATE,TMP,QC\n"
        "A,40.0,-105.0,1600,2014-01-21T12:00,41.0,0\n"
        "B,41.0,-100.0,,2014-01-21T12:00,-9999,0\n"
        "C,42.0,-95.0,300,2014-01-21T12:00,50.0,3\n"
        "D,43.0,-90.0,200,2014-01-21T12:00,32.0,1\n"
    )
    cols = st.parse_columns(
        "lat=LAT,lon=LON,value=TMP,station_id=STN,time=DATE,elevation=ELEV,flag=QC"
    )
    df = st.read_mapped_csv(path, cols, units="degF")
    assert list(df["station_id"]) == ["A", "D"]
    assert list(df["value"]) == pytest.approx([5.0 + 273.15, 273.15])
    c = df.attrs["counts"]
    assert (c["read"], c["missing"], c["flagged"], c["kept"]) == (4, 1, 1, 2)
    assert list(validate_obs(df).columns)[-1] == "elevation"
    path.write_text("LAT,LON,TMP\n40,-105,abc\n")
    with pytest.raises(st.StationFormatError, match=r"net.csv:2: TMP='abc'"):
        st.read_mapped_csv(path, "lat=LAT,lon=LON,value=TMP", time="2014-01-21")
    with pytest.raises(ValueError, match="lacks \\['value'\\]"):
        st.parse_columns("lat=LAT,lon=LON")
    with pytest.raises(ValueError, match="lon=LONG.*not in the file"):
        st.read_mapped_csv(path, "lat=LAT,lon=LONG,value=TMP", time="2014-01-21")


def test_window_keeps_nearest_report_per_station(tmp_path):
    df = pd.DataFrame(
        {
            "station_id": ["A", "A", "B", "C"],
            "time": pd.to_datetime(
                ["2014-01-21T11:00", "2014-01-21T12:30", "2014-01-21T14:59", "2014-01-21T16:00"]
            ),
            "lat": [40.0, 40.0, 41.0, 42.0],
            "lon": [-100.0, -100.0, -99.0, -98.0],
            "value": [1.0, 2.0, 3.0, 4.0],
            "sigma": 0.5,
        }
    )
    sel, info = select_window(df, "2014-01-21T12", "3h")
    assert list(sel["value"]) == [2.0, 3.0]
    assert (sel["time"] == pd.Timestamp("2014-01-21T12")).all()
    assert info["n_outside"] == 1 and info["n_repeats_dropped"] == 1
    with pytest.raises(ValueError, match="nearest is at 2014-01-21 16:00"):
        select_window(df.iloc[3:], "2014-01-21T12", "3h")


def test_site_table_residuals_against_samples():
    import xarray as xr

    from bayesda.outputs.sites import site_table

    lat, lon = np.array([30.0, 40.0]), np.array([-100.0, -90.0, -80.0])
    rng = np.random.default_rng(0)
    samples = 2.0 + rng.standard_normal((1, 4000, 2, 3))
    ds = xr.Dataset(
        {"anomaly": (("chain", "draw", "lat", "lon"), samples)}, coords={"lat": lat, "lon": lon}
    )
    obs = pd.DataFrame(
        {"lat": [30.0, 35.0], "lon": [-90.0, -85.0], "value": [5.0, 2.0], "sigma": 0.5}
    )
    out = site_table(obs, ds)
    # at a node the field is N(2, 1); midway between four nodes the mean of four: SD 1/2
    assert out["post_mean"].to_numpy() == pytest.approx([2.0, 2.0], abs=0.05)
    assert out["post_sd"].to_numpy() == pytest.approx([1.0, 0.5], rel=0.05)
    assert out["residual"].iloc[0] == pytest.approx(3.0, abs=0.05)
    assert out["z"].iloc[0] == pytest.approx(3.0 / np.sqrt(1.25), abs=0.05)


@pytest.mark.parametrize(
    ("reader", "line", "message"),
    [
        (
            st.read_ghcn_stations,
            "USW00023062  39.7",
            ":2: line has 17 characters, expected 37 to 85",
        ),
        (
            lambda p: st.read_ghcn_dly(p, stations=pd.DataFrame(columns=["id", "lat", "lon"])),
            "USW00023062 2014",
            ":2: line has 16 characters; a .dly record has 269: ID",
        ),
        (
            lambda p: st.read_isd_lite(
                p, stations=pd.DataFrame(columns=["id", "lat", "lon"]), station_id="1-2"
            ),
            "2014 01 01",
            ":2: line has 10 characters; an ISD-Lite line has 61",
        ),
    ],
)
def test_fixed_width_readers_name_a_short_line_and_skip_blank_ones(tmp_path, reader, line, message):
    path = tmp_path / "in.txt"
    path.write_text(f"\n{line}\n")  # a blank line first: skipped, still counted
    with pytest.raises(st.StationFormatError, match=message):
        reader(path)
