"""Physical-range checks of observation values, with a guess at the likely mistake.

Units and kinds are declared by the user (``--units``, ``--kind``), never guessed; but a
declaration can be wrong, and a wrong one gives a confident, wrong posterior (Celsius read
as kelvin is an anomaly of -273 K). These checks stop such tables before any work:

* absolute temperatures, once in K, must lie in :data:`ABSOLUTE_RANGE_K` (the coldest and
  hottest near-surface air temperatures measured on Earth, with a margin);
* anomalies must lie within :data:`MAX_ANOMALY_SD` climatological SDs of zero at their
  place and time (the SD floored at :data:`MIN_SD_K`), or within :data:`MAX_ANOMALY_K`
  when there is no climatology or no time.

On failure the error names the first offending row, its value as given and in K, and the
reading that would make the table plausible ("values look like degC; pass --units degC"):
every other unit, and the other kind, are tried against the climatology.
"""

from __future__ import annotations

import numpy as np

from bayesda.geo.units import UNITS, difference_to_kelvin, to_kelvin

__all__ = [
    "ABSOLUTE_RANGE_K",
    "MAX_ANOMALY_K",
    "MAX_ANOMALY_SD",
    "MIN_SD_K",
    "ImplausibleObservationError",
    "check_absolute",
    "check_anomaly",
]

ABSOLUTE_RANGE_K = (170.0, 340.0)
"""Plausible near-surface air temperature, K (records: 184 K, 330 K)."""
MAX_ANOMALY_SD = 10.0
"""Largest plausible |anomaly| in climatological SDs at the observation's place and time."""
MIN_SD_K = 1.0
"""Floor of the climatological SD in the anomaly check, K."""
MAX_ANOMALY_K = 60.0
"""Largest plausible |anomaly| when no climatological SD is known, K."""

_LABEL = {"K": "K", "degC": "degC", "degF": "degF", "0.1degC": "tenths of degC"}


class ImplausibleObservationError(ValueError):
    """Observation values outside the physical range for their declared units and kind."""


def _plausible_absolute(kelvin: np.ndarray) -> np.ndarray:
    lo, hi = ABSOLUTE_RANGE_K
    return (kelvin >= lo) & (kelvin <= hi)


def _anomaly_bound(sd: np.ndarray | None, n: int) -> np.ndarray:
    if sd is None:
        return np.full(n, MAX_ANOMALY_K)
    return MAX_ANOMALY_SD * np.maximum(np.asarray(sd, np.float64), MIN_SD_K)


def _readings(raw: np.ndarray, clim_mean: np.ndarray | None, sd: np.ndarray | None):
    """Every reading of ``raw``: ``(kind, units, plausible fraction, median misfit in SDs)``."""
    out = []
    scale = np.maximum(sd, MIN_SD_K) if sd is not None else None
    for u in UNITS:
        k = to_kelvin(raw, u)
        ok = _plausible_absolute(k)
        misfit = (
            float(np.median(np.abs(k - clim_mean) / scale)) if clim_mean is not None else np.inf
        )
        out.append(("absolute", u, float(ok.mean()), misfit))
        if clim_mean is not None:
            a = difference_to_kelvin(raw, u)
            ok = np.abs(a) <= _anomaly_bound(sd, a.size)
            out.append(("anomaly", u, float(ok.mean()), float(np.median(np.abs(a) / scale))))
        else:
            a = difference_to_kelvin(raw, u)
            out.append(("anomaly", u, float((np.abs(a) <= MAX_ANOMALY_K).mean()), np.inf))
    return out


def _hint(raw, kind, units, clim_mean, sd) -> str:
    cands = [r for r in _readings(raw, clim_mean, sd) if (r[0], r[1]) != (kind, units)]
    plausible = [r for r in cands if r[2] >= 0.99]
    if not plausible:
        return (
            "no other units or kind makes them plausible either; check the values, "
            "--units and --kind"
        )

    def changes(r):
        return int(r[1] != units) + int(r[0] != kind)

    # The reading that changes least among those close to the climate (median misfit
    # within 3 SDs: a tenths-of-a-degree reading of anything is "close" as an anomaly,
    # so closeness alone would pick it); without a climatology, the one that changes least.
    close = [r for r in plausible if r[3] <= 3.0] or (plausible if clim_mean is None else [])
    best = (
        min(close, key=lambda r: (changes(r), r[3]))
        if close
        else min(plausible, key=lambda r: r[3])
    )
    what, u = best[0], best[1]
    look = (
        f"absolute temperatures in {_LABEL[u]}"
        if what == "absolute"
        else f"anomalies in {_LABEL[u]}"
    )
    fix = []
    if what != kind:
        fix.append(f"--kind {what}")
    if u != units:
        fix.append(f"--units {u}")
    return f"values look like {look}; pass {' '.join(fix)}"


def _fail(raw, kelvin, bad, kind, units, what, clim_mean, sd, source) -> None:
    k = int(np.flatnonzero(bad)[0])
    where = f"{source}: " if source else ""
    hint = _hint(raw, kind, units, clim_mean, sd)
    raise ImplausibleObservationError(
        f"{where}{int(bad.sum())} of {bad.size} observation(s) {what}; first at row {k}: "
        f"value={raw[k]:g} {units} ({kind}) = {kelvin[k]:.2f} K. {hint}"
    )


def check_absolute(raw, units: str, *, clim_mean=None, clim_sd=None, source: str = "") -> None:
    """Check absolute temperatures given in ``units``.

    Args:
      raw: ``[n]`` values as given.
      units: their declared units (canonical key).
      clim_mean, clim_sd: ``[n]`` climatological mean and SD at each observation (K), used
        to name the likely mistake; optional.
      source: the file name, for the message.

    Raises:
      ImplausibleObservationError: a value outside :data:`ABSOLUTE_RANGE_K` once in K.
    """
    raw = np.asarray(raw, np.float64)
    kelvin = to_kelvin(raw, units)
    bad = ~_plausible_absolute(kelvin)
    if bad.any():
        lo, hi = ABSOLUTE_RANGE_K
        _fail(
            raw,
            kelvin,
            bad,
            "absolute",
            units,
            f"outside the physical range {lo:g}..{hi:g} K of near-surface air temperature",
            clim_mean,
            clim_sd,
            source,
        )


def check_anomaly(raw, units: str, *, clim_mean=None, clim_sd=None, source: str = "") -> None:
    """Check temperature anomalies given in ``units``.

    Args:
      raw: ``[n]`` values as given.
      units: their declared units (canonical key).
      clim_mean, clim_sd: ``[n]`` climatological mean and SD at each observation's place and
        time (K); without ``clim_sd`` the bound is :data:`MAX_ANOMALY_K`.
      source: the file name, for the message.

    Raises:
      ImplausibleObservationError: an anomaly beyond :data:`MAX_ANOMALY_SD` SDs.
    """
    raw = np.asarray(raw, np.float64)
    anomaly = difference_to_kelvin(raw, units)
    bound = _anomaly_bound(clim_sd, raw.size)
    bad = np.abs(anomaly) > bound
    if bad.any():
        what = (
            f"more than {MAX_ANOMALY_SD:g} climatological SDs from the climatology"
            if clim_sd is not None
            else f"larger than {MAX_ANOMALY_K:g} K in magnitude"
        )
        _fail(raw, anomaly, bad, "anomaly", units, what, clim_mean, clim_sd, source)
