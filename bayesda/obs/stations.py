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
import re
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
DLY_WIDTH = 269
"""Characters of a GHCN-Daily .dly line: 21 + 31 days x (5 + 3 flags)."""
ISD_WIDTH = 61
"""Characters of an ISD-Lite line: date and hour (13) + 8 fields of 6."""
MAPPED_KEYS = ("lat", "lon", "value", "sigma", "station_id", "time", "elevation", "flag")


class StationFormatError(ValueError):
    """A line of a station file does not follow its format (the message names it)."""


def _fixed_width(path, width: int, needs: str, max_width: int | None = None):
    """``(line number, line)`` of the non-blank lines of a fixed-width file.

    A line shorter than ``width`` (or longer than ``max_width`` once trailing blanks are
    dropped) raises :class:`StationFormatError` naming it and the text where it ends
    (``needs`` ends the message): a cut line must not be read as shorter values.
    """
    for lineno, line in enumerate(_open_text(path), 1):
        if not line.strip():
            continue
        n = len(line.rstrip()) if max_width is not None and len(line) > max_width else len(line)
        if n < width or (max_width is not None and n > max_width):
            tail = line.rstrip()[-12:]
            raise StationFormatError(
                f"{path}:{lineno}: line has {n} characters{needs} (the line ends "
                f"...{tail!r}; the file may be cut or not this format)"
            )
        yield lineno, line


def _open_text(path, what: str = "station file") -> list[str]:
    path = pathlib.Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a directory; give the file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise StationFormatError(f"{path}: not a complete gzip file ({err})") from None
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark would shift every column
        raw = raw[3:]
    lines = raw.decode("ascii", errors="replace").splitlines()
    if not any(line.strip() for line in lines):
        raise StationFormatError(f"{path}: the file is empty")
    return lines


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


MISSING_CODES = (-9999.0, -999.9, -999.0, 9999.0, 999.9)
"""Numbers that mean "missing" in station files and tables (elevations, coordinates)."""


def _is_missing_code(x: np.ndarray) -> np.ndarray:
    return np.isin(np.round(np.asarray(x, np.float64), 1), MISSING_CODES)


def _sniff_station_file(path: pathlib.Path) -> str:
    """``"ghcnd"`` (``ghcnd-stations.txt``'s fixed width), ``"isd-history"`` or ``"csv"``,
    from the file's first non-blank line, whatever its name."""
    for line in _open_text(path):
        if not line.strip() or line.startswith("#"):
            continue
        if re.match(r"^[A-Z0-9]{11} +-?\d+\.\d+ +-?\d+\.\d+ +-?\d+\.\d", line):
            return "ghcnd"
        header = [c.strip().strip('"').upper() for c in line.split(",")]
        return "isd-history" if {"USAF", "WBAN"} <= set(header) else "csv"
    return "csv"


def read_station_table(path) -> pd.DataFrame:
    """A stations file as a stations table (``id, lat, lon, elevation``), recognised by its
    content: ``ghcnd-stations.txt`` (fixed width), ``isd-history.csv``, or a CSV with
    columns ``id, lat, lon[, elevation]``; each row's line number is in ``line``.

    Raises:
      FileNotFoundError: no such file.
      StationFormatError: a line that is not a number where one is needed (file, line, text).
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"stations file {str(path)!r} is a directory; give the file")
    if not path.is_file():
        raise FileNotFoundError(f"stations file {str(path)!r} does not exist")
    kind = _sniff_station_file(path)
    if kind == "ghcnd":
        return read_ghcn_stations(path)
    if kind == "isd-history":
        return read_isd_history(path)
    df = _read_csv(path, comment="#", dtype=str, keep_default_na=False, sep=None, engine="python")
    df = df.rename(columns=_station_column_names(df.columns))
    missing = [c for c in ("id", "lat", "lon") if c not in df.columns]
    if missing:
        raise ValueError(
            f"stations file {path} lacks column(s) {missing}; has {list(df.columns)} "
            "(a stations CSV has id, lat, lon and optionally elevation)"
        )
    lines = _csv_line_numbers(path, len(df))
    out = pd.DataFrame({"id": df["id"].str.strip(), "line": lines})
    for col in ("lat", "lon", "elevation"):
        if col not in df.columns:
            out[col] = np.nan
            continue
        txt = df[col].str.strip()
        num = pd.to_numeric(txt, errors="coerce").to_numpy(np.float64)
        bad = np.isnan(num) & ~txt.str.upper().isin(["", "NA", "NAN"]).to_numpy()
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise StationFormatError(f"{path}:{lines[k]}: {col}={txt.iloc[k]!r} is not a number")
        out[col] = num
    _check_coordinates(out, str(path), lines)
    out.attrs["source"] = str(path)
    return out


STATION_COLUMNS = {
    "id": ("id", "station", "station_id", "stationid", "stn", "icao", "name_id"),
    "lat": ("lat", "latitude", "lat_deg"),
    "lon": ("lon", "long", "longitude", "lng", "lon_deg"),
    "elevation": ("elevation", "elev", "elev_m", "elev(m)", "height", "altitude", "alt"),
}
"""Column names a stations CSV may use (any case) for ``id, lat, lon, elevation``."""


def _station_column_names(columns) -> dict:
    """``{given: standard}`` for the columns whose name (any case) is a known spelling."""
    rename = {}
    for col in columns:
        key = str(col).strip().lower()
        for std, names in STATION_COLUMNS.items():
            if key in names and std not in rename.values():
                rename[col] = std
    return rename


def _check_coordinates(table: pd.DataFrame, source: str, lines) -> None:
    """Refuse a station whose latitude or longitude cannot be one (names file and line)."""
    lat, lon = table["lat"].to_numpy(np.float64), table["lon"].to_numpy(np.float64)
    bad = (np.abs(lat) > 90) | (np.abs(lon) > 360)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        swapped = "; lat and lon swapped?" if abs(lat[k]) > 90 and abs(lon[k]) <= 90 else ""
        raise StationFormatError(
            f"{source}:{lines[k]}: station {table['id'].iloc[k]!r} has lat={lat[k]:g}, "
            f"lon={lon[k]:g}: outside [-90, 90] and [-180, 360]{swapped}"
        )


def _read_csv(path, **kw) -> pd.DataFrame:
    """``pandas.read_csv`` whose parser errors name the file."""
    kw.setdefault("encoding", "utf-8-sig")  # a byte order mark is not part of the header
    try:
        return pd.read_csv(path, **kw)
    except pd.errors.EmptyDataError:
        raise StationFormatError(f"{path}: the file is empty (no header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StationFormatError(f"{path}: cannot read it as CSV: {first}") from None


def _delimiter(path) -> str:
    """``,`` unless the header line splits only on ``;`` or a tab (European or TSV files)."""
    header = next(
        (x for x in _open_text(path, "observation file") if x.strip() and not x.startswith("#")), ""
    )
    if "," not in header:
        for sep in (";", "\t"):
            if sep in header:
                return sep
    return ","


def _csv_line_numbers(path, n: int) -> np.ndarray:
    """The 1-based line numbers of a CSV's ``n`` data rows (after the header; comment and
    blank lines skipped, as ``pandas.read_csv(comment="#")`` does)."""
    rows = [k for k, line in enumerate(_open_text(path), 1) if line.split("#")[0].strip()]
    rows = rows[1:]  # the header
    return np.asarray(rows[:n] if len(rows) >= n else np.arange(2, n + 2), int)


def _station_table(stations) -> pd.DataFrame:
    """``id -> lat, lon, elevation`` from a DataFrame or a stations file (None: empty).

    Missing codes (:data:`MISSING_CODES`) in ``elevation`` are missing; a station whose
    ``lat`` or ``lon`` is missing is unknown. A station listed twice with the same
    coordinates counts once; one listed with different coordinates is kept aside in
    ``attrs["conflicts"]`` and refused when an observation needs it (:func:`_finish`).
    """
    if stations is None:
        out = pd.DataFrame(columns=["lat", "lon", "elevation"], index=pd.Index([], name="id"))
        out.attrs = {"source": "", "conflicts": {}}
        return out
    if isinstance(stations, str | os.PathLike):
        stations = read_station_table(stations)
    df = pd.DataFrame(stations).copy()
    source = getattr(stations, "attrs", {}).get("source", "the stations table")
    missing = [c for c in ("id", "lat", "lon") if c not in df.columns]
    if missing:
        raise ValueError(f"stations table lacks column(s) {missing}; has {list(df.columns)}")
    if "elevation" not in df.columns:
        df["elevation"] = np.nan
    if "line" not in df.columns:
        df["line"] = np.arange(len(df))  # rows of an in-memory table
        line_word = "rows"
    else:
        line_word = "lines"
    df["id"] = df["id"].astype(str).str.strip()
    for col in ("lat", "lon", "elevation"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
        df.loc[_is_missing_code(df[col].to_numpy()), col] = np.nan
    _check_coordinates(df, source, df["line"].to_numpy())
    df = df.drop_duplicates(["id", "lat", "lon", "elevation"])
    dup = df["id"].duplicated(keep=False).to_numpy()
    conflicts = {}
    for sid, group in df[dup].groupby("id", sort=False):
        where = ", ".join(str(x) for x in group["line"].tolist()[:4])
        coords = "; ".join(f"{a:g}, {b:g}" for a, b in zip(group["lat"], group["lon"], strict=True))
        place = f"{source}:{where}" if line_word == "lines" else f"{source} (rows {where})"
        conflicts[sid] = (
            f"{place}: station {sid!r} is listed {len(group)} times with different "
            f"coordinates ({coords}); keep one"
        )
    out = df[~dup].set_index("id")[["lat", "lon", "elevation"]]
    out.attrs = {"source": source, "conflicts": conflicts}
    return out


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
    if "line" in df.columns:
        df = _drop_repeats(df, source, counts)
    ids = df["station_id"].astype(str).to_numpy()
    conflicts = stations.attrs.get("conflicts", {})
    used = [sid for sid in dict.fromkeys(ids) if sid in conflicts]
    if used and "lat" not in df.columns:
        raise StationFormatError(conflicts[used[0]])
    meta = stations.reindex(ids)
    known = meta["lat"].notna().to_numpy() & meta["lon"].notna().to_numpy()
    if "lat" in df.columns:  # the format carries coordinates itself
        known = np.ones(len(df), bool)
    counts["no_station"] = int((~known).sum())
    if len(df) and not known.any():
        unknown = list(dict.fromkeys(ids))
        shown = ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        table = stations.attrs.get("source")
        where = f"is in {table}" if table else "can be placed: no stations table was given"
        raise StationFormatError(
            f"{source}: none of its {len(unknown)} station(s) ({shown}) {where}; give the "
            "stations file that lists them (--stations)"
        )
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


def _drop_repeats(df: pd.DataFrame, source: str, counts: dict) -> pd.DataFrame:
    """One row per station and time: an exact repeat is dropped (counted in ``repeats``);
    two different values for one station and time are refused, naming both lines."""
    key = ["station_id", "time"]
    dup = df.duplicated(key, keep=False).to_numpy()
    if not dup.any():
        return df.drop(columns="line")
    for _, group in df[dup].groupby(key, sort=False):
        if group["value"].nunique() > 1:
            first, second = group.iloc[0], group.iloc[1]
            raise StationFormatError(
                f"{source}:{first['line']} and {second['line']}: station "
                f"{first['station_id']!r} at {first['time']} has two values ({first['value']} "
                f"and {second['value']}, raw units); the file holds the record twice: keep one"
            )
    out = df.drop_duplicates(key, keep="first")
    counts["repeats"] = len(df) - len(out)
    return out.drop(columns="line").reset_index(drop=True)


def read_ghcn_stations(path) -> pd.DataFrame:
    """``ghcnd-stations.txt`` (fixed width) as a stations table (id, lat, lon, elevation)."""
    rows = []
    for lineno, line in _fixed_width(
        path,
        37,
        ", expected 37 to 85 (ID, LATITUDE, LONGITUDE, ELEVATION, STATE, NAME, ...)",
        max_width=85,
    ):
        elev = _float(line[31:37], path, lineno, "ELEVATION", "32-37")
        rows.append(
            {
                "id": line[0:11].strip(),
                "lat": _float(line[12:20], path, lineno, "LATITUDE", "13-20"),
                "lon": _float(line[21:30], path, lineno, "LONGITUDE", "22-30"),
                "elevation": np.nan if elev <= -999.0 else elev,
                "line": lineno,
            }
        )
    out = pd.DataFrame(rows, columns=["id", "lat", "lon", "elevation", "line"])
    out.attrs["source"] = str(path)
    return out


def read_isd_history(path) -> pd.DataFrame:
    """NOAA ``isd-history.csv`` as a stations table; ids are ``USAF-WBAN``."""
    df = _read_csv(path, dtype=str)
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
    out["line"] = _csv_line_numbers(path, len(out))
    out = out.dropna(subset=["lat", "lon"]).reset_index(drop=True)
    out.attrs["source"] = str(path)
    return out


TEMPERATURE_ELEMENTS = ("TAVG", "TMAX", "TMIN", "TOBS")
"""GHCN-Daily elements that are temperatures (tenths of degC); the others (PRCP, SNOW,
AWND...) are not, and reading them as temperatures would be silently wrong."""


def _check_element(element: str) -> str:
    """``element`` upper-cased; refused unless it is a temperature element."""
    e = str(element).strip().upper()
    if e not in TEMPERATURE_ELEMENTS:
        raise ValueError(
            f"element {element!r} is not a temperature; GHCN-Daily temperatures are "
            f"{', '.join(TEMPERATURE_ELEMENTS)}"
        )
    return e


def _require_element(path, element: str, elements: dict) -> None:
    """A GHCN file without a single record of ``element`` is refused, naming those it has."""
    if element in elements:
        return
    have = ", ".join(sorted(e for e in elements if e)) or "none"
    raise StationFormatError(
        f"{path}: no {element} records; the file has {have} (choose one with --element, "
        "e.g. --element TMAX)"
    )


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
    element = _check_element(element)
    st = _station_table(stations)
    counts = {"read": 0, "missing": 0, "flagged": 0}
    rows = {"station_id": [], "time": [], "value": [], "line": []}
    elements = {}
    for lineno, line in _fixed_width(
        path,
        DLY_WIDTH - 3,
        f"; a .dly record has {DLY_WIDTH}: ID (1-11), YEAR, MONTH, ELEMENT and 31 days of "
        "VALUE (5 characters) and 3 flags",
        max_width=DLY_WIDTH,
    ):
        elements.setdefault(line[17:21].strip(), lineno)
        if line[17:21] != element:
            continue
        year = _int(line[11:15], path, lineno, "YEAR", "12-15")
        month = _int(line[15:17], path, lineno, "MONTH", "16-17")
        if not 1 <= month <= 12:
            raise StationFormatError(
                f"{path}:{lineno}: MONTH (columns 16-17) is {line[15:17]!r}, not 01-12"
            )
        ndays = pd.Period(year=year, month=month, freq="M").days_in_month
        line = line.ljust(DLY_WIDTH)  # only trailing flags may be missing
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
                rows["line"].append(lineno)
    _require_element(path, element, elements)
    return _finish(rows, st, counts, "ghcn-dly", "0.1degC", sigma, str(path))


def read_ghcn_csv(
    path, *, stations, element: str = "TAVG", hour: int | None = None, sigma: float = DEFAULT_SIGMA
) -> pd.DataFrame:
    """Read the GHCN-Daily by-station CSV (no header; see the module docstring).

    ``hour`` sets each value's UTC hour; None uses ``OBS-TIME`` (HHMM) when present, else 12.
    A non-blank ``Q-FLAG`` drops the value (counted as flagged).
    """
    element = _check_element(element)
    st = _station_table(stations)
    counts = {"read": 0, "missing": 0, "flagged": 0}
    rows = {"station_id": [], "time": [], "value": [], "line": []}
    elements = {}
    for lineno, line in enumerate(_open_text(path), 1):
        if not line.strip():
            continue
        f = line.split(",")
        if len(f) < 4 or len(f) > 8:
            raise StationFormatError(
                f"{path}:{lineno}: {len(f)} fields in {line!r}; expected "
                "ID,YYYYMMDD,ELEMENT,DATA_VALUE,M-FLAG,Q-FLAG,S-FLAG,OBS-TIME"
            )
        elements.setdefault(f[2].strip(), lineno)
        if f[2].strip() != element:
            continue
        counts["read"] += 1
        date = f[1].strip()
        try:
            if not (date.isdigit() and len(date) == 8):
                raise ValueError(date)
            day = pd.Timestamp(date)
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
            if obs_time and not (
                obs_time.isdigit()
                and len(obs_time) <= 4
                and int(obs_time) <= 2400
                and int(obs_time) % 100 < 60
            ):
                raise StationFormatError(
                    f"{path}:{lineno}: OBS-TIME (field 8) is {obs_time!r}, not HHMM (0000-2400)"
                )
            h = int(obs_time[:-2] or 0) if obs_time else 12
        rows["station_id"].append(f[0].strip())
        rows["time"].append(day + pd.Timedelta(hours=h))
        rows["value"].append(v)
        rows["line"].append(lineno)
    _require_element(path, element, elements)
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
        if len(parts) < 2 or not all(p.strip() for p in parts[:2]):
            raise ValueError(
                f"cannot tell the station from the file name {str(path)!r}: ISD-Lite files "
                "are named USAF-WBAN-YEAR as NOAA publishes them (e.g. 724940-23234-2014 "
                "or 724940-23234-2014.gz); rename the file so"
            )
        station_id = f"{parts[0]}-{parts[1]}"
    counts = {"read": 0, "missing": 0, "flagged": 0}
    rows = {"station_id": [], "time": [], "value": [], "line": []}
    for lineno, line in _fixed_width(
        path,
        ISD_WIDTH,
        f"; an ISD-Lite line has {ISD_WIDTH}: date and hour (1-13) and 8 fields of 6",
        max_width=ISD_WIDTH,
    ):
        y = _int(line[0:4], path, lineno, "year", "1-4")
        mo = _int(line[5:7], path, lineno, "month", "6-7")
        d = _int(line[8:10], path, lineno, "day", "9-10")
        h = _int(line[11:13], path, lineno, "hour", "12-13")
        for what, cols, text, ok in (
            ("month", "6-7", line[5:7], 1 <= mo <= 12),
            ("hour", "12-13", line[11:13], 0 <= h <= 23),
        ):
            if not ok:
                raise StationFormatError(
                    f"{path}:{lineno}: {what} (columns {cols}) is {text!r}, out of range"
                )
        try:
            t = pd.Timestamp(y, mo, d, h)
        except ValueError:
            raise StationFormatError(
                f"{path}:{lineno}: the date {y:04d}-{mo:02d}-{d:02d} (columns 1-10, "
                f"{line[:10]!r}) does not exist"
            ) from None
        v = _int(line[13:19], path, lineno, "air temperature", "14-19")
        counts["read"] += 1
        if v == ISD_MISSING:
            counts["missing"] += 1
            continue
        rows["station_id"].append(station_id)
        rows["time"].append(t)
        rows["value"].append(v)
        rows["line"].append(lineno)
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
      missing: values of ``value`` that mean "missing" (also empty cells, NA, M); in the
        coordinates, elevation and sigma :data:`MISSING_CODES` mean missing too. A row
        with a missing value or coordinate is dropped (counted as missing); a missing
        elevation is NaN, a missing sigma takes ``sigma``.
      good_flags: values of the ``flag`` column that mean "passed" (ISD's ``0 1 5 A C``
        and blank by default); any other flag drops the row (counted).
      time: the time of every row when there is no time column.
      sigma: observation error SD in ``units`` when there is no sigma column.
    """
    mapping = parse_columns(columns) if isinstance(columns, str) else dict(columns)
    unknown = [k for k in mapping if k not in MAPPED_KEYS]
    if unknown:
        raise ValueError(f"column mapping key(s) {unknown} not among {MAPPED_KEYS}")
    lacking = [k for k in ("lat", "lon", "value") if k not in mapping]
    if lacking:
        raise ValueError(f"column mapping {mapping} lacks {lacking}")
    units = canonical_units(units)
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"observation file {str(path)!r} does not exist")
    raw = _read_csv(path, comment="#", dtype=str, keep_default_na=False, sep=_delimiter(path))
    raw.columns = [str(c).strip() for c in raw.columns]
    absent = [f"{k}={c}" for k, c in mapping.items() if c not in raw.columns]
    if absent:
        raise ValueError(f"{path}: column(s) {absent} not in the file; it has {list(raw.columns)}")
    lines = _csv_line_numbers(path, len(raw))
    counts = {"read": len(raw), "missing": 0, "flagged": 0}
    miss_set = {float(m) for m in missing}

    def numbers(key: str) -> np.ndarray:
        """The column of ``key`` as floats; blanks, NA and missing codes are NaN (for
        ``value`` the codes of ``missing``; for the others :data:`MISSING_CODES` too)."""
        txt = raw[mapping[key]].str.strip()
        blank = txt.eq("") | txt.str.upper().isin(["NA", "NAN", "M"])
        num = pd.to_numeric(txt.where(~blank, "nan"), errors="coerce").to_numpy(
            np.float64, copy=True
        )
        bad = np.isnan(num) & ~blank.to_numpy()
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise StationFormatError(
                f"{path}:{lines[k]}: {mapping[key]}={txt.iloc[k]!r} is not a number"
            )
        code = np.isin(num, list(miss_set))
        num[code if key == "value" else code | _is_missing_code(num)] = np.nan
        return num

    vals = numbers("value")
    keep = np.isfinite(vals)
    coords = {key: numbers(key) for key in ("lat", "lon")}
    keep &= np.isfinite(coords["lat"]) & np.isfinite(coords["lon"])
    counts["missing"] = int((~keep).sum())
    if "flag" in mapping:
        flags = raw[mapping["flag"]].str.strip()
        bad = keep & ~flags.isin([str(g) for g in good_flags]).to_numpy()
        counts["flagged"] = int(bad.sum())
        keep &= ~bad
    sub = raw[keep]
    rows = {"value": vals[keep], "lat": coords["lat"][keep], "lon": coords["lon"][keep]}
    if "elevation" in mapping:
        rows["elevation"] = numbers("elevation")[keep]
    if "sigma" in mapping:
        sig_col = numbers("sigma")[keep]
        rows["sigma"] = np.where(np.isfinite(sig_col), sig_col, float(sigma))
    rows["station_id"] = (
        sub[mapping["station_id"]].str.strip().to_numpy()
        if "station_id" in mapping
        else [f"R{i:05d}" for i in sub.index]
    )
    if "time" in mapping:
        from bayesda.obs.table import parse_times

        kept_lines = lines[keep]
        try:
            rows["time"] = parse_times(
                sub[mapping["time"]],
                row=lambda k: f"{path}:{kept_lines[k]}",
                what=mapping["time"],
            )
        except ValueError as err:
            raise StationFormatError(str(err)) from None
    elif time is not None:
        rows["time"] = np.full(len(sub), np.datetime64(pd.Timestamp(time), "ns"))
    else:
        raise ValueError(
            f"{path}: no time column in the column mapping (time=COLUMN) and no analysis "
            "time (--time) given"
        )
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
