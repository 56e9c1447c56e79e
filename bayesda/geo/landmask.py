"""Land fraction on a grid and coastline polylines, offline.

Both come from the ``global_land_mask`` package, which ships a 30 arc-second (about 1 km)
global land/ocean mask derived from GLOBE elevation data (most lakes count as land), so
nothing is downloaded at run time (cartopy would fetch Natural Earth coastlines).

Cost: the first use of the mask in a process loads it (about 4.5 s and 0.9 GB of memory).
:func:`land_fraction` and :func:`coastlines` are deterministic functions of their arguments
and of the mask, so their results are also kept on disk (:mod:`bayesda.runtime.diskcache`, keyed by
the grid or box, the settings and the ``global-land-mask`` version, verified on every read):
a later process with the same grid or box does not load the mask at all. Within a process
results are cached per grid / box.
"""

from __future__ import annotations

import functools
import importlib.metadata

import numpy as np

from bayesda.geo.grid import Grid, cell_edges, wrap_lon
from bayesda.runtime.diskcache import cached_arrays

__all__ = ["coastlines", "is_land", "land_fraction"]


def is_land(lat, lon) -> np.ndarray:
    """Boolean land mask at points ``(lat, lon)`` (degrees; any longitude convention).

    Args:
      lat: latitudes in [-90, 90], any shape.
      lon: longitudes, same shape.
    """
    from global_land_mask import globe

    lat = np.clip(np.asarray(lat, np.float64), -90.0, 90.0)
    lon = np.clip(wrap_lon(lon), -180.0, 180.0)
    return np.asarray(globe.is_land(lat, lon), bool)


_ALGORITHM = 1
"""Version of the computations below; bump it when they change (old cache entries then
stop matching)."""


def _source_version() -> str:
    try:
        return importlib.metadata.version("global-land-mask")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _key(**settings) -> dict:
    return {"algorithm": _ALGORITHM, "global_land_mask": _source_version(), **settings}


@functools.lru_cache(maxsize=16)
def _land_fraction_cached(lat: tuple, lon: tuple, oversample: int) -> np.ndarray:
    key = _key(lat=[float(v) for v in lat], lon=[float(v) for v in lon], oversample=oversample)
    out = cached_arrays(
        "land_fraction",
        key,
        lambda: {"land_fraction": _land_fraction(np.asarray(lat), np.asarray(lon), oversample)},
    )["land_fraction"]
    if out.shape != (len(lat), len(lon)) or out.dtype != np.float64:  # not what was stored
        out = _land_fraction(np.asarray(lat), np.asarray(lon), oversample)
    out.setflags(write=False)
    return out


def _land_fraction(lat: np.ndarray, lon: np.ndarray, oversample: int) -> np.ndarray:
    lat_e = np.clip(cell_edges(np.asarray(lat)), -90.0, 90.0)
    lon_e = cell_edges(np.asarray(lon))
    # sub-sample points at the centres of an oversample x oversample split of each cell
    f = (np.arange(oversample) + 0.5) / oversample
    sub_lat = (lat_e[:-1, None] + f[None, :] * np.diff(lat_e)[:, None]).ravel()
    sub_lon = (lon_e[:-1, None] + f[None, :] * np.diff(lon_e)[:, None]).ravel()
    la, lo = np.meshgrid(sub_lat, sub_lon, indexing="ij")
    land = is_land(la, lo).reshape(len(lat), oversample, len(lon), oversample)
    return land.mean(axis=(1, 3))


def land_fraction(grid: Grid, oversample: int = 5) -> np.ndarray:
    """Fraction of each grid cell that is land.

    A cell is the box between the midpoints to the neighbouring nodes (half a spacing
    beyond the outermost nodes); its land fraction is the share of ``oversample**2``
    evenly spaced sub-points that fall on land. Sub-points are not area-weighted within a
    cell (cells are small).

    Args:
      grid: the grid.
      oversample: sub-points per cell along each axis, >= 1.

    Returns:
      ``[nlat, nlon]`` float64 in [0, 1] (a read-only array, cached per grid in the
      process and on disk).
    """
    if int(oversample) != oversample or oversample < 1:
        raise ValueError(f"{oversample=} must be a positive integer")
    return _land_fraction_cached(tuple(grid.lat), tuple(grid.lon), int(oversample))


@functools.lru_cache(maxsize=32)
def _coastlines_cached(
    south: float, north: float, west: float, east: float, resolution: float
) -> tuple[np.ndarray, ...]:
    key = _key(box=[south, north, west, east], resolution=resolution)
    stored = cached_arrays(
        "coastlines", key, lambda: _pack(_coastlines(south, north, west, east, resolution))
    )
    return _unpack(stored)


def _pack(lines: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    """Polylines as one ``[n, 2]`` vertex array and the ``[k + 1]`` offsets of the lines."""
    sizes = [len(line) for line in lines]
    vertices = np.concatenate(lines) if lines else np.zeros((0, 2))
    return {
        "vertices": np.asarray(vertices, np.float64),
        "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
    }


def _unpack(stored: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    v, o = stored["vertices"], stored["offsets"]
    return tuple(v[a:b] for a, b in zip(o[:-1], o[1:], strict=True))


def _coastlines(
    south: float, north: float, west: float, east: float, resolution: float
) -> tuple[np.ndarray, ...]:
    import contourpy

    lat = np.linspace(south, north, max(2, int(round((north - south) / resolution)) + 1))
    lon = np.linspace(west, east, max(2, int(round((east - west) / resolution)) + 1))
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    z = is_land(la, lo).astype(np.float64)
    gen = contourpy.contour_generator(x=lon, y=lat, z=z, line_type="Separate")
    return tuple(np.asarray(line, np.float64) for line in gen.lines(0.5) if len(line) >= 2)


def coastlines(lat_range, lon_range, resolution: float = 0.25) -> list[np.ndarray]:
    """Coastline polylines inside a lat-lon box, from contouring the land mask at 0.5.

    Args:
      lat_range: ``(south, north)`` in degrees north.
      lon_range: ``(west, east)`` in degrees east, west < east in [-180, 180].
      resolution: spacing of the sampled mask in degrees (0.25 gives ~25 km detail).

    Returns:
      A list of ``[m, 2]`` float64 arrays of ``(lon, lat)`` vertices, ready for
      ``ax.plot(line[:, 0], line[:, 1])`` (fresh copies; results are cached per box in
      the process and on disk).
    """
    south, north = map(float, lat_range)
    west, east = map(float, lon_range)
    if not (-90 <= south < north <= 90):
        raise ValueError(f"lat_range={lat_range} must satisfy -90 <= south < north <= 90")
    if not (-180 <= west < east <= 180):
        raise ValueError(f"lon_range={lon_range} must satisfy -180 <= west < east <= 180")
    if not resolution > 0:
        raise ValueError(f"{resolution=} must be > 0")
    lines = _coastlines_cached(south, north, west, east, float(resolution))
    return [line.copy() for line in lines]
