"""Loading near-surface air temperature onto the bayesda grid convention.

Everything bayesda reads goes through :func:`load_dataset` (named datasets and files) or
:func:`standardize` (objects a user already has in memory). Both return an
:class:`xarray.Dataset` with exactly one variable, ``tas``:

* near-surface air temperature, float32, ``units="K"`` (values in degrees Celsius are
  converted using the ``units`` attribute), CF ``standard_name="air_temperature"``;
* dims exactly ``(time, lat, lon)``; ``time`` strictly ascending; ``lat`` ascending in
  degrees north; ``lon`` ascending in [-180, 180) (0..360 longitudes are wrapped), see
  :mod:`bayesda.geo.grid`;
* dataset attrs ``source`` (where the data comes from), ``file`` (the file read, if any)
  and ``source_variable`` (the variable's name in that file).

Named datasets (:data:`DATASETS`) are looked up by :func:`find_dataset`: first in a data
directory (argument ``data_dir`` or the environment variable ``BAYESDA_DATA_DIR``, as
``DIR/<name>/<file>`` or ``DIR/<file>``), then in the xarray tutorial cache, and finally
downloaded with :mod:`xarray.tutorial`'s source (needs internet and ``pooch``).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from dataclasses import dataclass

import numpy as np
import xarray as xr

from bayesda.geo.grid import Grid, wrap_lon

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "ENV_DATA_DIR",
    "TUTORIAL_BASE_URL",
    "VAR",
    "describe",
    "find_dataset",
    "load_dataset",
    "standardize",
]

ENV_DATA_DIR = "BAYESDA_DATA_DIR"
"""Environment variable naming a directory that holds the named datasets."""

TUTORIAL_BASE_URL = "https://github.com/pydata/xarray-data/raw/master"

VAR = "tas"
"""Name of the temperature variable in every standardized dataset."""

_KELVIN_UNITS = {"k", "degk", "deg_k", "kelvin", "kelvins", "degrees_k", "degreek"}
_CELSIUS_UNITS = {
    "c",
    "degc",
    "deg_c",
    "celsius",
    "degrees_c",
    "degree_celsius",
    "degrees_celsius",
    "°c",
    "degreec",
}
_LAT_NAMES = ("lat", "latitude", "y")
_LON_NAMES = ("lon", "longitude", "x")
_TEMPERATURE_NAMES = ("tas", "t2m", "air", "2t", "t2", "temperature", "tmp", "temp")


@dataclass(frozen=True)
class DatasetSpec:
    """A named public dataset.

    Attributes:
      name: bayesda's name for it (the registry key and the data-dir subdirectory).
      tutorial_name: the name :func:`xarray.tutorial.open_dataset` knows it by.
      filename: its file name (in the data directory and the tutorial cache).
      var: the temperature variable in the file.
      engine: the xarray backend that reads it.
      description: one line on what it is.
      terms: licence / citation.
      sha256: SHA-256 of the file's bytes, checked by pooch when it is downloaded.
      content_sha256: :func:`content_digest` of its temperature values and coordinates,
        checked after a download when the bytes may legitimately differ (a re-encoded
        copy with identical values).
    """

    name: str
    tutorial_name: str
    filename: str
    var: str
    engine: str
    description: str
    terms: str
    sha256: str | None = None
    content_sha256: str | None = None

    @property
    def url(self) -> str:
        return f"{TUTORIAL_BASE_URL}/{self.filename}"


DATASETS: dict[str, DatasetSpec] = {
    "ncep-air": DatasetSpec(
        name="ncep-air",
        tutorial_name="air_temperature",
        filename="air_temperature.nc",
        var="air",
        engine="netcdf4",
        description="NCEP/NCAR Reanalysis 1 air temperature at sigma 0.995, 4x daily, "
        "2013-2014, 2.5 deg, North America (25 x 53)",
        terms="NOAA PSL, NCEP/NCAR Reanalysis 1; cite Kalnay et al. (1996)",
        # The copy this digest was computed from is a re-encoding of the public file with
        # identical values (see ../shared/data/README.md), so the values are checked, not
        # the bytes.
        content_sha256="52fac776ccc13645ea916e3383b302616854e5f1ec70b754a76e7b155691737b",
    ),
    "era5-uk": DatasetSpec(
        name="era5-uk",
        tutorial_name="era5-2mt-2019-03-uk",
        filename="era5-2mt-2019-03-uk.grib",
        var="t2m",
        engine="cfgrib",
        description="ERA5 2 m temperature, hourly, March 2019, 0.25 deg, British Isles (33 x 49)",
        terms="Copernicus Climate Change Service, ERA5 (Copernicus licence, attribution required)",
        sha256="e5e82609f0e28e84822852e15d20c88dbb4b142a30264a7e6f87b9b5c7501df9",
    ),
}


def _tutorial_cache_dir() -> pathlib.Path:
    """Where :mod:`xarray.tutorial` (through pooch) caches downloads on this platform."""
    try:
        import pooch

        return pathlib.Path(pooch.os_cache("xarray_tutorial_data"))
    except ImportError:
        try:
            import platformdirs

            return pathlib.Path(platformdirs.user_cache_dir("xarray_tutorial_data"))
        except ImportError:
            return pathlib.Path.home() / ".cache" / "xarray_tutorial_data"


def content_digest(ds: xr.Dataset, var: str) -> str:
    """SHA-256 of a dataset's temperature values (rounded to 0.01) and coordinates.

    Independent of the file's encoding (packed int16 or float, compression), so a
    re-encoded copy with the same values has the same digest.
    """
    h = hashlib.sha256()
    for name in (var, *ds[var].dims):
        x = np.asarray(ds[name].values)
        if np.issubdtype(x.dtype, np.datetime64):
            x = x.astype("datetime64[s]").astype(np.int64)
        else:
            x = np.round(np.asarray(x, np.float64) * 100.0)
            x = np.where(np.isfinite(x), x, -(2**62)).astype(np.int64)
        h.update(f"{name}{x.shape}".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _check_download(path: pathlib.Path, spec: DatasetSpec) -> pathlib.Path:
    """Verify a downloaded file's content; delete it and raise if it is not the dataset."""
    if spec.content_sha256 is None:
        return path
    try:
        with xr.open_dataset(path, engine=spec.engine) as ds:
            digest = content_digest(ds, spec.var)
    except Exception as err:
        digest = f"unreadable ({type(err).__name__}: {err})"
    if digest != spec.content_sha256:
        path.unlink(missing_ok=True)
        raise ValueError(
            f"downloaded {spec.filename} does not hold the expected {spec.name} values "
            f"(content digest {digest[:16]}..., expected {spec.content_sha256[:16]}...); "
            "deleted it"
        )
    return path


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


def find_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> pathlib.Path:
    """Locate the file of a named dataset, downloading it only as a last resort.

    Looks, in order, in ``data_dir`` (if given), in ``$BAYESDA_DATA_DIR`` (if set), each as
    ``DIR/<name>/<file>`` and ``DIR/<file>``; then in the xarray tutorial cache; then, if
    ``download``, fetches it from the xarray tutorial repository into that cache.

    Args:
      name: a key of :data:`DATASETS`, e.g. ``"ncep-air"``.
      data_dir: a directory to search first.
      download: whether to try downloading (needs internet and the ``pooch`` package).

    Returns:
      The path of the file.

    Raises:
      KeyError: ``name`` is not a known dataset.
      FileNotFoundError: the file is nowhere; the message lists every place searched and
        how to provide the data.
    """
    spec = _spec(name)
    dirs = []
    if data_dir is not None:
        dirs.append(pathlib.Path(data_dir))
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        dirs.append(pathlib.Path(env))
    candidates = [p for d in dirs for p in (d / spec.name / spec.filename, d / spec.filename)]
    candidates.append(_tutorial_cache_dir() / spec.filename)
    for path in candidates:
        if path.is_file():
            return path
    tried = [str(p) for p in candidates]
    if download:
        try:
            import pooch

            known = f"sha256:{spec.sha256}" if spec.sha256 else None
            fetched = pooch.retrieve(
                url=spec.url,
                known_hash=known,
                path=_tutorial_cache_dir(),
                fname=spec.filename,
                progressbar=False,
            )
            return _check_download(pathlib.Path(fetched), spec)
        except ImportError:
            tried.append(f"download from {spec.url} (skipped: package 'pooch' not installed)")
        except Exception as err:  # network errors come in many types
            tried.append(f"download from {spec.url} (failed: {type(err).__name__}: {err})")
    else:
        tried.append(f"download from {spec.url} (not attempted: download=False)")
    raise FileNotFoundError(
        f"dataset {name!r} ({spec.filename}) not found. Looked in:\n  - "
        + "\n  - ".join(tried)
        + f"\nProvide it by setting {ENV_DATA_DIR} to a directory holding "
        f"{spec.name}/{spec.filename} (or {spec.filename}), or connect to the internet and "
        f"install pooch so that xarray.tutorial can download {spec.tutorial_name!r}."
    )


def _engine_for(path: pathlib.Path) -> str:
    suffix = "".join(path.suffixes[-1:]).lower()
    if path.is_dir() or suffix == ".zarr":
        return "zarr"
    if suffix in (".nc", ".nc4", ".netcdf", ".cdf", ".h5"):
        return "netcdf4"
    if suffix in (".grib", ".grib1", ".grib2", ".grb", ".grb2"):
        return "cfgrib"
    raise ValueError(
        f"cannot tell the format of {str(path)!r} from its suffix {suffix!r}; "
        "expected .nc, .zarr or .grib"
    )


_FORMAT_NAMES = {"netcdf4": "netCDF", "zarr": "zarr", "cfgrib": "GRIB"}


def _open_eager(path: pathlib.Path, engine: str) -> xr.Dataset:
    kwargs = {}
    if engine == "cfgrib":
        try:
            import cfgrib  # noqa: F401
        except ImportError as err:
            raise ImportError(
                f"reading GRIB file {str(path)!r} needs cfgrib and eccodes: "
                "pip install 'bayesda[grib]'"
            ) from err
        # An empty indexpath keeps cfgrib from writing an .idx file next to a read-only file.
        kwargs["backend_kwargs"] = {"indexpath": ""}
    if engine == "zarr":
        kwargs["consolidated"] = None
    try:
        with xr.open_dataset(path, engine=engine, **kwargs) as ds:
            return ds.load()
    except (ValueError, OSError, RuntimeError) as err:
        if isinstance(err, OSError) and err.errno is not None and not path.is_file():
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot read {str(path)!r} as {engine} ({first}); is it really a "
            f"{_FORMAT_NAMES.get(engine, engine)} file? Its name says so"
        ) from err


def load_dataset(
    name_or_path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    var: str | None = None,
) -> xr.Dataset:
    """Load a named dataset or a file into memory on the bayesda convention.

    Args:
      name_or_path: a key of :data:`DATASETS` or a path to a .nc, .zarr or .grib file.
      data_dir: a directory to search first for named datasets (see :func:`find_dataset`).
      var: the temperature variable in a file (default: the dataset's, or guessed).

    Returns:
      A Dataset with one float32 variable ``tas`` (time, lat, lon) in K; see the module
      docstring.

    Raises:
      FileNotFoundError: the dataset or file cannot be found.
      ValueError: the content does not fit the convention (see :func:`standardize`).
    """
    key = os.fspath(name_or_path)
    if isinstance(name_or_path, str) and key in DATASETS:
        spec = DATASETS[key]
        path = find_dataset(key, data_dir)
        raw = _open_eager(path, spec.engine)
        source = f"{spec.name}: {spec.description}. {spec.terms}"
        return standardize(raw, var or spec.var, source=source, file=str(path))
    path = pathlib.Path(key).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{key!r} is neither a known dataset {sorted(DATASETS)} nor an existing file"
        )
    raw = _open_eager(path, _engine_for(path))
    return standardize(raw, var, source=raw.attrs.get("title", path.name), file=str(path))


def _pick_variable(ds: xr.Dataset, var: str | None) -> str:
    names = list(ds.data_vars)
    if var is not None:
        if var not in ds.data_vars:
            raise ValueError(f"variable {var!r} not in dataset; it has {names}")
        return var
    if len(names) == 1:
        return names[0]
    for candidate in _TEMPERATURE_NAMES:
        if candidate in ds.data_vars:
            return candidate
    raise ValueError(f"cannot tell which of {names} is temperature; pass var=")


def _rename_axis(da: xr.DataArray, names: tuple[str, ...], target: str) -> xr.DataArray:
    found = [n for n in names if n in da.dims]
    if not found:
        raise ValueError(f"no {target} dimension among {tuple(da.dims)} (looked for {names})")
    return da.rename({found[0]: target}) if found[0] != target else da


def _to_kelvin(da: xr.DataArray, units: str | None) -> xr.DataArray:
    units = units if units is not None else da.attrs.get("units")
    if units is None:
        raise ValueError(f"variable {da.name!r} has no 'units' attribute; pass units='K' or 'degC'")
    key = str(units).strip().lower().replace(" ", "_")
    if key in _KELVIN_UNITS:
        return da
    if key in _CELSIUS_UNITS:
        return da + 273.15
    raise ValueError(f"unknown temperature units {units!r} for {da.name!r}; expected K or degC")


def standardize(
    obj: xr.Dataset | xr.DataArray,
    var: str | None = None,
    *,
    units: str | None = None,
    source: str | None = None,
    file: str | None = None,
) -> xr.Dataset:
    """Put temperature data onto the bayesda convention (see the module docstring).

    Renames ``latitude``/``longitude`` to ``lat``/``lon``, drops non-index coordinates
    (e.g. cfgrib's ``step``, ``valid_time``), squeezes other length-1 dims, wraps longitudes
    to [-180, 180), sorts lat, lon and time ascending, converts to K and float32.

    Args:
      obj: a Dataset or DataArray with a time, a latitude and a longitude dimension (a single
        field with a scalar ``time`` coordinate is given a length-1 time dim).
      var: the temperature variable of a Dataset (default: the only one, or a usual name).
      units: override the ``units`` attribute (``"K"`` or ``"degC"``).
      source: provenance recorded in the ``source`` attr (default: kept from ``obj``).
      file: the file it was read from, recorded in the ``file`` attr.

    Returns:
      A Dataset with the single variable ``tas``.

    Raises:
      ValueError: missing dims or units, unknown units, other non-singleton dims, duplicate
        coordinates (e.g. lon 0 and 360), or a regional grid crossing the antimeridian.
    """
    if isinstance(obj, xr.DataArray):
        da = obj
        name = str(obj.name) if obj.name is not None else VAR
        attrs = dict(obj.attrs)
    else:
        name = _pick_variable(obj, var)
        da = obj[name]
        attrs = dict(obj.attrs)
    da = _rename_axis(da, _LAT_NAMES, "lat")
    da = _rename_axis(da, _LON_NAMES, "lon")
    if "time" not in da.dims:
        if "time" in da.coords and da["time"].ndim == 0:
            da = da.expand_dims("time")
        else:
            raise ValueError(f"no time dimension or scalar time coordinate in {tuple(da.dims)}")
    extra = [d for d in da.dims if d not in ("time", "lat", "lon")]
    big = {d: da.sizes[d] for d in extra if da.sizes[d] != 1}
    if big:
        raise ValueError(f"dims {big} besides (time, lat, lon); select one level/member first")
    da = da.squeeze(extra, drop=True) if extra else da
    da = da.drop_vars([c for c in da.coords if c not in ("time", "lat", "lon")])
    da = da.transpose("time", "lat", "lon")
    da = _to_kelvin(da.astype(np.float64), units)

    lon_raw = np.asarray(da["lon"].values, np.float64)
    lon = wrap_lon(lon_raw)
    da = da.assign_coords(lon=lon, lat=np.asarray(da["lat"].values, np.float64))
    da = da.sortby(["lat", "lon"])
    for dim in ("lat", "lon", "time"):
        values = da[dim].values
        if np.unique(values).size != values.size:
            raise ValueError(
                f"duplicate {dim} values after standardizing (e.g. lon 0 and 360 "
                f"both present); {dim} = {values}"
            )
    if da.sizes["lon"] > 2 and np.any(lon != lon_raw):
        steps = np.diff(da["lon"].values)
        if steps.max() > 1.5 * np.median(steps) and not Grid.from_xarray(da).periodic:
            raise ValueError(
                f"longitudes {lon_raw.min()}..{lon_raw.max()} cross the antimeridian, which the "
                "grid convention does not support; select a region that does not cross 180E"
            )
    da = da.sortby("time")
    grid = Grid.from_xarray(da)  # validates ranges and monotonicity

    out = xr.DataArray(
        da.values.astype(np.float32),
        dims=("time", "lat", "lon"),
        coords={"time": da["time"].values, **grid.coords()},
        name=VAR,
        attrs={
            "standard_name": "air_temperature",
            "long_name": "near-surface air temperature",
            "units": "K",
        },
    )
    out["time"].attrs["standard_name"] = "time"
    ds_attrs = {
        "source": source if source is not None else _provenance(attrs),
        "source_variable": name,
        "Conventions": "CF-1.8",
    }
    if file is not None:
        ds_attrs["file"] = file
    return xr.Dataset({VAR: out}, attrs=ds_attrs)


def _provenance(attrs: dict) -> str:
    return str(attrs.get("source", attrs.get("title", "")))


def describe(ds: xr.Dataset) -> dict:
    """A JSON-able summary of a standardized dataset: dims, grid, period, resolution."""
    grid = Grid.from_xarray(ds)
    time = ds["time"].values
    return {
        "dims": dict(ds[VAR].sizes),
        "lat": [float(grid.lat[0]), float(grid.lat[-1])],
        "lon": [float(grid.lon[0]), float(grid.lon[-1])],
        "dlat": float(np.mean(np.diff(grid.lat))),
        "dlon": grid.dlon,
        "periodic": grid.periodic,
        "start": str(time[0]),
        "end": str(time[-1]),
        "source": ds.attrs.get("source", ""),
        "file": ds.attrs.get("file", ""),
    }
