"""METAR/SPECI reports as distributed: WMO bulletin framing, decoding, dates and positions.

A METAR file may be a plain list (one report a line) or a raw WMO bulletin stream as the
GTS and NOAA's feeds distribute it (WMO-No. 386, Manual on the GTS, Attachment II-5; the
reports are WMO FM 15 METAR / FM 16 SPECI, WMO-No. 306 Vol. I.1, and for the US remarks
FMH-1 chapter 12). :func:`frame_reports` cuts a stream into reports:

* ``SOH`` (``\\x01``) opens a bulletin, ``ETX`` (``\\x03``) closes it; the line of digits
  after ``SOH`` is the channel sequence number;
* the abbreviated heading ``TTAAii CCCC YYGGgg [BBB]`` (``SAUS70 KWBC 011200 RRA``) and a
  ``METAR`` or ``SPECI`` line that types the bulletin's reports follow;
* a report ends with ``=``; it may run over several lines (continuation lines, indented
  or not, even after a blank line). A line starting ``METAR``/``SPECI``, or with a station
  id and a ``DDHHMMZ`` or ``NIL`` group, starts a new report (one left without its ``=``
  before it is kept and counted); so does ``METAR CCCC DDHHMMZ`` inside a line;
* ``NNNN`` ends a bulletin (the older teleprinter end-of-message); ``NIL`` alone is a
  bulletin without reports;
* anything else outside a report (``TX_OPMET``, AFOS product lines such as ``MTRSXT``,
  Canada's ``SA`` format, free text) is a :class:`Stray` line: skipped and counted.

:func:`parse_report` reads the heading groups ``[METAR|SPECI] [COR] CCCC DDHHMMZ [NIL]
[AUTO|COR]``; :func:`decode_temperature` decodes the rest with the ``metar`` package
(python-metar): the remark's tenths group ``T02120212`` when there is one, else the
whole-degree group ``TT/TdTd`` (``M`` for minus; ``//`` and ``/////`` are missing);
visibilities such as ``2 1/2SM`` are not temperatures. :func:`report_time` dates a report
from its own ``DDHHMMZ`` group: the month (and year) that put it nearest the analysis time.

:func:`read_metar` puts it together and returns bayesda's station table (see its
docstring for the columns, the counts and what is dropped).
"""

from __future__ import annotations

import calendar
import gzip
import pathlib
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

import bayesda.obs.plausible as plausible
from bayesda.obs.stationdb import StationDB

__all__ = [
    "MAX_UNREADABLE_FRACTION",
    "ROUNDING_SD",
    "MetarError",
    "ParsedReport",
    "Report",
    "Stray",
    "decode_temperature",
    "frame_reports",
    "parse_report",
    "read_metar",
    "report_time",
]

MAX_UNREADABLE_FRACTION = 0.01
"""Largest fraction of a file's reports that may be unreadable (a broken station, time or
temperature group): these are dropped and listed; more, and the file is refused."""
ROUNDING_SD = 1.0 / np.sqrt(12.0)
"""SD (K) of the rounding error of a whole-degree temperature, added in quadrature to the
sigma of a report without the remark's tenths group."""

_SOH, _ETX = "\x01", "\x03"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HEADING = re.compile(r"^[A-Z]{4}(?:\d{2})? [A-Z0-9]{4} \d{6}(?: [A-Z]{3})?$")
_TYPE_LINE = re.compile(r"^(METAR|SPECI)(?: \d{6}Z?)?$")
_START = re.compile(
    r"^(?:(?:METAR|SPECI) |(?:(?:COR|CC[A-Z]) )?[A-Z][A-Z0-9]{3} +(?:\d{6}Z|NIL)\b)"
)
_LOOSE_START = re.compile(
    r"^(?:(?:METAR|SPECI) |(?:(?:COR|CC[A-Z]) )?[A-Z][A-Z0-9]{3} +(?:\d|NIL\b|RMK NIL\b))"
)
_EMBEDDED = re.compile(r" (?=(?:METAR|SPECI) [A-Z][A-Z0-9]{3} \d{6}Z\b)")
_STATION = re.compile(r"^[A-Z][A-Z0-9]{3}$")
_TIME = re.compile(r"^(\d{2})(\d{2})(\d{2})Z?$")
_TENTHS = re.compile(r"^T[01]\d{3}(?:[01]\d{3})?$")
_BROKEN_TEMP = re.compile(r"^(?=[^/]*\d)M?[0-9A-Z]{1,3}/M?[0-9A-Z]{0,3}$")  # a digit before "/"


class MetarError(ValueError):
    """A report that breaks FM 15 where bayesda needs it (station, time, temperature), or a
    file without reports. :func:`bayesda.obs.stations.read_metar` raises it as a
    :class:`bayesda.obs.stations.StationFormatError`."""


def _lines(path) -> list[str]:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"METAR file {str(path)!r} does not exist")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("ascii", errors="replace").splitlines()


@dataclass(frozen=True)
class Report:
    """One report cut out of a file.

    Attributes:
      line: the 1-based line number of the report's first line.
      text: the report, its lines joined by single spaces, without the final ``=``.
      kind: ``"METAR"`` or ``"SPECI"`` (its own prefix, else its bulletin's type).
      heading: the bulletin's abbreviated heading (``""`` outside a bulletin).
      terminated: whether the report ended with ``=``.
    """

    line: int
    text: str
    kind: str
    heading: str
    terminated: bool


@dataclass(frozen=True)
class Stray:
    """A line outside any report that is no framing either: skipped, and counted."""

    line: int
    text: str


@dataclass(frozen=True)
class ParsedReport:
    """A report's heading groups.

    Attributes:
      station: the ICAO location indicator (``CCCC``).
      day, hour, minute: the ``DDHHMMZ`` group (None for a ``NIL`` report without one).
      nil: a ``NIL`` report (no observation).
      auto: a fully automated report (``AUTO``).
      cor: a corrected report (``COR``, in the WMO or the US position).
      body: the report from the station group on (``""`` for ``NIL``).
    """

    station: str
    day: int | None
    hour: int | None
    minute: int | None
    nil: bool
    auto: bool
    cor: bool
    body: str


def _heading_kind(heading: str) -> str:
    return "SPECI" if heading.startswith("SP") else "METAR"


def frame_reports(lines: Iterable[str]) -> Iterator[Report | Stray]:
    """Cut a file's lines into reports (see the module docstring for the rules).

    Args:
      lines: the file's lines (without line ends), in order.

    Yields:
      :class:`Report` and :class:`Stray` in file order; headings, sequence numbers,
      ``METAR``/``SPECI`` type lines, blank lines and control characters are neither.
    """
    heading, kind = "", "METAR"
    parts: list[str] = []
    first = 0
    at_start = True  # just after SOH: a line of digits is the sequence number

    def flush(terminated: bool) -> Iterator[Report]:
        nonlocal parts
        text = " ".join(parts)
        parts = []
        pieces = [p for p in _EMBEDDED.split(text) if p] if text else []
        for k, piece in enumerate(pieces):
            word = piece.split(None, 1)[0]
            yield Report(
                first,
                piece,
                word if word in ("METAR", "SPECI") else kind,
                heading,
                terminated or k < len(pieces) - 1,
            )

    for lineno, raw in enumerate(lines, 1):
        if _SOH in raw or _ETX in raw:
            yield from flush(False)
            if _SOH in raw.rsplit(_ETX, 1)[-1]:
                heading, kind, at_start = "", "METAR", True
        line = _CONTROL.sub(" ", raw).strip()
        if not line:
            continue
        type_line = _TYPE_LINE.match(line)
        if type_line or line == "NNNN" or _HEADING.match(line):
            yield from flush(False)
            if type_line:
                kind = type_line.group(1)
            else:
                heading = "" if line == "NNNN" else line
                kind = _heading_kind(heading)
            at_start = False
            continue
        if not parts:
            if (at_start and line.isdigit()) or line.startswith("#") or line in ("NIL", "NIL="):
                continue  # the sequence number; a comment in a hand-made list; a NIL bulletin
            if not _LOOSE_START.match(line):
                yield Stray(lineno, line)
                continue
        elif _START.match(line):
            yield from flush(False)
        at_start = False
        pieces = line.split("=")
        for k, piece in enumerate(pieces):
            piece = piece.strip()
            if piece:
                if not parts:
                    first = lineno
                parts.append(piece)
            if k < len(pieces) - 1:  # an "=" followed this piece: the report ends
                yield from flush(True)
    yield from flush(False)


def parse_report(text: str) -> ParsedReport:
    """Read a report's heading groups: station, time and the NIL, AUTO and COR markers.

    Args:
      text: a report (``=`` and line breaks removed), with or without its ``METAR``/``SPECI``
        prefix; the WMO ``METAR COR CCCC`` and the US ``CCCC DDHHMMZ COR`` forms.

    Returns:
      A :class:`ParsedReport`.

    Raises:
      MetarError: no station id, or a ``DDHHMMZ`` group that is not one (the message names
        the group). A time group without its ``Z`` is read.
    """
    tokens = text.split()
    cor = False
    if tokens and tokens[0] in ("METAR", "SPECI"):
        tokens = tokens[1:]
    if tokens and (tokens[0] == "COR" or re.match(r"^CC[A-Z]$", tokens[0])):
        cor, tokens = True, tokens[1:]
    if not tokens or not _STATION.match(tokens[0]):
        got = tokens[0] if tokens else "nothing"
        raise MetarError(f"station group {got!r} is not a 4-character ICAO location indicator")
    station, rest = tokens[0], tokens[1:]
    if rest[:1] == ["NIL"] or rest == ["RMK", "NIL"]:
        return ParsedReport(station, None, None, None, True, False, cor, "")
    if not rest:
        raise MetarError("no DDHHMMZ group after the station")
    when = _TIME.match(rest[0])
    if when is None:
        raise MetarError(f"time group {rest[0]!r} is not DDHHMMZ")
    day, hour, minute = (int(g) for g in when.groups())
    if not (1 <= day <= 31 and hour <= 23 and minute <= 59):
        raise MetarError(f"time group {rest[0]!r}: day {day}, {hour:02d}:{minute:02d} UTC")
    groups = rest[1:]
    if groups[:1] == ["NIL"] or groups[:2] == ["AUTO", "NIL"]:
        return ParsedReport(station, day, hour, minute, True, False, cor, "")
    main = groups[: groups.index("RMK")] if "RMK" in groups else groups
    return ParsedReport(
        station, day, hour, minute, False, "AUTO" in main, cor or "COR" in main, " ".join(tokens)
    )


def decode_temperature(body: str, when: pd.Timestamp) -> tuple[float | None, bool]:
    """A report's air temperature, decoded by the ``metar`` package (python-metar).

    The remark's tenths group ``TsTTT[sTTT]`` replaces the whole-degree group when present.

    Args:
      body: the report from its station group on (:attr:`ParsedReport.body`).
      when: the report's date (:func:`report_time`): its year and month complete the day
        the report carries.

    Returns:
      ``(degC or None, tenths)``; ``tenths`` says the remark's tenths group gave it.

    Raises:
      MetarError: no temperature, and a group that looks like a broken one (``2A/10``).
    """
    from metar.Metar import Metar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # strict=False warns of every group it skips
        report = Metar(body, month=when.month, year=when.year, strict=False)
    main, _, remarks = body.partition(" RMK ")
    if report.temp is not None:
        tenths = any(_TENTHS.match(t) for t in remarks.split())
        return float(report.temp.value("C")), tenths
    if not report.decode_completed:
        bad = [t for t in main.split() if _BROKEN_TEMP.match(t) and not t.endswith("SM")]
        if bad:
            raise MetarError(f"temperature group {bad[0]!r} is not TT/TdTd (M for minus)")
    return None, False


def report_time(day: int, hour: int, minute: int, analysis) -> pd.Timestamp:
    """The date of a ``DDHHMMZ`` group: the month nearest the analysis time.

    A report carries its day of month only; its month is the one among the analysis time's
    month and the months before and after that puts it nearest the analysis time (a report
    of the 30th read for an analysis on the 1st is of the month before; one of 31 January
    23:53 for 1 February 00 UTC is of January).

    Args:
      day, hour, minute: the group's values.
      analysis: the analysis time (anything :class:`pandas.Timestamp` takes; an aware time
        is converted to UTC).

    Returns:
      The report's time (naive, UTC).

    Raises:
      MetarError: the day exists in none of the three months.
    """
    t = pd.Timestamp(analysis)
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    best = None
    for shift in (-1, 0, 1):
        y, m = divmod(t.year * 12 + (t.month - 1) + shift, 12)
        if day > calendar.monthrange(y, m + 1)[1]:
            continue
        cand = pd.Timestamp(y, m + 1, day, hour, minute)
        if best is None or abs(cand - t) < abs(best - t):
            best = cand
    if best is None:
        raise MetarError(f"day {day} exists in no month next to the analysis time {t}")
    return best


_ROW_COLUMNS = ["station_id", "time", "degC", "line", "kind", "auto", "cor", "tenths", "text"]


def _refuse_unreadable(path, bad: list[dict], n: int) -> None:
    first = bad[0]
    raise MetarError(
        f"{path}:{first['line']}: {first['error']} in report {first['text']!r}; "
        f"{len(bad)} of {n} report(s) cannot be read (at most "
        f"{MAX_UNREADABLE_FRACTION:.0%} are dropped and listed)"
    )


def read_metar(
    path,
    *,
    time,
    stations: pd.DataFrame | None = None,
    sigma: float = 0.5,
    databases: bool = True,
) -> pd.DataFrame:
    """Read a METAR/SPECI file as distributed (see the module docstring).

    Steps, each counted in ``attrs["counts"]``:

    1. frame the file into reports (``read``; lines that are no report: ``not_report``;
       reports that lacked their ``=``: ``unterminated``, kept);
    2. ``NIL`` reports and reports without a temperature (``//``, ``/////``) are
       ``missing`` (``nil`` counts the former);
    3. a report whose station, time or temperature group is broken is ``unreadable``:
       dropped and listed with its line and text, unless more than
       :data:`MAX_UNREADABLE_FRACTION` of the reports are (then the file is refused);
    4. repeats of one station and time (a bulletin sent again, ``RRA``, a ``COR``) keep
       one report: a correction over the original, else the last in the file
       (``duplicate``). Reports of one station at different times are all kept: the
       analysis window keeps the one nearest the analysis time
       (:func:`bayesda.obs.window.select_window`);
    5. temperatures outside the physical range are dropped and listed with station, line
       and text (``implausible``; :func:`bayesda.obs.plausible.screen_absolute`, which
       refuses a file where more than a few are);
    6. stations are placed by ``stations`` (a user's table: id, lat, lon[, elevation]),
       then by the maintained databases (:class:`bayesda.obs.stationdb.StationDB`);
       reports of stations no source knows are ``no_station``, their ids listed.

    Args:
      path: the file (``.gz`` read too).
      time: the analysis time; each report's month and year are the ones nearest it
        (:func:`report_time`).
      stations: a user's stations table, which wins over the databases: a DataFrame with
        ``id`` (a column or the index), ``lat``, ``lon`` and optionally ``elevation``
        (:func:`bayesda.obs.stations.read_metar` also reads it from a CSV); optional.
      sigma: observation error SD, K (the station readers' default); a whole-degree report
        adds :data:`ROUNDING_SD` in quadrature.
      databases: look stations up in ``airportsdata`` and ``nsd_cccc`` (default True).

    Returns:
      A table in K (absolute) with columns ``station_id, time, lat, lon, value, sigma,
      elevation`` (m, NaN unknown) and per report ``line`` (first line in the file),
      ``kind`` (METAR/SPECI), ``auto``, ``cor``, ``tenths`` (the remark gave the
      temperature) and ``position`` (the source of lat/lon: ``user``, ``airportsdata`` or
      ``nsd_cccc``). ``attrs``: ``kind``, ``units``, ``format``, ``source``, ``counts`` and
      ``details`` (``unreadable``, ``implausible``: ``[{line, station, text, ...}]``;
      ``no_station``: sorted ids; ``stations``: count by position source;
      ``not_report``: the first stray lines).

    Raises:
      MetarError: no report in the file, or too many unreadable ones (names the first:
        file, line, group and report).
      bayesda.obs.plausible.ImplausibleObservationError: mostly implausible values (with
        the units hint).
    """
    lines = _lines(path)
    reports: list[Report] = []
    strays: list[Stray] = []
    for item in frame_reports(lines):
        (reports if isinstance(item, Report) else strays).append(item)
    if not reports:
        shown = next((ln.strip()[:60] for ln in lines if ln.strip()), "")
        raise MetarError(
            f"{path}: no METAR or SPECI report found ({len(lines)} lines; the first: "
            f"{shown!r}); a report starts 'METAR CCCC DDHHMMZ' or 'CCCC DDHHMMZ'"
        )
    counts = {
        "read": len(reports),
        "missing": 0,
        "nil": 0,
        "unreadable": 0,
        "duplicate": 0,
        "implausible": 0,
        "flagged": 0,
        "no_station": 0,
        "unterminated": sum(not r.terminated for r in reports),
        "not_report": len(strays),
    }
    rows: list[dict] = []
    unreadable: list[dict] = []
    decoded: dict[tuple, tuple] = {}
    dates: dict[tuple, pd.Timestamp] = {}
    for rep in reports:
        try:
            p = parse_report(rep.text)
            if p.nil:
                counts["nil"] += 1
                counts["missing"] += 1
                continue
            stamp = (p.day, p.hour, p.minute)
            if stamp not in dates:
                dates[stamp] = report_time(*stamp, time)
            when = dates[stamp]
            key = (p.body, when.year, when.month)
            if key not in decoded:  # bulletins repeat reports: decode each text once
                decoded[key] = decode_temperature(p.body, when)
            value, tenths = decoded[key]
        except MetarError as err:
            unreadable.append({"line": rep.line, "text": rep.text, "error": str(err)})
            continue
        if value is None:
            counts["missing"] += 1
            continue
        rows.append(
            {
                "station_id": p.station,
                "time": when,
                "degC": value,
                "line": rep.line,
                "kind": rep.kind,
                "auto": p.auto,
                "cor": p.cor,
                "tenths": tenths,
                "text": rep.text,
            }
        )
    counts["unreadable"] = len(unreadable)
    if unreadable and len(unreadable) > MAX_UNREADABLE_FRACTION * len(reports):
        _refuse_unreadable(path, unreadable, len(reports))
    df = pd.DataFrame(rows, columns=_ROW_COLUMNS)
    # one report per station and time: a correction wins, then the later in the file
    order = df.assign(_n=np.arange(len(df))).sort_values(["cor", "_n"], kind="stable")
    keep = ~order.duplicated(["station_id", "time"], keep="last").to_numpy()
    counts["duplicate"] = int((~keep).sum())
    df = order[keep].sort_values("_n").drop(columns="_n").reset_index(drop=True)
    labels = [f"station {s}, line {n}" for s, n in zip(df["station_id"], df["line"], strict=True)]
    ok = plausible.screen_absolute(
        df["degC"].to_numpy(np.float64), "degC", source=str(path), labels=labels, fixed_units=True
    )
    implausible = [
        {"line": int(r.line), "station": r.station_id, "value_degC": r.degC, "text": r.text}
        for r in df[~ok].itertuples()
    ]
    counts["implausible"] = len(implausible)
    df = df[ok].reset_index(drop=True)
    pos = StationDB(stations, databases=databases).lookup(df["station_id"])
    known = pos["source"].to_numpy() != ""
    no_station = sorted(set(df["station_id"][~known]))
    counts["no_station"] = int((~known).sum())
    df, pos = df[known].reset_index(drop=True), pos[known]
    tenths = df["tenths"].to_numpy(bool)
    out = pd.DataFrame(
        {
            "station_id": df["station_id"].astype(str).to_numpy(),
            "time": pd.to_datetime(df["time"]).to_numpy("datetime64[ns]"),
            "lat": pos["lat"].to_numpy(np.float64),
            "lon": pos["lon"].to_numpy(np.float64),
            "value": df["degC"].to_numpy(np.float64) + 273.15,
            "sigma": np.where(tenths, float(sigma), np.hypot(float(sigma), ROUNDING_SD)),
            "elevation": pos["elevation"].to_numpy(np.float64),
            "line": df["line"].to_numpy(np.int64),
            "kind": df["kind"].to_numpy(str),
            "auto": df["auto"].to_numpy(bool),
            "cor": df["cor"].to_numpy(bool),
            "tenths": tenths,
            "position": pos["source"].to_numpy(str),
        }
    )
    counts["kept"] = len(out)
    per_source = out.groupby("position")["station_id"].nunique()
    out.attrs = {
        "kind": "absolute",
        "units": "K",
        "format": "metar",
        "source": str(path),
        "counts": counts,
        "details": {
            "stations": {
                **{str(k): int(v) for k, v in per_source.items()},
                "unresolved": len(no_station),
            },
            "no_station": no_station,
            "unreadable": unreadable,
            "implausible": implausible,
            "not_report": [{"line": s.line, "text": s.text[:80]} for s in strays[:20]],
        },
    }
    return out
