"""Station height against the model's surface height: a lapse-rate adjustment.

A station 500 m above the model's (smoothed) surface is colder than the model's
near-surface air by about ``0.0065 K/m * 500 m = 3.3 K``: without an adjustment that
difference is read as weather. :func:`adjust` moves every observation with a known
``elevation`` to the model surface,

    ``value' = value + rate * (elevation - h_model)``,

with ``h_model`` the model's surface height (:mod:`bayesda.geo.orography`) interpolated to the
station as the field is (bilinear), and widens its error, since the true lapse rate of a
day is not ``rate`` (inversions in winter, steeper profiles in summer):

    ``sigma'^2 = sigma^2 + (rate_sd * |elevation - h_model|)^2``.

Defaults: ``rate`` 6.5 K/km (the standard atmosphere); ``rate_sd`` 2 K/km. Measured on
real stations (``python -m analysis.elevation.elevation``): the difference between 1968-1997
monthly means at 300 Colorado stations (r-cran-fields' COmonthlyMet) and NCEP at the
same places falls with station-minus-grid height at 3.5 (January) to 7.6 (July) K/km;
the monthly slopes scatter by about 1.3 K/km, and a single day's more.

Observations without an elevation (NaN), or in a cell whose surface height is unknown
(ice sheets, :mod:`bayesda.geo.orography`), are left as they are and counted.

Physical checks on what the adjustment uses:

* a station height outside :data:`VALID_HEIGHT_M` (the Dead Sea shore to Everest's summit:
  -450 to 8850 m) is not a height (a missing code such as -9999, feet or a typo): it is
  treated as missing, counted and named;
* a station more than :data:`MAX_HEIGHT_DIFFERENCE_M` above or below the model surface is
  moved by at most that difference (the shift is capped), while its error term keeps the
  whole difference; such stations are counted and named. On the NCEP 2.5 degree grid real
  stations are within it: Climax, Colorado (3400 m) is 1100 m above the model surface,
  Mount Washington (1917 m) 1680 m, Pikes Peak's summit (4300 m) 2090 m; a height given in
  feet instead of metres is not.

The adjusted table carries ``height_adjustment`` (K, added to ``value``) and
``height_adjustment_sd`` (K, the error SD added to ``sigma`` in quadrature), so that quality
control can weigh an observation by how much of it is the adjustment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayesda.obs.operator import bilinear_stencil

__all__ = [
    "MAX_HEIGHT_DIFFERENCE_M",
    "VALID_HEIGHT_M",
    "LapseRate",
    "adjust",
    "describe",
    "surface_height_at",
]

VALID_HEIGHT_M = (-450.0, 8850.0)
"""Station heights (m) that can be real: the Dead Sea shore to the summit of Everest."""
MAX_HEIGHT_DIFFERENCE_M = 2000.0
"""Largest station-minus-model height difference (m) the shift follows (see the module
docstring); beyond it the shift is capped and the station reported."""


@dataclass(frozen=True)
class LapseRate:
    """The adjustment's settings.

    Attributes:
      rate: K per km of height; temperature falls with height at this rate. 0 turns the
        adjustment off.
      rate_sd: K per km; the uncertainty of ``rate`` on one day, which widens ``sigma``.
    """

    rate: float = 6.5
    rate_sd: float = 2.0

    def __post_init__(self):
        for name in ("rate", "rate_sd"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0 or v > 15:
                raise ValueError(f"{name}={v!r} K/km; expected a number in [0, 15]")


def surface_height_at(prior, lat, lon) -> np.ndarray:
    """The prior's surface height (m) at points, bilinear; NaN where unknown.

    Raises:
      ValueError: the prior has no surface height.
    """
    height = getattr(prior, "surface_height", None)
    if height is None:
        raise ValueError(
            f"model {prior.name!r} ships no surface height (surface_height.nc); add one "
            "with `bayesda data orography MODEL_DIR`"
        )
    st = bilinear_stencil(prior.grid, np.asarray(lat, np.float64), np.asarray(lon, np.float64))
    h = np.asarray(height, np.float64).reshape(-1)
    # any NaN corner with weight makes the point unknown
    corner = h[st.idx]
    unknown = (np.isnan(corner) & (st.weight > 0)).any(axis=-1)
    out = (np.nan_to_num(corner) * st.weight).sum(axis=-1)
    return np.where(unknown, np.nan, out)


def adjust(prior, obs: pd.DataFrame, lapse: LapseRate | None = None) -> tuple[pd.DataFrame, dict]:
    """Move observations to the model's surface height (see the module docstring).

    Args:
      prior: a prior with ``surface_height`` (``[nlat, nlon]`` m), or without one (then
        nothing changes and the record says why).
      obs: observations with ``lat``, ``lon``, ``value``, ``sigma`` and ``elevation`` (m;
        NaN when unknown); a table without ``elevation`` is returned as it is.
      lapse: the settings (default :class:`LapseRate`).

    Returns:
      ``(obs, record)``: a copy with ``value`` and ``sigma`` adjusted, impossible
      ``elevation`` values set to NaN, and the columns ``model_height`` (m),
      ``height_adjustment`` (K, added to ``value``) and ``height_adjustment_sd`` (K, added to
      ``sigma`` in quadrature); and a JSON-able record ``{"rate_k_per_km",
      "rate_sd_k_per_km", "n_adjusted", "n_no_elevation", "n_no_model_height",
      "n_bad_elevation", "bad_elevation", "n_capped", "capped", "max_height_difference_m",
      "mean_height_difference_m", "max_abs_height_difference_m", "mean_adjustment_k",
      "max_abs_adjustment_k"}`` (or ``{"skipped": why}``); ``bad_elevation`` and ``capped``
      list the first few stations with their height (m) or height difference (m).

    Raises:
      ValueError: ``sigma`` is missing where an error term is to be added.
    """
    lapse = LapseRate() if lapse is None else lapse
    if "elevation" not in obs.columns:
        return obs, {"skipped": "no elevation column"}
    if getattr(prior, "surface_height", None) is None:
        return obs, {"skipped": f"model {prior.name!r} has no surface height"}
    if lapse.rate == 0 and lapse.rate_sd == 0:
        return obs, {"skipped": "lapse rate 0"}
    out = obs.copy()
    elev = pd.to_numeric(out["elevation"], errors="coerce").to_numpy(np.float64)
    lo, hi = VALID_HEIGHT_M
    bad = np.isfinite(elev) & ((elev < lo) | (elev > hi))
    bad_examples = _examples(out, bad, elev, "m")
    elev = np.where(bad, np.nan, elev)
    out["elevation"] = elev
    h = surface_height_at(prior, out["lat"].to_numpy(), out["lon"].to_numpy())
    dz = elev - h
    ok = np.isfinite(dz)
    cap = MAX_HEIGHT_DIFFERENCE_M
    capped = ok & (np.abs(dz) > cap)
    shift = np.where(ok, lapse.rate * np.clip(dz, -cap, cap) / 1000.0, 0.0)
    extra_sd = np.where(ok, lapse.rate_sd * np.abs(dz) / 1000.0, 0.0)
    if ok.any() and lapse.rate_sd > 0 and "sigma" not in out.columns:
        raise ValueError(
            "observations with an elevation need a 'sigma' column for the lapse-rate error "
            "term; add one, or turn the term off (--lapse-rate-sd 0; LapseRate(rate_sd=0) "
            "in Python)"
        )
    out["value"] = out["value"].to_numpy(np.float64) + shift
    if "sigma" in out.columns:
        out["sigma"] = np.hypot(out["sigma"].to_numpy(np.float64), extra_sd)
    out["model_height"] = h
    out["height_adjustment"] = shift
    out["height_adjustment_sd"] = extra_sd
    record = {
        "rate_k_per_km": lapse.rate,
        "rate_sd_k_per_km": lapse.rate_sd,
        "n_adjusted": int(ok.sum()),
        "n_no_elevation": int(np.isnan(elev).sum() - bad.sum()),
        "n_no_model_height": int((np.isfinite(elev) & np.isnan(h)).sum()),
        "n_bad_elevation": int(bad.sum()),
        "bad_elevation": bad_examples,
        "n_capped": int(capped.sum()),
        "capped": _examples(out, capped, dz, "m"),
        "max_height_difference_m": cap,
        "mean_height_difference_m": float(dz[ok].mean()) if ok.any() else None,
        "max_abs_height_difference_m": float(np.abs(dz[ok]).max()) if ok.any() else None,
        "mean_adjustment_k": float(shift[ok].mean()) if ok.any() else None,
        "max_abs_adjustment_k": float(np.abs(shift[ok]).max()) if ok.any() else None,
    }
    return out, record


def _examples(obs: pd.DataFrame, mask: np.ndarray, values: np.ndarray, unit: str) -> list:
    """The first few rows of ``mask``: their station id (or row number) and value."""
    rows = np.flatnonzero(mask)[:5]
    ids = obs["station_id"].astype(str).to_numpy() if "station_id" in obs else None
    return [
        {"station": ids[k] if ids is not None else f"row {k}", f"value_{unit}": float(values[k])}
        for k in rows
    ]


def describe(record: dict) -> list[str]:
    """The lines a run prints about the adjustment (:func:`adjust`'s record)."""
    e = record
    if "skipped" in e:
        return [f"elevation: no lapse-rate adjustment ({e['skipped']})"]
    line = (
        f"elevation: {e['n_adjusted']} stations moved to the model surface at "
        f"{e['rate_k_per_km']:g} +- {e['rate_sd_k_per_km']:g} K/km"
    )
    if e["n_adjusted"]:
        line += (
            f" (station - model height: mean {e['mean_height_difference_m']:+.0f} m, "
            f"max |dz| {e['max_abs_height_difference_m']:.0f} m; mean adjustment "
            f"{e['mean_adjustment_k']:+.2f} K)"
        )
    skipped = e["n_no_elevation"] + e["n_no_model_height"]
    if skipped:
        line += (
            f"; {e['n_no_elevation']} without elevation, {e['n_no_model_height']} where "
            "the model height is unknown"
        )
    lines = [line]

    def named(items, sign: bool) -> str:
        fmt = "{:+.0f}" if sign else "{:g}"
        shown = ", ".join(f"{x['station']} {fmt.format(x['value_m'])} m" for x in items)
        return shown

    n_bad = e.get("n_bad_elevation", 0)
    if n_bad:
        lo, hi = VALID_HEIGHT_M
        lines.append(
            f"  {n_bad} station height{'s' if n_bad > 1 else ''} outside [{lo:g}, {hi:g}] m "
            f"treated as missing ({named(e['bad_elevation'], False)}"
            f"{' ...' if n_bad > len(e['bad_elevation']) else ''}): a missing code, feet, "
            "or a typo?"
        )
    n_cap = e.get("n_capped", 0)
    if n_cap:
        cap = e["max_height_difference_m"]
        lines.append(
            f"  {n_cap} station{'s' if n_cap > 1 else ''} more than {cap:.0f} m from the model "
            f"surface ({named(e['capped'], True)}{' ...' if n_cap > len(e['capped']) else ''}):"
            f" shift capped at {e['rate_k_per_km'] * cap / 1000:.1f} K, error term kept; are "
            "the heights in metres?"
        )
    return lines
