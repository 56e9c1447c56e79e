"""Readers for real station formats: GHCN-Daily, ISD-lite, METAR and mapped CSV columns.

Every reader returns the standard observation table of :mod:`bayesda.obs.table` with
*absolute* temperatures in K (``df.attrs["kind"] == "absolute"``): columns ``station_id``,
``time``, ``lat``, ``lon``, ``value``, ``sigma`` and ``elevation`` (m, NaN when unknown).
Turn it into anomalies with :func:`bayesda.obs.table.read_obs` (``kind="absolute"`` and the
model's climatology). Units go through :mod:`bayesda.geo.units`.

Missing values (the format's missing code) and values with a quality flag are dropped and
*counted*; the counts are in ``df.attrs["counts"]`` (``{"read", "missing", "flagged",
"no_station", "kept"}``) so that a run can report them. A malformed line raises
:class:`StationFormatError` naming the file, the line number and the offending text; a
reader returns either the whole table or nothing.

Formats (the public specifications the parsers follow):

* ``ghcn-dly``: GHCN-Daily ``.dly`` fixed width (NOAA NCEI, ``ghcnd readme.txt`` section
  III): ``ID`` cols 1-11, ``YEAR`` 12-15, ``MONTH`` 16-17, ``ELEMENT`` 18-21, then 31 groups
  of ``VALUE`` (5 chars), ``MFLAG``, ``QFLAG``, ``SFLAG``; temperatures in tenths of degC,
  missing ``-9999``; a non-blank ``QFLAG`` means the value failed a quality check.
  Coordinates come from ``ghcnd-stations.txt`` (:func:`read_ghcn_stations`: ``ID`` 1-11,
  ``LATITUDE`` 13-20, ``LONGITUDE`` 22-30, ``ELEVATION`` 32-37, missing ``-999.9``).
* ``ghcn-csv``: the GHCN-Daily by-station CSV (``by_station/ID.csv.gz``, no header):
  ``ID, YYYYMMDD, ELEMENT, DATA_VALUE, M-FLAG, Q-FLAG, S-FLAG, OBS-TIME``.
* ``isd-lite``: NOAA ISD-Lite (``isd-lite-format.txt``): year 1-4, month 6-7, day 9-10,
  hour 12-13, air temperature 14-19 (degC x 10), dew point 20-24, ... missing ``-9999``;
  one station per file (``USAF-WBAN-YEAR``); coordinates from ``isd-history.csv``
  (:func:`read_isd_history`) or a stations table.
* ``metar``: METAR/SPECI reports (WMO FM 15/16), one a line or a raw WMO bulletin stream
  (:mod:`bayesda.obs.metar`: framing, python-metar decoding, the remark's tenths group
  over the whole-degree one). The reports carry day and time only: each is dated in the
  month nearest the analysis time. Coordinates come from a stations table keyed by ICAO
  id when given, else from the maintained databases of :mod:`bayesda.obs.stationdb`.
* ``csv``: any CSV through a column mapping ``{"lat": "LAT", "lon": "LON", "value": "TMP",
  ...}`` (:func:`parse_columns` parses ``lat=LAT,lon=LON,value=TMP``), with optional
  missing codes and a flag column.

A stations table (``stations=``) is a DataFrame or CSV with columns ``id``, ``lat``, ``lon``
and optionally ``elevation``. The METAR reader's counts and its table have more (see
:func:`bayesda.obs.metar.read_metar`).
"""

from __future__ import annotations

import gzip
import os
import pathlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

import bayesda.obs.metar as _metar
from bayesda.geo.units import canonical_units, difference_to_kelvin, to_kelvin

__all__ = [
    "FORMATS",
    "StationFormatError",
    "parse_columns",
    "read_ghcn_dly",
    "read_ghcn_csv",
    "read_ghcn_stations",
    "read_isd_history",
    "read_isd_lite",
    "read_mapped_csv",
    "read_metar",
    "read_stations",
    "reader_line",
]

FORMATS = ("table", "ghcn-dly", "ghcn-csv", "isd-lite", "metar", "csv")
DEFAULT_SIGMA = 0.5
"""Default observation error SD (K) of a station temperature: instrument and siting."""
GHCN_MISSING = -9999
ISD_MISSING = -9999
MAPPED_KEYS = ("lat", "lon", "value", "sigma", "station_id", "time", "elevation", "flag")


class StationFormatError(ValueError):
    """A line of a station file does not follow its format (the message names it)."""


def _fixed_width(path, width: int, needs: str):
    """``(line number, line)`` of the non-blank lines of a fixed-width file; a line shorter
    than ``width`` raises :class:`StationFormatError` naming it (``needs`` ends the message)."""
    for lineno, line in enumerate(_open_text(path), 1):
        if not line.strip():
            continue
        if len(line) < width:
            raise StationFormatError(f"{path}:{lineno}: line has {len(line)} characters{needs}")
        yield lineno, line


def _open_text(path) -> list[str]:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"station file {str(path)!r} does not exist")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("ascii", errors="replace").splitlines()


def _int(text: str, path, lineno: int, what: str, cols: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise StationFormatError(
            f"{path}:{lineno}: {what} (columns {cols}) is {text!r}, not an integer"
        ) from None


def _float(text: str, path, lineno: int, what: str, cols: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise StationFormatError(
            f"{path}:{lineno}: {what} (columns {cols}) is {text!r}, not a number"
        ) from None


def _station_table(stations) -> pd.DataFrame:
    """``id -> lat, lon, elevation`` from a DataFrame or CSV path (None: empty)."""
    if stations is None:
        return pd.DataFrame(columns=["lat", "lon", "elevation"], index=pd.Index([], name="id"))
    if isinstance(stations, str | os.PathLike):
        path = pathlib.Path(stations)
        if not path.is_file():
            raise FileNotFoundError(f"stations file {str(path)!r} does not exist")
        stations = pd.read_csv(path, comment="#", dtype={"id": str})
    df = pd.DataFrame(stations).copy()
    missing = [c for c in ("id", "lat", "lon") if c not in df.columns]
    if missing:
        raise ValueError(f"stations table lacks column(s) {missing}; has {list(df.columns)}")
    if "elevation" not in df.columns:
        df["elevation"] = np.nan
    df["id"] = df["id"].astype(str).str.strip()
    return df.set_index("id")[["lat", "lon", "elevation"]].astype(np.float64)


def _finish(
    rows: dict,
    stations: pd.DataFrame,
    counts: dict,
    fmt: str,
    units: str,
    sigma: float,
    source: str,
) -> pd.DataFrame:
    """Attach coordinates, convert to K and build the standard table."""
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame({k: [] for k in ("station_id", "time", "value")})
    meta = stations.reindex(df["station_id"].astype(str).to_numpy())
    known = meta["lat"].notna().to_numpy()
    if "lat" in df.columns:  # the format carries coordinates itself
        known = np.ones(len(df), bool)
    counts["no_station"] = int((~known).sum())
    df = df[known].reset_index(drop=True)
    meta = meta[known].reset_index(drop=True)
    for col in ("lat", "lon", "elevation"):
        if col not in df.columns:
            df[col] = meta[col].to_numpy()
    out = pd.DataFrame(
        {
            "station_id": df["station_id"].astype(str).to_numpy(),
            "time": pd.to_datetime(df["time"]).to_numpy("datetime64[ns]"),
            "lat": df["lat"].to_numpy(np.float64),
            "lon": df["lon"].to_numpy(np.float64),
            "value": to_kelvin(df["value"].to_numpy(np.float64), units),
            "sigma": np.full(len(df), float(sigma)),
            "elevation": df["elevation"].to_numpy(np.float64),
        }
    )
    counts["kept"] = len(out)
    out.attrs = {
        "kind": "absolute",
        "units": "K",
        "format": fmt,
        "source": source,
        "counts": dict(counts),
    }
    return out


def read_ghcn_stations(path) -> pd.DataFrame:
    """``ghcnd-stations.txt`` (fixed width) as a stations table (id, lat, lon, elevation)."""
    rows = []
    for lineno, line in _fixed_width(
        path, 37, ", expected at least 37 (ID, LATITUDE, LONGITUDE, ELEVATION)"
    ):
        elev = _float(line[31:37], path, lineno, "ELEVATION", "32-37")
        rows.append(
            {
                "id": line[0:11].strip(),
                "lat": _float(line[12:20], path, lineno, "LATITUDE", "13-20"),
                "lon": _float(line[21:30], path, lineno, "LONGITUDE", "22-30"),
                "elevation": np.nan if elev <= -999.0 else elev,
            }
        )
    return pd.DataFrame(rows, columns=["id", "lat", "lon", "elevation"])


def read_isd_history(path) -> pd.DataFrame:
    """NOAA ``isd-history.csv`` as a stations table; ids are ``USAF-WBAN``."""
    df = pd.read_csv(path, dtype=str)
    need = ["USAF", "WBAN", "LAT", "LON"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: isd-history lacks column(s) {missing}; has {list(df.columns)}")
    elev_col = next((c for c in df.columns if c.startswith("ELEV")), None)
    out = pd.DataFrame(
        {
            "id": df["USAF"].str.strip() + "-" + df["WBAN"].str.strip(),
            "lat": pd.to_numeric(df["LAT"], errors="coerce"),
            "lon": pd.to_numeric(df["LON"], errors="coerce"),
            "elevation": pd.to_numeric(df[elev_col], errors="coerce") if elev_col else np.nan,
        }
    )
    out.loc[out["elevation"] <= -999, "elevation"] = np.nan
    return out.dropna(subset=["lat", "lon"]).reset_index(drop=True)


def read_ghcn_dly(
    path, *, stations, element: str = "TAVG", hour: int = 12, sigma: float = DEFAULT_SIGMA
) -> pd.DataFrame:
    """Read a GHCN-Daily ``.dly`` file (see the module docstring for the layout).

    Args:
      path: the ``.dly`` file (one or more stations, any elements; others are skipped).
      stations: stations table (``read_ghcn_stations`` output, a DataFrame or a CSV path).
      element: ``TAVG``, ``TMAX`` or ``TMIN`` (tenths of degC).
      hour: the UTC hour given to each daily value as its ``time`` (a daily value has no
        instant; pick the analysis hour it should count for).
      sigma: observation error SD, K.

    Returns:
      The standard table in K (absolute), one row per valid day; counts in
      ``attrs["counts"]``.

    Raises:
      StationFormatError: a short line, or a non-numeric YEAR/MONTH/VALUE (names the line).
    """
    st = _station_table(stations)
    counts = {"read": 0, "missing": 0, "flagged": 0}
    rows = {"station_id": [], "time": [], "value": []}
    for lineno, line in _fixed_width(
        path, 21, "; a .dly record has ID (1-11), YEAR, MONTH, ELEMENT and 31 days"
    ):
        if line[17:21] != element:
            continue
        year = _int(line[11:15], path, lineno, "YEAR", "12-15")
        month = _int(line[15:17], path, lineno, "MONTH", "16-17")
        ndays = pd.Period(year=year, month=month, freq="M").days_in_month
        line = line.ljust(269)
        for day in range(1, ndays + 1):
            start = 21 + (day - 1) * 8
            text, qflag = line[start : start + 5], line[start + 6]
            counts["read"] += 1
            if not text.strip():
                counts["missing"] += 1
                continue
            v = _int(text, path, lineno, f"VALUE{day}", f"{start + 1}-{start + 5}")
            if v == GHCN_MISSING:
                counts["missing"] += 1
            elif qflag.strip():
                counts["flagged"] += 1
            else:
                rows["station_id"].append(line[0:11].strip())
                rows["time"].append(pd.Timestamp(year, month, day, hour))
                rows["value"].append(v)
    return _finish(rows, st, counts, "ghcn-dly", "0.1degC", sigma, str(path))


def read_ghcn_csv(
    path, *, stations, element: str = "TAVG", hour: int | None = None, sigma: float = DEFAULT_SIGMA
) -> pd.DataFrame:
    """Read the GHCN-Daily by-station CSV (no header; see the module docstring).

    ``hour`` sets each value's UTC hour; None uses ``OBS-TIME`` (HHMM) when present, else 12.
    A non-blank ``Q-FLAG`` drops the value (counted as flagged).
    """
    st = _station_table(stations)
    counts = {"read": 0, "missing": 0, "flagged": 0}
    rows = {"station_id": [], "time": [], "value": []}
    for lineno, line in enumerate(_open_text(path), 1):
        if not line.strip():
            continue
        f = line.split(",")
        if len(f) < 4:
            raise StationFormatError(
                f"{path}:{lineno}: {len(f)} fields in {line!r}; expected "
                "ID,YYYYMMDD,ELEMENT,DATA_VALUE,M-FLAG,Q-FLAG,S-FLAG,OBS-TIME"
            )
        if f[2].strip() != element:
            continue
        counts["read"] += 1
        try:
            day = pd.Timestamp(f[1].strip())
        except ValueError:
            raise StationFormatError(f"{path}:{lineno}: date {f[1]!r} is not YYYYMMDD") from None
        v = _int(f[3].strip(), path, lineno, "DATA_VALUE", "field 4")
        qflag = f[5].strip() if len(f) > 5 else ""
        if v == GHCN_MISSING:
            counts["missing"] += 1
            continue
        if qflag:
            counts["flagged"] += 1
            continue
        h = hour
        if h is None:
            obs_time = f[7].strip() if len(f) > 7 else ""
            h = int(obs_time[:-2] or 0) if obs_time.isdigit() else 12
        rows["station_id"].append(f[0].strip())
        rows["time"].append(day + pd.Timedelta(hours=h))
        rows["value"].append(v)
    return _finish(rows, st, counts, "ghcn-csv", "0.1degC", sigma, str(path))


def read_isd_lite(
    path, *, stations, station_id: str | None = None, sigma: float = DEFAULT_SIGMA
) -> pd.DataFrame:
    """Read an ISD-Lite file (hourly; air temperature in degC x 10, missing -9999).

    Args:
      path: the file, e.g. ``724940-23234-2014`` or ``.gz``.
      stations: stations table keyed ``USAF-WBAN`` (:func:`read_isd_history`).
      station_id: the station's ``USAF-WBAN``; default from the file name.
      sigma: observation error SD, K.
    """
    st = _station_table(stations)
    if station_id is None:
        parts = pathlib.Path(path).name.split(".")[0].split("-")
        if len(parts) < 2:
            raise ValueError(
                f"cannot tell the station from the file name {str(path)!r}; "
                "pass station_id='USAF-WBAN'"
            )
        station_id = f"{parts[0]}-{parts[1]}"
    counts = {"read": 0, "missing": 0, "flagged": 0}
    rows = {"station_id": [], "time": [], "value": []}
    for lineno, line in _fixed_width(
        path, 19, "; ISD-Lite needs date, hour and temperature (1-19)"
    ):
        y = _int(line[0:4], path, lineno, "year", "1-4")
        mo = _int(line[5:7], path, lineno, "month", "6-7")
        d = _int(line[8:10], path, lineno, "day", "9-10")
        h = _int(line[11:13], path, lineno, "hour", "12-13")
        v = _int(line[13:19], path, lineno, "air temperature", "14-19")
        counts["read"] += 1
        if v == ISD_MISSING:
            counts["missing"] += 1
            continue
        rows["station_id"].append(station_id)
        rows["time"].append(pd.Timestamp(y, mo, d, h))
        rows["value"].append(v)
    return _finish(rows, st, counts, "isd-lite", "0.1degC", sigma, str(path))


def read_metar(
    path, *, time, stations=None, sigma: float = DEFAULT_SIGMA, databases: bool = True
) -> pd.DataFrame:
    """Read METAR/SPECI reports, as a list or a raw WMO bulletin stream.

    See :func:`bayesda.obs.metar.read_metar` (framing, decoding, dates nearest ``time``,
    positions from ``stations`` and then the maintained station databases); ``stations``
    may be a CSV path here. Its :class:`bayesda.obs.metar.MetarError` is raised as a
    :class:`StationFormatError`.
    """
    try:
        return _metar.read_metar(
            path, time=time, stations=_station_table(stations), sigma=sigma, databases=databases
        )
    except _metar.MetarError as err:
        raise StationFormatError(str(err)) from err


def parse_columns(spec: str) -> dict:
    """``"lat=LAT,lon=LON,value=TMP"`` -> ``{"lat": "LAT", ...}`` (keys checked).

    Raises:
      ValueError: an item without ``=``, an unknown key, or a missing lat/lon/value.
    """
    mapping = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if "=" not in item:
            raise ValueError(f"column mapping item {item!r} is not KEY=COLUMN (in {spec!r})")
        key, col = (s.strip() for s in item.split("=", 1))
        if key not in MAPPED_KEYS:
            raise ValueError(f"column mapping key {key!r} is not one of {MAPPED_KEYS}")
        mapping[key] = col
    missing = [k for k in ("lat", "lon", "value") if k not in mapping]
    if missing:
        raise ValueError(f"column mapping {spec!r} lacks {missing}")
    return mapping


def read_mapped_csv(
    path,
    columns: dict | str,
    *,
    units: str = "degC",
    missing: Iterable = (-9999, -999.9, 9999, 999.9),
    good_flags: Iterable[str] = ("", "0", "1", "5", "A", "C"),
    time=None,
    sigma: float = DEFAULT_SIGMA,
) -> pd.DataFrame:
    """Read any CSV through a column mapping.

    Args:
      path: the CSV file (``#`` comments allowed).
      columns: ``{"lat": "LAT", "lon": "LON", "value": "TMP", ...}`` or its string form
        (:func:`parse_columns`); keys ``lat, lon, value`` required, ``sigma, station_id,
        time, elevation, flag`` optional.
      units: units of ``value`` (and ``sigma``): any :mod:`bayesda.geo.units` spelling.
      missing: values of ``value`` that mean "missing" (also empty cells).
      good_flags: values of the ``flag`` column that mean "passed" (ISD's ``0 1 5 A C``
        and blank by default); any other flag drops the row (counted).
      time: the time of every row when there is no time column.
      sigma: observation error SD in ``units`` when there is no sigma column.
    """
    mapping = parse_columns(columns) if isinstance(columns, str) else dict(columns)
    units = canonical_units(units)
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"observation file {str(path)!r} does not exist")
    raw = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    absent = [f"{k}={c}" for k, c in mapping.items() if c not in raw.columns]
    if absent:
        raise ValueError(f"{path}: column(s) {absent} not in the file; it has {list(raw.columns)}")
    counts = {"read": len(raw), "missing": 0, "flagged": 0}
    miss_set = {float(m) for m in missing}
    value_txt = raw[mapping["value"]].str.strip()
    is_missing = value_txt.eq("") | value_txt.str.upper().isin(["NA", "NAN", "M"])
    keep = ~is_missing.to_numpy()
    vals = np.full(len(raw), np.nan)
    for k in np.flatnonzero(keep):
        try:
            vals[k] = float(value_txt.iloc[k])
        except ValueError:
            raise StationFormatError(
                f"{path}:{k + 2}: {mapping['value']}={value_txt.iloc[k]!r} is not a number "
                "(data line numbers count the header as line 1)"
            ) from None
    is_code = keep & np.isin(vals, list(miss_set))
    counts["missing"] = int((~keep).sum() + is_code.sum())
    keep &= ~is_code
    if "flag" in mapping:
        flags = raw[mapping["flag"]].str.strip()
        bad = keep & ~flags.isin([str(g) for g in good_flags]).to_numpy()
        counts["flagged"] = int(bad.sum())
        keep &= ~bad
    sub = raw[keep]
    rows = {"value": vals[keep]}
    for key in ("lat", "lon", "elevation", "sigma"):
        if key in mapping:
            txt = sub[mapping[key]].str.strip()
            num = pd.to_numeric(txt, errors="coerce").to_numpy(np.float64)
            bad = np.isnan(num) & (txt != "").to_numpy() if key == "elevation" else np.isnan(num)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise StationFormatError(
                    f"{path}:{sub.index[k] + 2}: {mapping[key]}={txt.iloc[k]!r} is not a number"
                )
            rows[key] = num
    rows["station_id"] = (
        sub[mapping["station_id"]].to_numpy()
        if "station_id" in mapping
        else [f"R{i:05d}" for i in sub.index]
    )
    if "time" in mapping:
        try:
            rows["time"] = pd.to_datetime(sub[mapping["time"]]).to_numpy()
        except (TypeError, ValueError) as err:
            raise StationFormatError(f"{path}: column {mapping['time']!r}: {err}") from None
    elif time is not None:
        rows["time"] = np.full(len(sub), np.datetime64(pd.Timestamp(time), "ns"))
    else:
        raise ValueError(f"{path}: no time column in the mapping and no time given")
    sig = (
        difference_to_kelvin(rows.pop("sigma"), units)
        if "sigma" in rows
        else np.full(len(sub), float(difference_to_kelvin(sigma, units)))
    )
    out = _finish(rows, _station_table(None), counts, "csv", units, 1.0, str(path))
    out["sigma"] = sig
    return out


def read_stations(
    path, fmt: str, *, columns=None, stations=None, units: str | None = None, time=None, **kw
) -> pd.DataFrame:
    """Dispatch to the reader of ``fmt`` (one of :data:`FORMATS` except ``"table"``).

    ``time`` is used by ``metar`` (the analysis time its reports are dated by) and ``csv``
    (rows without a time).
    """
    if fmt == "ghcn-dly":
        return read_ghcn_dly(path, stations=stations, **kw)
    if fmt == "ghcn-csv":
        return read_ghcn_csv(path, stations=stations, **kw)
    if fmt == "isd-lite":
        return read_isd_lite(path, stations=stations, **kw)
    if fmt == "metar":
        if time is None:
            raise ValueError(
                "METAR reports carry day and time only: give the analysis time "
                "(each report is dated in the month nearest it)"
            )
        return read_metar(path, time=time, stations=stations, **kw)
    if fmt == "csv":
        if columns is None:
            raise ValueError(
                "format 'csv' needs a column mapping, e.g. --columns lat=LAT,lon=LON,value=TMP"
            )
        return read_mapped_csv(path, columns, units=units or "degC", time=time, **kw)
    raise ValueError(f"format {fmt!r} is not one of {FORMATS[1:]}")


def counts_line(df: pd.DataFrame) -> str:
    """A one-line summary of a reader's counts for logs."""
    c = dict(df.attrs.get("counts", {}))
    c.setdefault("kept", len(df))
    return reader_line({"format": df.attrs.get("format", "?"), "counts": c})


def reader_line(record: dict) -> str:
    """What a station reader read and dropped, from its run record, in one line for a run.

    Args:
      record: ``{"format", "counts", ["details"]}`` as
        :func:`bayesda.preflight.pipeline.load_observations` returns it.
    """
    c = record.get("counts", {})
    standard = ("read", "missing", "flagged", "no_station", "kept")
    extra = "".join(f", {k} {v}" for k, v in c.items() if k not in standard and v)
    line = (
        f"{record.get('format', '?')}: read {c.get('read', '?')}, missing "
        f"{c.get('missing', 0)}, flagged {c.get('flagged', 0)}, no station "
        f"{c.get('no_station', 0)}{extra}, kept {c.get('kept', '?')}"
    )
    d = record.get("details") or {}
    if d.get("no_station"):
        line += (
            f"; {len(d['no_station'])} station id(s) without a position (run.json: "
            "observations.details.no_station; add them with --stations)"
        )
    if d.get("implausible") or d.get("unreadable"):
        line += "; dropped reports by line in run.json: observations.details"
    return line
