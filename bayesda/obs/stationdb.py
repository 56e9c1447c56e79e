"""Station positions by ICAO location indicator, from maintained databases.

A METAR names its station by ICAO indicator only. :class:`StationDB` resolves indicators
without a user's table, from (first match wins):

1. ``airportsdata`` (PyPI, MIT licence): ICAO -> latitude, longitude (decimal degrees) and
   elevation of the landing area (feet, converted to m); airports and landing strips.
2. NOAA's ICAO station list ``nsd_cccc.txt`` as shipped by the ``metar`` package
   (BSD-2-Clause): ``ICAO;block;station;name;state;country;region;lat;lon;ua lat;ua lon;
   elevation;ua elevation;RBSN`` with positions in degrees-minutes(-seconds) and the
   hemisphere letter (``49-41N``, ``054-48W``) and the elevation in m. It adds the
   automatic weather stations that are no airports (Canada's ``CW..``/``CX..``).

A user's table (``id, lat, lon[, elevation]``) goes before both. Each resolved row says
which source it came from, so a run can report it.
"""

from __future__ import annotations

import importlib.resources
import re

import numpy as np
import pandas as pd

__all__ = ["FEET", "SOURCES", "StationDB", "parse_nsd_position"]

FEET = 0.3048
"""Metres per international foot."""
SOURCES = ("user", "airportsdata", "nsd_cccc")

_DMS = re.compile(r"^(\d{1,3})-(\d{1,2})(?:-(\d{1,2}))?([NSEW])$")


def parse_nsd_position(text: str) -> float:
    """``"49-41N"`` or ``"054-48-30W"`` as signed decimal degrees (NaN when blank or odd)."""
    m = _DMS.match(text.strip())
    if m is None:
        return float("nan")
    deg, minutes, seconds, hemi = m.groups()
    value = int(deg) + int(minutes) / 60.0 + int(seconds or 0) / 3600.0
    return -value if hemi in "SW" else value


def _airportsdata() -> pd.DataFrame:
    import airportsdata

    rows = airportsdata.load("ICAO")
    ids = list(rows)

    def num(key):
        return pd.to_numeric(pd.Series([rows[i][key] for i in ids]), errors="coerce").to_numpy()

    return pd.DataFrame(
        {"lat": num("lat"), "lon": num("lon"), "elevation": num("elevation") * FEET},
        index=pd.Index(ids, name="id"),
    )


def _nsd_cccc() -> pd.DataFrame:
    try:
        text = (importlib.resources.files("metar") / "nsd_cccc.txt").read_text("latin-1")
    except (ModuleNotFoundError, FileNotFoundError):
        return pd.DataFrame(columns=["lat", "lon", "elevation"], index=pd.Index([], name="id"))
    ids, lat, lon, elev = [], [], [], []
    for line in text.splitlines():
        f = line.split(";")
        if len(f) < 12 or not f[0].strip():
            continue
        ids.append(f[0].strip())
        lat.append(parse_nsd_position(f[7]))
        lon.append(parse_nsd_position(f[8]))
        elev.append(float(f[11]) if f[11].strip().lstrip("-").isdigit() else np.nan)
    df = pd.DataFrame({"lat": lat, "lon": lon, "elevation": elev}, index=pd.Index(ids, name="id"))
    return df[~df.index.duplicated(keep="first")]


class StationDB:
    """Station positions by id: a user's table, then ``airportsdata``, then ``nsd_cccc``.

    The databases are read on the first :meth:`lookup` and kept on the instance.

    Args:
      user: a table with ``lat``, ``lon`` and optionally ``elevation`` (m; NaN unknown),
        its ids in an ``id`` column or the index; or None.
      databases: also look ids up in the maintained databases (default True).
    """

    def __init__(self, user: pd.DataFrame | None = None, *, databases: bool = True):
        if user is not None:
            user = user.set_index("id") if "id" in user.columns else user
            user = user.reindex(columns=["lat", "lon", "elevation"]).astype(np.float64)
            user.index = user.index.astype(str).str.strip()
        self._user = user
        self._databases = databases
        self._tables: list[tuple[str, pd.DataFrame]] | None = None

    def _load(self) -> list[tuple[str, pd.DataFrame]]:
        if self._tables is None:
            tables = []
            if self._user is not None and len(self._user):
                tables.append(("user", self._user[["lat", "lon", "elevation"]]))
            if self._databases:
                tables.append(("airportsdata", _airportsdata()))
                tables.append(("nsd_cccc", _nsd_cccc()))
            self._tables = [(name, t.dropna(subset=["lat", "lon"])) for name, t in tables]
        return self._tables

    def lookup(self, ids) -> pd.DataFrame:
        """Positions of ``ids``.

        Args:
          ids: station ids (strings; repeats allowed).

        Returns:
          A DataFrame indexed like ``ids`` with ``lat``, ``lon``, ``elevation`` (m) and
          ``source`` (one of :data:`SOURCES`, or ``""`` with NaN position when no source
          knows the id).
        """
        ids = pd.Index([str(i) for i in ids])
        uniq = pd.Index(ids.unique())
        out = pd.DataFrame(
            {"lat": np.nan, "lon": np.nan, "elevation": np.nan, "source": ""}, index=uniq
        )
        todo = uniq
        for name, table in self._load():
            found = todo[todo.isin(table.index)]
            if len(found):
                out.loc[found, ["lat", "lon", "elevation"]] = table.loc[
                    found, ["lat", "lon", "elevation"]
                ].to_numpy()
                out.loc[found, "source"] = name
                todo = todo[~todo.isin(found)]
        return out.loc[ids]
