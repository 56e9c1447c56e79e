"""Point observation tables: validation, reading, writing and pseudo-observations.

An observation table is a :class:`pandas.DataFrame` with one row per observation and the
columns

=============  ========  ====================================================================
column         required  meaning
=============  ========  ====================================================================
``lat``        yes       latitude, degrees north, in [-90, 90]
``lon``        yes       longitude, degrees east, in [-180, 180) after validation
``value``      yes       temperature *anomaly* w.r.t. the climatology, K
``sigma``      no        observation error standard deviation, K, > 0
``station_id`` no        a label
``time``       no        datetime64 valid time
``elevation``  no        station height above sea level, m (NaN when unknown)
=============  ========  ====================================================================

:func:`validate_obs` checks a table and returns a clean copy; :func:`read_obs` reads CSV,
netCDF, DataFrames or Datasets (and converts absolute temperatures to anomalies with a
:class:`bayesda.data.climatology.Climatology`); :func:`pseudo_obs` simulates observations of a
known truth field for experiments. Nothing is modified in place.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pandas as pd
import xarray as xr

from bayesda.geo.grid import Grid, wrap_lon
from bayesda.geo.units import canonical_units, difference_to_kelvin, to_kelvin
from bayesda.obs.operator import bilinear_stencil, interpolate

__all__ = [
    "NETWORKS",
    "OBS_DIM",
    "OPTIONAL",
    "REQUIRED",
    "STATIONS_PER_CLUSTER",
    "STATION_CLUSTER_KM",
    "STATION_LAND_WEIGHT",
    "DuplicateObservationsError",
    "as_obs_table",
    "climatology_at",
    "parse_times",
    "pseudo_obs",
    "read_obs",
    "validate_obs",
    "write_obs",
]

REQUIRED = ("lat", "lon", "value")
OPTIONAL = ("sigma", "station_id", "time", "elevation")
OBS_DIM = "obs"
NETWORKS = ("uniform", "station")
STATION_LAND_WEIGHT = 8.0
"""How many times denser the "station" network is over land than over sea, per area."""
STATION_CLUSTER_KM = 250.0
"""Standard deviation of the distance of a station from its cluster centre, km."""
STATIONS_PER_CLUSTER = 4
_KM_PER_DEG = 111.195


class DuplicateObservationsError(ValueError):
    """Observations share a location (and time).

    ``listing`` says which; ``str()`` ends with the Python remedy, :meth:`with_hint` with
    another (the command line's option).
    """

    API_HINT = "pass duplicates='mean' to merge them or duplicates='keep' to keep them"

    def __init__(self, listing: str, source: str = ""):
        self.listing, self.source = listing, source
        super().__init__(self.with_hint(self.API_HINT))

    def with_hint(self, hint: str) -> str:
        """The message with ``hint`` as its remedy."""
        return f"{self.source + ': ' if self.source else ''}{self.listing}; {hint}"


def _first_bad(mask: np.ndarray, df: pd.DataFrame, col: str, what: str) -> ValueError:
    k = int(np.flatnonzero(mask)[0])
    value = df[col].iloc[k]
    value = value.item() if isinstance(value, np.generic) else value
    return ValueError(
        f"{int(mask.sum())} observation(s) with {what}; first at row {k} "
        f"(index {df.index[k]!r}): {col}={value!r}"
    )


def _numeric(df: pd.DataFrame, col: str) -> np.ndarray:
    try:
        return pd.to_numeric(df[col], errors="raise").to_numpy(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"column {col!r} must be numeric: {err}") from err


def _timestamp_ns(value) -> pd.Timestamp:
    """One value as a naive-or-aware nanosecond Timestamp (NaT for a missing value)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dateutil's "could not infer format" and the like
        t = pd.Timestamp(value.strip() if isinstance(value, str) else value)
    return t if t is pd.NaT else t.as_unit("ns")


def parse_times(values, *, row=lambda k: f"row {k}", what: str = "time", nat_ok: bool = False):
    """``[n]`` datetime64[ns] (naive UTC) from dates and times in any form pandas reads.

    Times with a UTC offset (``2014-01-07T14:00+02:00``, ``...Z``) are converted to UTC, also
    when the offsets differ from row to row; times without one are taken as UTC. A column
    mixing the two is ambiguous and refused.

    Args:
      values: the column (strings, datetimes, datetime64).
      row: ``k -> str`` naming row ``k`` in messages (a file's line, a table's row).
      what: the column's name in messages.
      nat_ok: missing values become NaT (else they are refused).

    Raises:
      ValueError: a value that is not a date and time, one outside the dates a
        datetime64[ns] holds (1678-2261), a missing one (unless ``nat_ok``), or a mix of
        times with and without a UTC offset; the message names the row and the text.
    """
    import warnings

    s = pd.Series(values).reset_index(drop=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = pd.to_datetime(s)
        if getattr(fast.dt, "tz", None) is None and (nat_ok or not fast.isna().any()):
            # as_unit raises on overflow; to_numpy("datetime64[ns]") would wrap 2500 to 1915
            return fast.dt.as_unit("ns").to_numpy("datetime64[ns]")
    except (TypeError, ValueError, OverflowError):
        pass
    out = np.empty(len(s), "datetime64[ns]")
    aware = np.zeros(len(s), bool)
    for k, v in enumerate(s):
        try:
            t = _timestamp_ns(v)
        except (TypeError, ValueError, OverflowError) as err:
            bounds = isinstance(err, pd.errors.OutOfBoundsDatetime | OverflowError)
            reason = "outside the dates 1678-2261" if bounds else "not a date and time"
            raise ValueError(f"{row(k)}: {what}={v!r} is {reason}") from None
        if t is pd.NaT:
            if not nat_ok:
                raise ValueError(f"{row(k)}: {what} is missing ({v!r})")
            out[k] = np.datetime64("NaT", "ns")
            continue
        if t.tzinfo is not None:
            aware[k] = True
            t = t.tz_convert("UTC").tz_localize(None)
        out[k] = t.to_datetime64()
    known = ~np.isnat(out)
    if aware.any() and (~aware & known).any():
        k, j = int(np.flatnonzero(~aware & known)[0]), int(np.flatnonzero(aware)[0])
        raise ValueError(
            f"{row(k)}: {what}={s[k]!r} has no UTC offset, but {row(j)} has one "
            f"({s[j]!r}); give every time an offset (e.g. +02:00 or Z), or none (then all "
            "are taken as UTC)"
        )
    return out


def validate_obs(
    df: pd.DataFrame, grid: Grid | None = None, duplicates: str = "error"
) -> pd.DataFrame:
    """Check an observation table and return a clean copy.

    Args:
      df: the table (see the module docstring for columns).
      grid: if given and regional, every point must lie inside it (edges included).
      duplicates: what to do with observations at the same location (and time, if there is
        a ``time`` column): ``"error"`` raises listing them; ``"keep"`` keeps them;
        ``"mean"`` merges each group into one observation by inverse-variance weighting:
        ``value = sum(v / s^2) / sum(1 / s^2)`` and ``sigma = (sum(1 / s^2))^(-1/2)``,
        i.e. the mean and ``sigma / sqrt(k)`` for equal sigmas (without a ``sigma``
        column, the plain mean; the reduced noise is then not recorded).

    Returns:
      A new DataFrame with a fresh ``RangeIndex``, float64 ``lat``/``lon``/``value``/
      ``sigma``, ``lon`` wrapped to [-180, 180), ``time`` as datetime64[ns], ``station_id``
      as str; column order ``station_id, time, lat, lon, value, sigma`` (those present).

    Raises:
      ValueError: missing columns, empty table, non-numeric or non-finite values,
        ``sigma <= 0``, ``lat`` outside [-90, 90], ``lon`` outside [-180, 360], points
        outside a regional ``grid``, duplicate locations (with ``"error"``), or an unknown
        ``duplicates`` mode. The message names the first offending row and value.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"observations must be a pandas DataFrame, got {type(df).__name__}")
    if duplicates not in ("error", "keep", "mean"):
        raise ValueError(f"duplicates={duplicates!r}; expected 'error', 'keep' or 'mean'")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"observation table lacks column(s) {missing}; has {list(df.columns)}")
    if len(df) == 0:
        raise ValueError("observation table is empty")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    if "station_id" in df.columns:
        out["station_id"] = df["station_id"].astype(str).to_numpy()
    if "time" in df.columns:
        t = parse_times(df["time"], row=lambda k: f"row {k} (index {df.index[k]!r})", nat_ok=True)
        if np.any(np.isnat(t)):
            raise _first_bad(np.isnat(t), df, "time", "missing time")
        out["time"] = t
    for col in ("lat", "lon", "value", "sigma"):
        if col not in df.columns:
            continue
        x = _numeric(df, col)
        if not np.all(np.isfinite(x)):
            raise _first_bad(~np.isfinite(x), df, col, f"non-finite {col}")
        out[col] = x
    if "elevation" in df.columns:  # may be NaN (unknown), never checked for finiteness
        out["elevation"] = pd.to_numeric(df["elevation"], errors="coerce").to_numpy(np.float64)
    if "sigma" in out and np.any(out["sigma"] <= 0):
        raise _first_bad(out["sigma"].to_numpy() <= 0, df, "sigma", "sigma <= 0")
    lat, lon = out["lat"].to_numpy(), out["lon"].to_numpy()
    if np.any(np.abs(lat) > 90):
        raise _first_bad(np.abs(lat) > 90, df, "lat", "lat outside [-90, 90]")
    if np.any((lon < -180) | (lon > 360)):
        raise _first_bad((lon < -180) | (lon > 360), df, "lon", "lon outside [-180, 360]")
    out["lon"] = wrap_lon(lon)
    if grid is not None:
        outside = ~grid.covers(out["lat"].to_numpy(), out["lon"].to_numpy())
        if np.any(outside):
            k = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"{int(outside.sum())} observation(s) outside the grid (lat {grid.lat[0]}.."
                f"{grid.lat[-1]}, lon {grid.lon[0]}..{grid.lon[-1]}); first at row {k} "
                f"(index {df.index[k]!r}): lat={out['lat'].iloc[k]}, lon={out['lon'].iloc[k]}"
            )
    out = _handle_duplicates(out, duplicates)
    order = [
        c for c in ("station_id", "time", "lat", "lon", "value", "sigma", "elevation") if c in out
    ]
    out = out[order]
    out.attrs = dict(df.attrs)
    return out


def _handle_duplicates(out: pd.DataFrame, mode: str) -> pd.DataFrame:
    keys = [c for c in ("time", "lat", "lon") if c in out]
    dup = out.duplicated(subset=keys, keep=False).to_numpy()
    if not dup.any() or mode == "keep":
        return out
    if mode == "error":
        rows = np.flatnonzero(dup)
        shown = ", ".join(
            f"row {r} (lat={out['lat'].iloc[r]}, lon={out['lon'].iloc[r]})" for r in rows[:6]
        )
        where = "location and time" if "time" in out else "location"
        raise DuplicateObservationsError(
            f"{rows.size} observations share a {where}: {shown}{' ...' if rows.size > 6 else ''}"
        )
    w = 1.0 / np.square(out["sigma"]) if "sigma" in out else pd.Series(1.0, index=out.index)
    tmp = out.assign(_w=w, _wv=w * out["value"])
    agg = {"_w": "sum", "_wv": "sum"}
    if "station_id" in out:
        agg["station_id"] = lambda s: "+".join(dict.fromkeys(s))
    if "elevation" in out:
        agg["elevation"] = "mean"
    merged = tmp.groupby(keys, sort=False, as_index=False).agg(agg)
    merged["value"] = merged["_wv"] / merged["_w"]
    if "sigma" in out:
        merged["sigma"] = 1.0 / np.sqrt(merged["_w"])
    return merged.drop(columns=["_w", "_wv"]).reset_index(drop=True)


def _table_from_dataset(ds: xr.Dataset) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in ds.variables]
    if missing:
        raise ValueError(
            f"observation dataset lacks variable(s) {missing}; has {list(ds.variables)}"
        )
    cols = {}
    for name in (*REQUIRED, *OPTIONAL):
        if name not in ds.variables:
            continue
        v = ds[name]
        if v.ndim == 0:
            continue
        if v.dims != (OBS_DIM,):
            raise ValueError(f"variable {name!r} has dims {v.dims}, expected ({OBS_DIM!r},)")
        cols[name] = v.values
    df = pd.DataFrame(cols)
    if "time" in ds.variables and ds["time"].ndim == 0:
        df["time"] = ds["time"].values
    df.attrs = {k: v for k, v in ds.attrs.items() if isinstance(v, str | int | float)}
    return df


ACCEPTED = (
    "observations are a pandas DataFrame (columns lat, lon, value[, sigma, time, station_id]), "
    "an xarray Dataset (the same variables along 'obs'), or a path to a CSV or netCDF file"
)


def as_obs_table(obs, *, climatology=None, grid=None, where: str = "") -> pd.DataFrame:
    """``obs`` as an observation table: a DataFrame as it is, a Dataset or a path read with
    :func:`read_obs` (anomalies in K; ``climatology`` and ``grid`` bound the points).

    Raises:
      TypeError: anything else (an array, a list, a dict, None), naming the types accepted.
    """
    if isinstance(obs, pd.DataFrame):
        return obs
    if isinstance(obs, xr.Dataset | str | os.PathLike):
        return read_obs(obs, climatology=climatology, grid=grid)
    prefix = f"{where}: " if where else ""
    raise TypeError(f"{prefix}got a {type(obs).__name__}; {ACCEPTED} (bayesda.read_obs)")


NETCDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"\x89HDF\r\n\x1a\n")
"""The first bytes of a netCDF-3 (classic, 64-bit offset) or netCDF-4/HDF5 file."""


def _require_file(path: pathlib.Path, what: str) -> None:
    """A missing path, or a directory, named as what it is."""
    if path.is_dir():
        raise IsADirectoryError(
            f"{what} {str(path)!r} is a directory; give the file (a directory of per-time "
            "files is read by `bayesda reanalyse`)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")


def _load_table(src) -> pd.DataFrame:
    if isinstance(src, pd.DataFrame):
        return src.copy()
    if isinstance(src, xr.Dataset):
        return _table_from_dataset(src)
    if isinstance(src, str | os.PathLike):
        path = pathlib.Path(src)
        _require_file(path, "observation file")
        suffixes = [x.lower() for x in path.suffixes[-2:]]
        suffix = suffixes[0] if suffixes[-1:] == [".gz"] and len(suffixes) == 2 else path.suffix
        suffix = suffix.lower()
        with open(path, "rb") as f:
            head = f.read(8)
        if suffix in (".csv", ".txt") and head.startswith(NETCDF_MAGIC):
            raise ValueError(
                f"{str(path)!r} is a netCDF file, not CSV; name it .nc to read it as netCDF"
            )
        try:
            if suffix in (".csv", ".txt"):
                return pd.read_csv(path, comment="#")
            if suffix in (".nc", ".nc4", ".netcdf"):
                return _table_from_dataset(xr.load_dataset(path))
        except (ValueError, OSError) as err:  # pandas' parser errors are ValueErrors
            if isinstance(err, OSError) and not path.is_file():
                raise
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            kind = "CSV" if suffix in (".csv", ".txt") else "netCDF"
            raise ValueError(
                f"cannot read observations from {str(path)!r} as {kind}: {first}"
            ) from err
        raise ValueError(
            f"cannot read observations from {str(path)!r}: expected .csv, .csv.gz or .nc "
            "(a station format needs --format)"
        )
    raise TypeError(f"cannot read observations from a {type(src).__name__}: {ACCEPTED}")


def climatology_at(climatology, lat, lon, time, field: str = "mean") -> np.ndarray:
    """``[n]`` climatological mean (K) at points, bilinear in space, at each point's time.

    Args:
      climatology: a :class:`bayesda.data.climatology.Climatology`.
      lat, lon: ``[n]`` coordinates (inside its grid).
      time: ``[n]`` datetime64 (or one scalar for all points).
      field: ``"mean"`` or ``"sd"`` (the climatological SD, K).
    """
    lat = np.atleast_1d(np.asarray(lat, np.float64))
    lon = np.atleast_1d(np.asarray(lon, np.float64))
    times = np.broadcast_to(np.asarray(time, "datetime64[ns]"), lat.shape)
    stencil = bilinear_stencil(climatology.grid, lat, lon)
    out = np.empty(lat.size)
    uniq, inv = np.unique(times, return_inverse=True)
    if field == "sd":
        means = np.sqrt(np.maximum(climatology.variance_values(uniq), 0.0))
    else:
        means = climatology.mean_values(uniq)  # [nt, nlat, nlon]
    for i in range(uniq.size):
        rows = np.flatnonzero(inv == i)
        weight = stencil.weight[rows].astype(np.float64)
        sub = stencil._replace(idx=stencil.idx[rows], weight=weight)
        out[rows] = interpolate(means[i], sub)
    return out


def _climate_at(climatology, df: pd.DataFrame):
    """``(mean, sd)`` of the climatology at each row (K), or ``(None, None)`` if unknown."""
    if climatology is None or "time" not in df.columns:
        return None, None
    lat, lon, t = df["lat"].to_numpy(), df["lon"].to_numpy(), df["time"].to_numpy()
    mean = climatology_at(climatology, lat, lon, t)
    sd = climatology_at(climatology, lat, lon, t, field="sd")
    return mean, sd


def read_obs(
    src,
    *,
    units: str = "K",
    kind: str = "anomaly",
    climatology=None,
    time=None,
    grid: Grid | None = None,
    duplicates: str = "error",
    check: bool = True,
) -> pd.DataFrame:
    """Read and validate observations, returning anomalies in K.

    Args:
      src: a CSV path, a netCDF path (variables ``lat``, ``lon``, ``value`` and optional
        ``sigma``, ``station_id``, ``time`` along an ``obs`` dim; a scalar ``time`` applies to
        all), a DataFrame or an :class:`xarray.Dataset`.
      units: units of ``value`` and ``sigma``, any spelling
        :func:`bayesda.geo.units.canonical_units` accepts (``"K"``, ``"degC"``, ``"degF"``,
        ``"0.1degC"``). Absolute values are converted with the unit's offset, differences
        (anomalies, sigma) with its scale only.
      kind: ``"anomaly"`` (values are anomalies already) or ``"absolute"`` (temperatures,
        turned into anomalies by subtracting the climatological mean bilinearly
        interpolated to each observation at its time).
      climatology: the :class:`bayesda.data.climatology.Climatology`, required for
        ``kind="absolute"``; its grid also bounds the points when ``grid`` is None.
      time: valid time for all observations when the table has no ``time`` column (a
        column, when present, wins); stored in a ``time`` column.
      grid: a grid the points must lie in (see :func:`validate_obs`).
      duplicates: see :func:`validate_obs`.
      check: check the values' physical range for the declared units and kind
        (:mod:`bayesda.obs.plausible`; anomalies against the climatological SD when the
        climatology and the time are known).

    Returns:
      A validated DataFrame with ``value`` the anomaly in K; ``df.attrs["kind"] ==
      "anomaly"``.

    Raises:
      ValueError: unknown ``units`` or ``kind``, ``kind="absolute"`` without a climatology
        or a time, values implausible for the declared units and kind
        (:class:`bayesda.obs.plausible.ImplausibleObservationError`, naming the row, the value
        and the likely mistake), and anything :func:`validate_obs` rejects.
    """
    import bayesda.obs.plausible as plausible

    units = canonical_units(units)
    if kind not in ("anomaly", "absolute"):
        raise ValueError(f"kind={kind!r}; expected 'anomaly' or 'absolute'")
    df = _load_table(src)
    if time is not None and "time" not in df.columns:
        df["time"] = np.datetime64(pd.Timestamp(time).to_datetime64(), "ns")
    if grid is None and climatology is not None:
        grid = climatology.grid
    source = str(src) if isinstance(src, str | os.PathLike) else ""
    try:
        df = validate_obs(df, grid=grid, duplicates="keep" if kind == "absolute" else duplicates)
    except DuplicateObservationsError as err:
        raise DuplicateObservationsError(err.listing, source) from None
    except ValueError as err:
        raise ValueError(f"{source}: {err}" if source else str(err)) from err
    if kind == "absolute":
        if climatology is None:
            raise ValueError(
                "absolute temperatures (--kind absolute; kind='absolute' in Python): reading "
                "them needs a climatology to subtract, and this model has none"
            )
        if "time" not in df.columns:
            raise ValueError(
                f"{source or 'the table'}: kind absolute (--kind absolute) needs a time "
                "to subtract the climatology at: a 'time' column, or the analysis time (--time; "
                "time= in Python)"
            )
    if check:
        clim_mean, clim_sd = _climate_at(climatology, df)
        test = plausible.check_absolute if kind == "absolute" else plausible.check_anomaly
        test(df["value"].to_numpy(), units, clim_mean=clim_mean, clim_sd=clim_sd, source=source)
    if "sigma" in df.columns:
        df["sigma"] = difference_to_kelvin(df["sigma"].to_numpy(), units)
        if np.any(df["sigma"] <= 0):  # a denormal sigma can underflow to 0 when scaled
            raise _first_bad(
                df["sigma"].to_numpy() <= 0,
                df,
                "sigma",
                f"sigma <= 0 K once converted from {units}",
            )
    if kind == "anomaly":
        df["value"] = difference_to_kelvin(df["value"].to_numpy(), units)
    else:
        value = to_kelvin(df["value"].to_numpy(), units)
        clim = climatology_at(climatology, df["lat"], df["lon"], df["time"].to_numpy())
        df["value"] = value - clim
        try:
            df = validate_obs(df, grid=grid, duplicates=duplicates)
        except DuplicateObservationsError as err:
            raise DuplicateObservationsError(err.listing, source) from None
    df.attrs = {**df.attrs, "kind": "anomaly", "units": "K"}
    return df


def write_obs(df: pd.DataFrame, path: str | os.PathLike) -> pathlib.Path:
    """Validate (duplicates kept) and write a table to CSV atomically; returns the path.

    The file gets the permissions of any new file (the umask), not a temporary file's 600.
    """
    from bayesda.runtime.files import atomic_write

    df = validate_obs(df, duplicates="keep")
    path = pathlib.Path(path)
    with atomic_write(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.9g", date_format="%Y-%m-%dT%H:%M:%S")
    return path


def _domain(grid: Grid) -> tuple[float, float, float, float]:
    """``(south, north, west, east)`` of the area observations are drawn from."""
    if grid.periodic:
        return grid.lat[0], grid.lat[-1], -180.0, 180.0
    return grid.lat[0], grid.lat[-1], grid.lon[0], grid.lon[-1]


def _uniform_points(rng: np.random.Generator, n: int, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    south, north, west, east = _domain(grid)
    s = rng.uniform(np.sin(np.deg2rad(south)), np.sin(np.deg2rad(north)), n)
    return np.rad2deg(np.arcsin(s)), rng.uniform(west, east, n)


def _station_points(rng: np.random.Generator, n: int, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    from bayesda.geo.landmask import land_fraction

    south, north, west, east = _domain(grid)
    frac = land_fraction(grid)
    # per-cell intensity: area (cos lat) times land weighting
    weight = np.cos(np.deg2rad(grid.lat))[:, None] * (1.0 + (STATION_LAND_WEIGHT - 1.0) * frac)
    p = (weight / weight.sum()).ravel()
    n_clusters = max(1, int(np.ceil(n / STATIONS_PER_CLUSTER)))
    cells = rng.choice(p.size, size=n_clusters, p=p)
    ci, cj = np.unravel_index(cells, grid.shape)
    dlat = float(np.mean(np.diff(grid.lat)))
    c_lat = grid.lat[ci] + rng.uniform(-0.5, 0.5, n_clusters) * dlat
    c_lon = grid.lon[cj] + rng.uniform(-0.5, 0.5, n_clusters) * grid.dlon
    lat = np.empty(0)
    lon = np.empty(0)
    while lat.size < n:
        k = rng.integers(0, n_clusters, size=2 * n)
        scale = STATION_CLUSTER_KM / _KM_PER_DEG
        la = c_lat[k] + scale * rng.standard_normal(k.size)
        stretch = 1.0 / np.cos(np.deg2rad(np.clip(c_lat[k], -85.0, 85.0)))
        lo = c_lon[k] + scale * stretch * rng.standard_normal(k.size)
        lo = wrap_lon(lo) if grid.periodic else lo
        ok = (la >= south) & (la <= north) & (lo >= west) & (lo <= east)
        lat, lon = np.concatenate([lat, la[ok]]), np.concatenate([lon, lo[ok]])
    return lat[:n], lon[:n]


def pseudo_obs(
    truth: xr.DataArray,
    n: int | None = None,
    *,
    network: str = "uniform",
    sigma: float = 0.5,
    seed: int = 0,
    lat=None,
    lon=None,
) -> pd.DataFrame:
    """Simulate noisy point observations of a known field.

    Locations are continuous (not grid nodes):

    * ``"uniform"``: uniform over the domain's area (uniform in sin(lat) and in lon);
    * ``"station"``: clustered like a station network and denser over land:
      ``ceil(n / 4)`` cluster centres are drawn with probability proportional to cell area
      times ``1 + 7 * land_fraction`` (8x denser over land), and stations scatter around
      them with a 250 km standard deviation (points leaving the domain are redrawn);
    * given ``lat`` and ``lon`` arrays (``network`` is then ignored).

    Values are the bilinear interpolation of ``truth`` (:mod:`bayesda.obs.operator`) plus
    independent ``N(0, sigma^2)`` noise.

    Args:
      truth: a ``(lat, lon)`` field in K on the bayesda grid convention (a length-1
        ``time`` dim is squeezed); a scalar ``time`` coord is copied into a ``time`` column.
      n: number of observations (must equal ``len(lat)`` if both are given).
      network: ``"uniform"`` or ``"station"``.
      sigma: noise standard deviation in K, > 0 (scalar or ``[n]``).
      seed: seed of the :class:`numpy.random.Generator`: the same seed gives the same table.
      lat, lon: optional ``[n]`` fixed locations.

    Returns:
      A DataFrame with ``station_id`` (``"P00000"``...), [``time``], ``lat``, ``lon``,
      ``value``, ``sigma``.
    """
    if "time" in truth.dims and truth.sizes["time"] == 1:
        truth = truth.isel(time=0)
    if tuple(truth.dims) != ("lat", "lon"):
        raise ValueError(f"truth must be a (lat, lon) field, got dims {tuple(truth.dims)}")
    grid = Grid.from_xarray(truth)
    rng = np.random.default_rng(seed)
    if lat is not None or lon is not None:
        if lat is None or lon is None:
            raise ValueError("give both lat and lon, or neither")
        lat = np.atleast_1d(np.asarray(lat, np.float64))
        lon = np.atleast_1d(np.asarray(lon, np.float64))
        if n is not None and n != lat.size:
            raise ValueError(f"n={n} but {lat.size} locations given")
        n = lat.size
        network = "given"
    else:
        if n is None or int(n) != n or n < 1:
            raise ValueError(f"n={n!r} must be a positive integer")
        n = int(n)
        if network == "uniform":
            lat, lon = _uniform_points(rng, n, grid)
        elif network == "station":
            lat, lon = _station_points(rng, n, grid)
        else:
            raise ValueError(f"network={network!r}; expected one of {NETWORKS}")
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (n,)).copy()
    if not np.all(np.isfinite(sig) & (sig > 0)):
        raise ValueError(f"sigma={sigma!r} must be finite and > 0")
    stencil = bilinear_stencil(grid, lat, lon)
    stencil = stencil._replace(weight=stencil.weight.astype(np.float64))
    clean = interpolate(np.asarray(truth.values, np.float64), stencil)
    value = clean + sig * rng.standard_normal(n)
    df = pd.DataFrame({"station_id": [f"P{i:05d}" for i in range(n)]})
    if "time" in truth.coords and truth["time"].ndim == 0:
        df["time"] = np.datetime64(truth["time"].values, "ns")
    df["lat"], df["lon"], df["value"], df["sigma"] = lat, wrap_lon(lon), value, sig
    df.attrs = {"kind": "anomaly", "units": "K", "network": network, "seed": seed}
    return validate_obs(df, duplicates="keep")
