"""The lat-lon grid convention shared by every part of bayesda.

Convention (applied by :mod:`bayesda.data.datasets` to everything it loads):

* dims ``(time, lat, lon)`` for a series, ``(lat, lon)`` for one field;
* ``lat`` in degrees north, strictly ascending, within [-90, 90];
* ``lon`` in degrees east, in [-180, 180), strictly ascending (a regional grid that
  crosses the antimeridian is not supported);
* the grid is *global* (periodic in longitude) when its regular longitude spacing times
  the number of columns spans 360 degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

__all__ = ["Grid", "cell_edges", "wrap_lon"]


def wrap_lon(lon):
    """Map longitudes (degrees east, any convention) to [-180, 180)."""
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0


def cell_edges(centres) -> np.ndarray:
    """``[n + 1]`` edges of the cells around ascending nodes ``centres`` (n >= 2).

    The edges are the midpoints between neighbouring nodes, and half a spacing beyond
    the two outermost nodes; no clipping (latitudes may pass the poles).
    """
    centres = np.asarray(centres, np.float64)
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


@dataclass(frozen=True, eq=False)
class Grid:
    """A regular lat-lon grid.

    Attributes:
      lat: ``[nlat]`` latitudes, degrees north, strictly ascending.
      lon: ``[nlon]`` longitudes, degrees east in [-180, 180), strictly ascending.
    """

    lat: np.ndarray
    lon: np.ndarray

    def __post_init__(self):
        lat = np.asarray(self.lat, dtype=np.float64)
        lon = np.asarray(self.lon, dtype=np.float64)
        if lat.ndim != 1 or lon.ndim != 1 or lat.size < 2 or lon.size < 2:
            raise ValueError(
                f"lat and lon must be 1-D with >= 2 points, got {lat.shape=} {lon.shape=}"
            )
        if np.any(np.diff(lat) <= 0):
            raise ValueError("lat must be strictly ascending")
        if np.any(np.diff(lon) <= 0):
            raise ValueError("lon must be strictly ascending")
        if lat[0] < -90 or lat[-1] > 90:
            raise ValueError(f"lat outside [-90, 90]: [{lat[0]}, {lat[-1]}]")
        if lon[0] < -180 or lon[-1] >= 180:
            raise ValueError(f"lon outside [-180, 180): [{lon[0]}, {lon[-1]}]")
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lat.size, self.lon.size)

    @property
    def size(self) -> int:
        return self.lat.size * self.lon.size

    @property
    def dlon(self) -> float:
        return float(np.mean(np.diff(self.lon)))

    @property
    def periodic(self) -> bool:
        """True when the grid wraps around in longitude (a global grid)."""
        return bool(np.isclose(self.dlon * self.lon.size, 360.0, atol=1e-3 * self.dlon))

    @classmethod
    def from_xarray(cls, obj: xr.Dataset | xr.DataArray) -> Grid:
        return cls(lat=obj["lat"].values, lon=obj["lon"].values)

    def coords(self) -> dict[str, xr.DataArray]:
        """CF-annotated coordinates for building xarray outputs on this grid."""
        return {
            "lat": xr.DataArray(
                self.lat, dims="lat", attrs={"units": "degrees_north", "standard_name": "latitude"}
            ),
            "lon": xr.DataArray(
                self.lon, dims="lon", attrs={"units": "degrees_east", "standard_name": "longitude"}
            ),
        }

    def template(self, name: str = "field", **attrs) -> xr.DataArray:
        """A zero ``(lat, lon)`` float32 DataArray on this grid."""
        return xr.DataArray(
            np.zeros(self.shape, np.float32),
            dims=("lat", "lon"),
            coords=self.coords(),
            name=name,
            attrs=attrs,
        )

    def contains(self, lat, lon) -> np.ndarray:
        """Boolean mask: which points lie inside the grid's domain (edges included)."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = wrap_lon(lon)
        inside = (lat >= self.lat[0]) & (lat <= self.lat[-1])
        if not self.periodic:
            inside &= (lon >= self.lon[0]) & (lon <= self.lon[-1])
        return inside

    def covers(self, lat, lon) -> np.ndarray:
        """Boolean mask: which points the bilinear observation operator accepts.

        A regional grid covers its domain (:meth:`contains`); a global grid with periodic
        longitude covers the whole sphere: poleward of its outermost rows it takes the
        value of that row (see :func:`bayesda.obs.operator.bilinear_stencil`).
        """
        if not self.periodic:
            return self.contains(lat, lon)
        return np.abs(np.asarray(lat, dtype=np.float64)) <= 90.0

    def lat_weights(self) -> np.ndarray:
        """``[nlat]`` area weights proportional to cos(latitude), mean 1."""
        w = np.cos(np.deg2rad(self.lat))
        return w / w.mean()

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Grid)
            and self.shape == other.shape
            and np.allclose(self.lat, other.lat, atol=1e-4)
            and np.allclose(self.lon, other.lon, atol=1e-4)
        )

    def __hash__(self):
        return hash((self.shape, round(float(self.lat[0]), 4), round(float(self.lon[0]), 4)))

    def to_dict(self) -> dict:
        return {"lat": self.lat.tolist(), "lon": self.lon.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Grid:
        return cls(lat=np.asarray(d["lat"]), lon=np.asarray(d["lon"]))
