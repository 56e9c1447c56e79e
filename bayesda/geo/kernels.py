"""Isotropic covariance kernels on the sphere: distances between grid nodes and correlations.

The one home of the kernels used by the shipped prior's representation error
(:mod:`bayesda.prior.representation`) and by the synthetic truth (:mod:`bayesda.sim.grf`).

Distance. Correlations are functions of the *chordal* distance ``2 R sin(d / 2R)`` between
points (``d`` the great-circle distance, ``R = 6371 km``). For points closer than about a
quarter of the globe the two differ by less than 3% (``d = 2000 km``: 0.4%), but only the
chordal version is guaranteed positive definite on the whole sphere for the Matern-3/2 and
squared-exponential families (Gneiting 2013, Bernoulli 19(4): with great-circle distance
they are not valid covariances on the sphere). Pass ``distance="great_circle"`` for the
other; a jitter still keeps the matrix numerically positive definite on small grids.
"""

from __future__ import annotations

import numpy as np

from bayesda.geo.grid import Grid

__all__ = [
    "DISTANCES",
    "EARTH_RADIUS_KM",
    "JITTER",
    "KINDS",
    "correlation",
    "pairwise_distance_km",
]

EARTH_RADIUS_KM = 6371.0
KINDS = ("matern32", "sqexp")
DISTANCES = ("chordal", "great_circle")
JITTER = 1e-8
"""Relative diagonal jitter (times the largest variance) that keeps ``cov`` positive definite."""


def _unit_vectors(grid: Grid) -> np.ndarray:
    lat, lon = np.meshgrid(np.deg2rad(grid.lat), np.deg2rad(grid.lon), indexing="ij")
    return np.stack(
        [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1
    ).reshape(-1, 3)


def pairwise_distance_km(grid: Grid, distance: str = "chordal") -> np.ndarray:
    """``[npix, npix]`` distances between grid nodes (raveled C order), km."""
    if distance not in DISTANCES:
        raise ValueError(f"distance={distance!r}; expected one of {DISTANCES}")
    u = _unit_vectors(grid)
    chord = np.sqrt(np.maximum(2.0 - 2.0 * np.clip(u @ u.T, -1.0, 1.0), 0.0))  # unit sphere
    if distance == "chordal":
        return EARTH_RADIUS_KM * chord
    return EARTH_RADIUS_KM * 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


def correlation(dist_km: np.ndarray, length_scale_km: float, kind: str = "matern32") -> np.ndarray:
    """Isotropic correlation at distance ``dist_km``.

    ``matern32``: ``(1 + sqrt(3) r) exp(-sqrt(3) r)``; ``sqexp``: ``exp(-r^2 / 2)``; with
    ``r = dist / length_scale``.
    """
    if not length_scale_km > 0:
        raise ValueError(f"{length_scale_km=} must be > 0")
    r = np.asarray(dist_km, np.float64) / length_scale_km
    if kind == "matern32":
        return (1.0 + np.sqrt(3.0) * r) * np.exp(-np.sqrt(3.0) * r)
    if kind == "sqexp":
        return np.exp(-0.5 * r**2)
    raise ValueError(f"kind={kind!r}; expected one of {KINDS}")
