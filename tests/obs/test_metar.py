"""METAR as distributed: bulletin framing, heading groups, temperatures, dates, the reader,
and the real bulletin stream of 2019-07-01 12 UTC against MetPy's parse of it."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest

import bayesda.obs.metar as mt
from bayesda.obs.plausible import ImplausibleObservationError
from bayesda.obs.stations import StationFormatError, read_stations

REAL = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "metar_20190701_1200.txt.gz"
SOH, ETX = "\x01", "\x03"

# A bulletin stream as the feeds write it (carriage returns dropped): SOH, sequence number,
# heading, the METAR type line, reports ending in "=" over one or more lines.
STREAM = f"""{SOH}

455

SAUS70 KWBC 011200

METAR

KRCM 011155Z AUTO 00000KT 10SM CLR 21/20 A3005 RMK AO2=



{ETX}{SOH}

673

SAUS70 KWBC 011200 RRA

METAR

KIPJ 011150Z AUTO 00000KT 7SM CLR 21/21 A3002 RMK AO2 70004

     T02120212 10225 20196=

{ETX}{SOH}

147

SAHO31 MHTG 011200

METAR MHRO 011200Z 10012KT 9999 FEW020 28/25 Q1015 A2997 NOSIG=
METAR MHLC 011200Z 06002KT 9999 FEW028 BKN200 22/22 Q1011 A2986
NOSIG=
METAR HLLT NIL=
METAR MDST 011200Z 10010KT 9999 BKN018 26/24 Q1018 METAR MDPC 011200Z
     10010KT 9999 SCT020 28/23 Q1018=
METAR PTRO 011150Z 02003KT 15SM FEW016 BKN300 27/24 A2984
METAR COR EDLW 011150Z 25011KT 220V310 9999 BKN051 24/12 Q1017=

TX_OPMET

{ETX}{SOH}

281

SPUS46 KMFR 011200

MTRSXT

SPECI KSXT 011156Z AUTO 34006KT 10SM BKN038 11/10 A3012 RMK AO2

SLP162 T01060100 10144 20106 55002
{ETX}{SOH}

381

SAAF31 KWBC 011200

NIL=
{ETX}"""


def _framed(text: str):
    items = list(mt.frame_reports(text.splitlines()))
    return [r for r in items if isinstance(r, mt.Report)], [
        s for s in items if isinstance(s, mt.Stray)
    ]


def test_framing_of_a_bulletin_stream():
    reports, strays = _framed(STREAM)
    stations = [mt.parse_report(r.text).station for r in reports]
    assert stations == [
        "KRCM", "KIPJ", "MHRO", "MHLC", "HLLT", "MDST", "MDPC", "PTRO", "EDLW", "KSXT",
    ]  # fmt: skip
    by = dict(zip(stations, reports, strict=True))
    # continuation after a blank line, indented, joins the report
    assert by["KIPJ"].text.endswith("RMK AO2 70004 T02120212 10225 20196")
    assert by["KIPJ"].heading == "SAUS70 KWBC 011200 RRA" and by["KIPJ"].line == 21
    # an unindented continuation line ("NOSIG=") joins it too
    assert by["MHLC"].text.endswith("A2986 NOSIG") and by["MHLC"].terminated
    # a report inside another's line (a garbled bulletin) is cut out
    assert by["MDST"].text.endswith("Q1018") and by["MDPC"].text.startswith("METAR MDPC")
    # a report without "=" ends where the next starts, and is kept
    assert by["PTRO"].text.endswith("A2984") and not by["PTRO"].terminated
    # the SPECI bulletin types its reports; the AFOS line and TX_OPMET are no reports
    assert by["KSXT"].kind == "SPECI" and by["KSXT"].text.endswith("55002")
    assert [s.text for s in strays] == ["TX_OPMET", "MTRSXT"]


def test_one_report_a_line_without_framing():
    text = (
        "# hand-made\nMETAR KDEN 211253Z 19010KT 10SM M02/M09 A3012\n"
        "KSFO 211256Z 29012KT 10SM FEW008 12/09 A3016\n"
    )
    reports, strays = _framed(text)
    assert [r.line for r in reports] == [2, 3] and not strays


@pytest.mark.parametrize(
    "text, station, flags",
    [
        ("METAR COR EDLW 011150Z 25011KT 9999 24/12 Q1017", "EDLW", dict(cor=True)),
        ("KAUS 011153Z COR 00000KT 10SM 24/22 A3003", "KAUS", dict(cor=True)),
        ("METAR KRCM 011155Z AUTO 00000KT 10SM CLR 21/20 A3005", "KRCM", dict(auto=True)),
        ("METAR HLLT NIL", "HLLT", dict(nil=True)),
        ("METAR MSSS 011150Z NIL", "MSSS", dict(nil=True)),
        ("CWDO RMK NIL", "CWDO", dict(nil=True)),
        ("METAR MYGF 011200 29006KT 9999 28/25 A3006", "MYGF", {}),  # time without its Z
    ],
    ids=["wmo-cor", "us-cor", "auto", "nil", "nil-with-time", "canada-nil", "time-no-z"],
)
def test_heading_groups(text, station, flags):
    p = mt.parse_report(text)
    assert p.station == station
    for key in ("nil", "auto", "cor"):
        assert getattr(p, key) == flags.get(key, False), key


@pytest.mark.parametrize(
    "text, match",
    [("METAR KDEN 2112Z 19010KT M02/M09", "time group '2112Z'"), ("METAR 12345", "station")],
)
def test_broken_heading_groups_are_named(text, match):
    with pytest.raises(mt.MetarError, match=match):
        mt.parse_report(text)


WHEN = pd.Timestamp("2019-07-01T12")


@pytest.mark.parametrize(
    "body, degc, tenths",
    [
        ("KIPJ 011150Z AUTO 00000KT 7SM CLR 21/21 A3002 RMK AO2 T02120212 10225", 21.2, True),
        ("KDEN 011253Z 19010KT 10SM FEW100 M02/M09 A3012", -2.0, False),
        ("KDEN 011253Z 19010KT 10SM M02/M09 A3012 RMK AO2 T10221089", -2.2, True),
        ("CXHM 011200Z AUTO 29001KT 91/ RMK AO1 T0907 51017", 90.7, True),  # no dew point
        ("NCPK 011200Z AUTO 34002KT //// ////// ///// Q1009", None, False),
        ("KXXX 011155Z AUTO 00000KT 2 1/2SM BR CLR A3005 RMK AO2", None, False),
        ("KXXX 011155Z AUTO 00000KT 10SM CLR //28 A3005", None, False),
        ("VILH 011230Z 30020G30KT 6000 SCT070 23/-1 Q1016", 23.0, False),
    ],
    ids=["tenths", "minus", "tenths-win", "tenths-no-dew", "missing", "2-1/2SM", "tt-missing",
         "odd-dew"],
)  # fmt: skip
def test_temperatures(body, degc, tenths):
    value, from_remark = mt.decode_temperature(body, WHEN)
    assert value == (pytest.approx(degc) if degc is not None else None)
    assert from_remark is tenths


def test_a_broken_temperature_group_is_named():
    with pytest.raises(mt.MetarError, match="temperature group '2A/10'"):
        mt.decode_temperature("KXXX 011155Z AUTO 00000KT 10SM CLR 2A/10 A3005", WHEN)


@pytest.mark.parametrize(
    "day, hhmm, analysis, expected",
    [
        (1, (11, 55), "2019-07-01T12", "2019-07-01T11:55"),
        (30, (23, 53), "2019-07-01T00", "2019-06-30T23:53"),  # the evening before the 1st
        (31, (23, 53), "2019-02-01T00", "2019-01-31T23:53"),  # 31 Feb does not exist
        (31, (23, 50), "2020-01-01T00", "2019-12-31T23:50"),  # and the year before
        (1, (0, 10), "2019-06-30T23", "2019-07-01T00:10"),  # the next month's first
        (17, (12, 0), "2019-07-01T12", "2019-06-17T12:00"),  # nearest, not in --time's month
    ],
)
def test_report_dates_roll_to_the_month_nearest_the_analysis(day, hhmm, analysis, expected):
    assert mt.report_time(day, *hhmm, analysis) == pd.Timestamp(expected)


def test_an_aware_analysis_time_is_read_in_utc():
    t = pd.Timestamp("2019-07-01T02:00", tz="Europe/Berlin")  # 00 UTC
    assert mt.report_time(30, 23, 53, t) == pd.Timestamp("2019-06-30T23:53")


STATIONS = pd.DataFrame(
    {
        "id": ["KAAA", "KBBB", "KCCC", "KDDD"],
        "lat": [40.0, 41.0, 42.0, 43.0],
        "lon": [-100.0, -101.0, -102.0, -103.0],
        "elevation": [1000.0, 1100.0, 1200.0, np.nan],
    }
)


def _write(tmp_path, lines, name="m.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reader_columns_counts_duplicates_and_sigma(tmp_path):
    lines = [
        "METAR KAAA 302353Z 18010KT 10SM CLR 21/10 A3000 RMK AO2 T02110100=",
        "METAR KAAA 010053Z 18010KT 10SM CLR 20/10 A3000=",
        "METAR KBBB 010000Z 18010KT 10SM CLR 15/10 A3000=",
        "METAR COR KBBB 010000Z 18010KT 10SM CLR 16/10 A3000=",  # the correction wins
        "METAR KBBB 010000Z 18010KT 10SM CLR 14/10 A3000=",  # though later in the file
        "METAR KCCC 010000Z 18010KT 10SM CLR ///// A3000=",
        "METAR KDDD NIL=",
        "METAR ZZZZ 010000Z 18010KT 10SM CLR 12/10 A3000=",  # no source knows ZZZZ
    ]
    df = mt.read_metar(
        _write(tmp_path, lines), time="2019-07-01T00", stations=STATIONS, databases=False
    )
    assert list(df.columns) == [
        "station_id", "time", "lat", "lon", "value", "sigma", "elevation",
        "line", "kind", "auto", "cor", "tenths", "position",
    ]  # fmt: skip
    assert list(df["station_id"]) == ["KAAA", "KAAA", "KBBB"]
    assert list(df["time"]) == [
        pd.Timestamp("2019-06-30T23:53"), pd.Timestamp("2019-07-01T00:53"),
        pd.Timestamp("2019-07-01T00:00"),
    ]  # fmt: skip
    assert df["value"].to_numpy() - 273.15 == pytest.approx([21.1, 20.0, 16.0])
    assert list(df["line"]) == [1, 2, 4] and list(df["cor"]) == [False, False, True]
    # a whole-degree report carries its rounding error: sqrt(0.5^2 + 1/12)
    assert df["sigma"].to_numpy() == pytest.approx([0.5] + [np.sqrt(0.25 + 1 / 12)] * 2)
    assert df["elevation"].iloc[0] == 1000.0 and set(df["position"]) == {"user"}
    c = df.attrs["counts"]
    assert (c["read"], c["nil"], c["missing"], c["duplicate"], c["no_station"]) == (8, 1, 2, 2, 1)
    assert c["read"] == (
        c["missing"] + c["unreadable"] + c["duplicate"] + c["implausible"] + c["no_station"]
        + c["kept"]
    )  # fmt: skip
    assert df.attrs["details"]["no_station"] == ["ZZZZ"]
    assert df.attrs["details"]["stations"] == {"user": 2, "unresolved": 1}


def test_the_databases_place_stations_without_a_table(tmp_path):
    lines = [
        "METAR KDEN 011253Z 19010KT 10SM FEW100 M02/M09 A3012=",  # airportsdata
        "METAR CWDO 011200Z AUTO 05/04 RMK AO1 T00500041=",  # NOAA's station list only
        "METAR KDEN 011153Z 19010KT 10SM FEW100 M01/M09 A3012=",
    ]
    path = _write(tmp_path, lines)
    df = mt.read_metar(path, time="2019-07-01T12")
    den = df[df["station_id"] == "KDEN"].iloc[0]
    assert den["lat"] == pytest.approx(39.86, abs=0.02) and den["lon"] == pytest.approx(
        -104.67, abs=0.02
    )
    assert den["elevation"] == pytest.approx(5431 * 0.3048, abs=30)  # 5,431 ft
    assert den["position"] == "airportsdata"
    cwdo = df[df["station_id"] == "CWDO"].iloc[0]
    assert (cwdo["lat"], cwdo["lon"]) == pytest.approx((49 + 41 / 60, -(54 + 48 / 60)))
    assert cwdo["position"] == "nsd_cccc" and cwdo["elevation"] == 92.0
    # the user's table wins where given
    table = pd.DataFrame({"id": ["KDEN"], "lat": [40.0], "lon": [-105.0]})
    df = mt.read_metar(path, time="2019-07-01T12", stations=table)
    assert df.loc[df["station_id"] == "KDEN", "lat"].tolist() == [40.0, 40.0]
    assert df.attrs["details"]["stations"] == {"user": 1, "nsd_cccc": 1, "unresolved": 0}


def _many(n=150, value="21/20", station="K{:03d}"):
    return [
        f"METAR {station.format(i)} 011155Z AUTO 00000KT 10SM CLR {value} A3005=" for i in range(n)
    ]


def _table(n=150):
    return pd.DataFrame(
        {"id": [f"K{i:03d}" for i in range(n)], "lat": 40.0, "lon": np.linspace(-120, -80, n)}
    )


def test_one_impossible_report_among_many_is_dropped_and_listed(tmp_path):
    lines = _many()
    lines[37] = "METAR K037 011200Z AUTO 29001KT 91/ RMK AO1 T0907 51017="
    df = mt.read_metar(
        _write(tmp_path, lines), time="2019-07-01T12", stations=_table(), databases=False
    )
    assert len(df) == 149 and "K037" not in set(df["station_id"])
    assert df.attrs["counts"]["implausible"] == 1
    (bad,) = df.attrs["details"]["implausible"]
    assert (bad["station"], bad["line"], bad["value_degC"]) == ("K037", 38, 90.7)
    assert "T0907" in bad["text"]


def test_mostly_implausible_values_are_refused_with_the_units_hint(tmp_path):
    """Fahrenheit temperatures in the TT group: every value beyond 340 K."""
    path = _write(tmp_path, _many(value="95/60"))
    with pytest.raises(ImplausibleObservationError, match="150 of 150") as err:
        mt.read_metar(path, time="2019-07-01T12", stations=_table(), databases=False)
    assert "station K000, line 1" in str(err.value) and str(path) in str(err.value)
    assert "look like absolute temperatures in degF, not degC as the format prescribes" in str(
        err.value
    )


def test_one_unreadable_report_among_many_is_dropped_and_listed(tmp_path):
    lines = _many()
    lines[5] = "METAR K005 011155Z AUTO 00000KT 10SM CLR 2A/10 A3005="
    df = mt.read_metar(
        _write(tmp_path, lines), time="2019-07-01T12", stations=_table(), databases=False
    )
    assert len(df) == 149 and df.attrs["counts"]["unreadable"] == 1
    (bad,) = df.attrs["details"]["unreadable"]
    assert bad["line"] == 6 and "'2A/10'" in bad["error"]


@pytest.mark.parametrize(
    "line, match",
    [
        ("KDEN 211253 19010KT 2A/M09", r"m\.txt:1: temperature group '2A/M09' .* 'KDEN 211253"),
        ("KDEN 2112Z 19010KT M02/M09", r"m\.txt:1: time group '2112Z' is not DDHHMMZ"),
        ("lat,lon,value", r"m\.txt: no METAR or SPECI report found"),
    ],
)
def test_a_file_of_unreadable_reports_is_refused_naming_file_line_and_text(tmp_path, line, match):
    with pytest.raises(mt.MetarError, match=match):
        mt.read_metar(_write(tmp_path, [line]), time="2014-01-21T12", databases=False)
    with pytest.raises(StationFormatError, match=match):  # through the station readers
        read_stations(_write(tmp_path, [line]), "metar", time="2014-01-21T12")


def test_read_stations_needs_the_analysis_time(tmp_path):
    with pytest.raises(ValueError, match="give the analysis time"):
        read_stations(_write(tmp_path, _many(3)), "metar")


# ------------------------------------------------------------------------------------
# The real file, as distributed
# ------------------------------------------------------------------------------------

# MetPy 1.7.1's parse of the same file (its reference counts: tests/io/test_metar.py,
# air_temperature 8779), measured with
#   TEST_DATA_DIR=<MetPy staticdata> python -c "from metpy.io import parse_metar_file; \
#     df = parse_metar_file('metar_20190701_1200.txt', year=2019, month=7)"
# with MetPy's station tables sfstns.tbl, master.txt and stations.txt (airport-codes.csv,
# not in the offline copy, held one dummy row). "Usable": a temperature, a position, inside
# the ncep-air grid (15..75 N, 160..30 W) and within +-3 h of 12 UTC.
METPY_STATION_TIMES_WITH_T = 8779
METPY_STATIONS_WITH_T = 4898
METPY_USABLE_STATIONS = 2838
T12 = pd.Timestamp("2019-07-01T12")


@pytest.fixture(scope="module")
def real():
    return mt.read_metar(REAL, time=T12)


def test_real_stream_framing_counts(real):
    c = real.attrs["counts"]
    # 20,246 reports in 2,625 bulletins; 2,282 NIL; 1,183 lines that are no METAR (Canada's
    # SA format, AFOS product lines, TX_OPMET, free text); 118 reports without "="
    assert (c["read"], c["nil"], c["not_report"], c["unterminated"]) == (20246, 2282, 1183, 118)
    assert c["unreadable"] == 0 and c["implausible"] == 1
    assert c["read"] == (
        c["missing"] + c["unreadable"] + c["duplicate"] + c["implausible"] + c["no_station"]
        + c["kept"]
    )  # fmt: skip
    (bad,) = real.attrs["details"]["implausible"]  # 90.7 degC
    assert (bad["station"], bad["line"], bad["value_degC"]) == ("CXHM", 36723, 90.7)


def test_real_stream_against_metpy(real):
    """Every station and time MetPy reads with a temperature, bayesda reads (8,779); and 136
    more that MetPy's grammar rejects though they are valid FM 15 (``////SM``, ``06///``:
    Canadian automatic stations). Temperatures agree: 5,497 of 5,497 whole-degree reports
    equal MetPy's, tenths within 0.5 K of its whole degrees but in 9 reports whose two
    groups disagree in the source (KBYY ``23/..`` with ``T0241``)."""
    kept = real.attrs["counts"]["kept"] + real.attrs["counts"]["no_station"]
    assert kept == pytest.approx(8915, rel=0.002)
    assert 1.0 <= kept / METPY_STATION_TIMES_WITH_T <= 1.02
    # the same count before positions, by station: 4,973 against MetPy's 4,898
    n_stations = real["station_id"].nunique() + real.attrs["details"]["stations"]["unresolved"]
    assert 1.0 <= n_stations / METPY_STATIONS_WITH_T <= 1.02


def test_real_stream_stations_and_positions(real):
    """Without a station table: airportsdata places 4,398 of the 4,972 stations with a
    temperature, NOAA's list 317 more; 257 (5%) are listed as unresolved. Inside the model
    grid and window that is 2,705 stations against MetPy's 2,838 with its own tables: its
    tables place 163 that neither database knows (most of them Canada's automatic stations);
    bayesda reads 30 that MetPy does not."""
    src = real.attrs["details"]["stations"]
    assert src["airportsdata"] == pytest.approx(4398, rel=0.02)
    assert src["unresolved"] / sum(src.values()) < 0.06
    assert len(real.attrs["details"]["no_station"]) == src["unresolved"]
    inside = (
        real["lat"].between(15, 75)
        & real["lon"].between(-160, -30)
        & ((real["time"] - T12).abs() <= pd.Timedelta("3h"))
    )
    usable = real.loc[inside, "station_id"].nunique()
    assert 0.95 <= usable / METPY_USABLE_STATIONS <= 1.01
    assert set(real["position"]) == {"airportsdata", "nsd_cccc"}
    assert real["value"].min() - 273.15 == pytest.approx(-57.0)  # the South Pole (NZSP) in July
    assert real["value"].max() - 273.15 == pytest.approx(47.0)  # Iran (OIMT, OIAW)
