"""Observation operator ``H``: bilinear interpolation from the grid to point locations.

The operator is stored as a sparse stencil: for each of ``n`` points, the flat indices of
the four surrounding grid nodes and their bilinear weights. Applying it is a gather and a
weighted sum, which works unchanged on NumPy and JAX arrays (and so inside a NumPyro model).

Edges: on a regional grid a point must lie inside the grid's bounding box (edges
included); on a global grid longitude wraps around, and points poleward of the outermost
latitude row take that row's values (constant extrapolation).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse

from bayesda.geo.grid import Grid, wrap_lon

__all__ = [
    "Stencil",
    "apply_stencil",
    "as_matrix",
    "as_sparse",
    "bilinear_stencil",
    "interpolate",
    "nearest_index",
]


class Stencil(NamedTuple):
    """A linear observation operator as a stencil: each row a weighted sum of grid nodes.

    Attributes:
      idx: ``[n, w]`` int32 flat indices into a ``(lat, lon)`` field raveled in C order
        (``w = 4`` for bilinear interpolation).
      weight: ``[n, w]`` float32 weights, each row summing to 1.
    """

    idx: np.ndarray
    weight: np.ndarray

    @property
    def n(self) -> int:
        return self.idx.shape[0]


def _axis_position(coord: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower node index and fractional offset along a non-periodic ascending axis."""
    i = np.clip(np.searchsorted(coord, x, side="right") - 1, 0, coord.size - 2)
    t = (x - coord[i]) / (coord[i + 1] - coord[i])
    return i, np.clip(t, 0.0, 1.0)


def bilinear_stencil(grid: Grid, lat, lon) -> Stencil:
    """Build the bilinear stencil of points ``(lat, lon)`` on ``grid``.

    Args:
      grid: the target grid.
      lat: ``[n]`` latitudes, degrees north.
      lon: ``[n]`` longitudes, degrees east (any convention; wrapped to [-180, 180)).

    Returns:
      The :class:`Stencil` of the points.

    Raises:
      ValueError: a point is non-finite or lies outside a regional grid.
    """
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = wrap_lon(np.atleast_1d(lon))
    if lat.shape != lon.shape or lat.ndim != 1:
        raise ValueError(f"lat and lon must be 1-D of equal length, got {lat.shape=} {lon.shape=}")
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise ValueError("observation coordinates must be finite")
    outside = ~grid.covers(lat, lon)
    if np.any(outside):
        k = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{int(outside.sum())} point(s) outside the grid, "
            f"first at lat={lat[k]:.3f}, lon={lon[k]:.3f}; "
            f"grid spans lat [{grid.lat[0]}, {grid.lat[-1]}], lon [{grid.lon[0]}, {grid.lon[-1]}]"
        )
    i, t = _axis_position(grid.lat, lat)
    nlon = grid.lon.size
    if grid.periodic:
        pos = ((lon - grid.lon[0]) % 360.0) / grid.dlon
        j = np.floor(pos).astype(np.int64) % nlon
        u = pos - np.floor(pos)
        j1 = (j + 1) % nlon
    else:
        j, u = _axis_position(grid.lon, lon)
        j1 = j + 1
    i1 = i + 1
    idx = np.stack([i * nlon + j, i * nlon + j1, i1 * nlon + j, i1 * nlon + j1], axis=-1)
    weight = np.stack([(1 - t) * (1 - u), (1 - t) * u, t * (1 - u), t * u], axis=-1)
    return Stencil(idx=idx.astype(np.int32), weight=weight.astype(np.float32))


def apply_stencil(field, idx, weight):
    """Apply ``H`` given as stencil arrays: ``[..., nlat, nlon]`` -> ``[..., n]`` (NumPy or JAX).

    The one implementation of the observation operator; ``idx``, ``weight`` are ``[n, 4]``
    (JAX arrays inside a traced model).
    """
    flat = field.reshape(field.shape[:-2] + (-1,))
    return (flat[..., idx] * weight).sum(-1)


def interpolate(field, stencil: Stencil):
    """Apply ``H``: ``[..., nlat, nlon]`` field to ``[..., n]`` values (NumPy or JAX)."""
    return apply_stencil(field, stencil.idx, stencil.weight)


def as_sparse(stencil: Stencil, npix: int) -> scipy.sparse.csr_matrix:
    """The sparse ``[n, npix]`` matrix of ``H`` (float64)."""
    rows = np.repeat(np.arange(stencil.n), stencil.idx.shape[1])
    return scipy.sparse.csr_matrix(
        (stencil.weight.ravel().astype(np.float64), (rows, stencil.idx.ravel())),
        shape=(stencil.n, npix),
    )


def as_matrix(stencil: Stencil, npix: int) -> np.ndarray:
    """The dense ``[n, npix]`` matrix of ``H`` (for closed-form checks and small problems)."""
    H = np.zeros((stencil.n, npix), dtype=np.float64)
    rows = np.repeat(np.arange(stencil.n), stencil.idx.shape[1])
    np.add.at(H, (rows, stencil.idx.ravel()), stencil.weight.ravel().astype(np.float64))
    return H


def nearest_index(grid: Grid, lat, lon) -> np.ndarray:
    """``[n]`` flat index of the grid node nearest (in the stencil's weights) to each point."""
    st = bilinear_stencil(grid, lat, lon)
    return st.idx[np.arange(st.n), np.argmax(st.weight, axis=-1)]
