"""The model grid's surface height, from an offline global elevation grid.

Source: ``Altitude.h5``, shipped inside the ``pvlib`` package (BSD-3-Clause; on PyPI, so
nothing is downloaded at run time): a global 1/12-degree (5 arc-minute, 2160 x 4320)
grid of surface altitude aggregated by Mapzen from ETOPO1, GMTED2010, SRTM, 3DEP (NED)
and national elevation models (pvlib's ``location.lookup_altitude`` documents the
attributions). It is stored as ``uint8`` in 28 m steps from -450 m; 255 is "no data",
which is the ocean (68% of the cells), taken as 0 m. 1.5% of the cells are below sea
level, mostly sea floor in fjords and Arctic channels; those that
:func:`bayesda.geo.landmask.is_land` calls sea are set to 0 m too, so land below sea level
(the Dead Sea, Death Valley) keeps its height.

**Ice sheets are missing.** Over Greenland and Antarctica the source holds the bedrock,
not the ice surface (72.5 N, 38.5 W, near Summit at about 3,200 m, reads 278 m). Land
cells there are marked unknown (NaN), and so is every model cell that contains one:
observations in those cells get no lapse-rate adjustment (:mod:`bayesda.obs.elevation`).

:func:`surface_height` averages it over each model grid cell (the box between the
midpoints to the neighbouring nodes), which stands in for the smoothed orography that a
reanalysis model's near-surface level follows. Only building a model's surface height
needs the file (``pip install 'bayesda[orography]'``); a model ships the result as
``surface_height.nc`` (:mod:`bayesda.prior.checkpoint`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pathlib

import numpy as np
import xarray as xr

from bayesda.geo.grid import Grid, cell_edges, wrap_lon

__all__ = ["SOURCE", "altitude_file", "read_altitude", "surface_height", "to_dataset"]

SOURCE = (
    "cell mean of pvlib's Altitude.h5 (pvlib.location.lookup_altitude: 1/12-degree global "
    "altitude aggregated by Mapzen from ETOPO1, GMTED2010, SRTM, 3DEP and national DEMs; "
    "28 m steps; no-data (ocean) and sea floor taken as 0 m)"
)
_NODATA = 255
_STEP_M, _OFFSET_M = 28.0, -450.0


def altitude_file() -> pathlib.Path:
    """The path of ``Altitude.h5``: ``$BAYESDA_ALTITUDE_FILE``, else the installed pvlib's.

    Raises:
      ImportError: neither is there (names the extra to install).
    """
    env = os.environ.get("BAYESDA_ALTITUDE_FILE")
    if env:
        path = pathlib.Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"BAYESDA_ALTITUDE_FILE={env!r} is not a file")
        return path
    spec = importlib.util.find_spec("pvlib")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the surface-height source ships with pvlib: pip install 'bayesda[orography]' "
            "(or set BAYESDA_ALTITUDE_FILE to a copy of pvlib/data/Altitude.h5)"
        )
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "data" / "Altitude.h5"
    if not path.is_file():
        raise ImportError(f"pvlib is installed but has no {path}; reinstall pvlib >= 0.10")
    return path


@functools.lru_cache(maxsize=2)
def read_altitude(path: str | os.PathLike | None = None) -> xr.DataArray:
    """The source grid as a ``(lat, lon)`` DataArray in m (ocean 0 m), cell centres.

    Latitude runs north to south (90 - 1/24 ... -90 + 1/24) and longitude west to east
    (-180 + 1/24 ...), as stored.
    """
    import h5py

    path = pathlib.Path(path) if path is not None else altitude_file()
    with h5py.File(path, "r") as f:
        raw = f["Altitude"][:]
    if raw.ndim != 2 or raw.dtype != np.uint8:
        raise ValueError(f"{path}: expected a 2-D uint8 'Altitude', got {raw.dtype} {raw.shape}")
    nlat, nlon = raw.shape
    height = np.where(raw == _NODATA, 0.0, raw * _STEP_M + _OFFSET_M).astype(np.float32)
    lat = 90.0 - (np.arange(nlat) + 0.5) * 180.0 / nlat
    lon = -180.0 + (np.arange(nlon) + 0.5) * 360.0 / nlon
    below = np.nonzero(height < 0)
    if below[0].size:
        from bayesda.geo.landmask import is_land

        sea = ~is_land(lat[below[0]], lon[below[1]])
        height[below[0][sea], below[1][sea]] = 0.0
    height[_ice_sheet_land(lat, lon)] = np.nan
    out = xr.DataArray(height, coords={"lat": lat, "lon": lon}, dims=("lat", "lon"))
    out.attrs = {"units": "m", "source": str(path)}
    return out


def _ice_sheet_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``[nlat, nlon]`` True on Greenland (59-84 N, 74-10 W) and Antarctic (S of 60 S) land."""
    from bayesda.geo.landmask import is_land

    mask = np.zeros((lat.size, lon.size), bool)
    green_r = np.flatnonzero((lat > 59.0) & (lat < 84.0))
    green_c = np.flatnonzero((lon > -74.0) & (lon < -10.0))
    la, lo = np.meshgrid(lat[green_r], lon[green_c], indexing="ij")
    mask[np.ix_(green_r, green_c)] = is_land(la, lo)
    ant_r = np.flatnonzero(lat < -60.0)
    la, lo = np.meshgrid(lat[ant_r], lon, indexing="ij")
    mask[ant_r, :] = is_land(la, lo)
    return mask


def surface_height(grid: Grid, altitude: xr.DataArray | None = None) -> np.ndarray:
    """The mean surface height of each cell of ``grid``, m.

    A cell is the box between the midpoints to the neighbouring nodes (half a spacing
    beyond the outermost nodes; longitudes wrap), as for
    :func:`bayesda.geo.landmask.land_fraction`. Every source cell whose centre falls in the
    box counts equally (cells are small, so no area weights).

    Args:
      grid: the model grid.
      altitude: the source grid (default :func:`read_altitude`).

    Returns:
      ``[nlat, nlon]`` float64, m; NaN where a cell holds ice-sheet land (unknown).

    Raises:
      ValueError: a model cell holds no source cell (a grid finer than 1/12 degree).
    """
    src = read_altitude() if altitude is None else altitude
    s_lat = src["lat"].to_numpy()
    s_lon = wrap_lon(src["lon"].to_numpy())
    values = src.to_numpy()
    lat_e = np.clip(cell_edges(np.asarray(grid.lat, np.float64)), -90.0, 90.0)
    lon_e = cell_edges(np.asarray(grid.lon, np.float64))
    lo, hi = np.minimum(lat_e[:-1], lat_e[1:]), np.maximum(lat_e[:-1], lat_e[1:])
    out = np.empty(grid.shape)
    for j in range(len(grid.lon)):
        # source longitudes inside [west, east), measured eastward from west (wraps)
        width = lon_e[j + 1] - lon_e[j]
        cols = np.flatnonzero(np.mod(s_lon - lon_e[j], 360.0) < width)
        for i in range(len(grid.lat)):
            rows = np.flatnonzero((s_lat >= lo[i]) & (s_lat < hi[i]))
            if rows.size == 0 or cols.size == 0:
                raise ValueError(
                    f"grid cell ({grid.lat[i]:g}, {grid.lon[j]:g}) holds no source cell; "
                    f"the grid is finer than the source ({180 / s_lat.size:g} degrees)"
                )
            out[i, j] = values[np.ix_(rows, cols)].mean()
    return out


def to_dataset(height: np.ndarray, grid: Grid, source: str = SOURCE) -> xr.Dataset:
    """The CF-style ``surface_height.nc`` content a model ships (variable ``orog``, m)."""
    height = np.asarray(height, np.float64)
    if height.shape != grid.shape:
        raise ValueError(f"surface height shape {height.shape} != grid {grid.shape}")
    if np.any(np.isinf(height)):
        raise ValueError("surface height has infinite values (NaN marks unknown cells)")
    da = xr.DataArray(
        height.astype(np.float32),
        coords={"lat": np.asarray(grid.lat), "lon": np.asarray(grid.lon)},
        dims=("lat", "lon"),
        attrs={
            "standard_name": "surface_altitude",
            "long_name": "model grid cell mean surface height",
            "units": "m",
        },
    )
    return xr.Dataset({"orog": da}, attrs={"source": source})
