"""Physical-range checks of observation values, with a guess at the likely mistake.

Units and kinds are declared by the user (``--units``, ``--kind``), never guessed; but a
declaration can be wrong, and a wrong one gives a confident, wrong posterior (Celsius read
as kelvin is an anomaly of -273 K). These checks stop such tables before any work:

* absolute temperatures, once in K, must lie in :data:`ABSOLUTE_RANGE_K` (the coldest and
  hottest near-surface air temperatures measured on Earth, with a margin);
* anomalies must lie within :data:`MAX_ANOMALY_SD` climatological SDs of zero at their
  place and time (the SD floored at :data:`MIN_SD_K`), or within :data:`MAX_ANOMALY_K`
  when there is no climatology or no time.

:func:`check_absolute` and :func:`check_anomaly` refuse a table with any value outside
them. :func:`screen_absolute` is for files of many independent reports (a METAR bulletin
stream): it returns which values to keep, dropping a few impossible ones (a report of
90.7 degC among thousands), and refuses the file only when more than
:data:`MAX_DROPPED_FRACTION` of its values are implausible.

On refusal the error names the first offending row, its value as given and in K, and the
reading that would make the table plausible ("values look like degC; pass --units degC").
A reading is offered only when following it would pass the same check: every other unit,
and the other kind, are tried against the climatology with the check's own bounds and
tolerance. For anomalies whose spread is plausible but whose centre is not (all about
+12 K), no other unit is offered (a unit scales anomalies, it does not shift them); the
message names the common offset instead.
"""

from __future__ import annotations

import numpy as np

from bayesda.geo.units import UNITS, difference_to_kelvin, to_kelvin

__all__ = [
    "ABSOLUTE_RANGE_K",
    "MAX_ANOMALY_K",
    "MAX_ANOMALY_SD",
    "MAX_DROPPED_FRACTION",
    "MIN_SD_K",
    "ImplausibleObservationError",
    "check_absolute",
    "check_anomaly",
    "screen_absolute",
]

ABSOLUTE_RANGE_K = (170.0, 340.0)
"""Plausible near-surface air temperature, K (records: 184 K, 330 K)."""
MAX_ANOMALY_SD = 10.0
"""Largest plausible |anomaly| in climatological SDs at the observation's place and time."""
MIN_SD_K = 1.0
"""Floor of the climatological SD in the anomaly check, K."""
MAX_ANOMALY_K = 60.0
"""Largest plausible |anomaly| when no climatological SD is known, K."""
MAX_DROPPED_FRACTION = 0.01
"""Largest fraction of a file's values that :func:`screen_absolute` drops as implausible;
beyond it the file is refused (a units mistake makes nearly all values implausible)."""

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


def _tolerated(bad: np.ndarray, tolerance: float) -> bool:
    """Whether a check with this ``tolerance`` passes (drops, at most) the ``bad`` values."""
    return int(bad.sum()) <= tolerance * bad.size


def _readings(raw: np.ndarray, clim_mean: np.ndarray | None, sd: np.ndarray | None):
    """Every reading of ``raw``: ``(kind, units, implausible mask, median misfit in SDs)``.

    The masks are the checks' own: :func:`check_absolute`'s range and
    :func:`check_anomaly`'s bound.
    """
    out = []
    scale = np.maximum(sd, MIN_SD_K) if sd is not None else None
    for u in UNITS:
        k = to_kelvin(raw, u)
        misfit = (
            float(np.median(np.abs(k - clim_mean) / scale))
            if clim_mean is not None and scale is not None
            else np.inf
        )
        out.append(("absolute", u, ~_plausible_absolute(k), misfit))
        a = difference_to_kelvin(raw, u)
        misfit = float(np.median(np.abs(a) / scale)) if scale is not None else np.inf
        out.append(("anomaly", u, np.abs(a) > _anomaly_bound(sd, a.size), misfit))
    return out


def _common_offset(raw, units, sd, tolerance) -> float | None:
    """The median anomaly (K) when only it makes anomalies implausible, else None."""
    a = difference_to_kelvin(raw, units)
    shift = float(np.median(a))
    bound = _anomaly_bound(sd, a.size)
    if _tolerated(np.abs(a - shift) > bound, tolerance):
        return shift
    return None


def _hint(raw, kind, units, clim_mean, sd, tolerance: float = 0.0, fixed: bool = False) -> str:
    """The reading that makes the values pass their check, or why there is none.

    ``fixed``: the format prescribes the units and kind (no option changes them), so the
    reading is named without telling to pass an option."""
    cands = [r for r in _readings(raw, clim_mean, sd) if (r[0], r[1]) != (kind, units)]
    offset = _common_offset(raw, units, sd, tolerance) if kind == "anomaly" else None
    if offset is not None:  # a unit scales anomalies; it cannot explain a common shift
        cands = [r for r in cands if r[0] != "anomaly"]
    plausible = [r for r in cands if _tolerated(r[2], tolerance)]
    # With a climatology, a reading must also be close to it (median misfit within 3 SDs:
    # right units give about 0.7); among those, the one that changes least (a tenths-of-a-
    # degree reading of anything is "close" as an anomaly, so closeness alone would pick it).
    # Without a climatology, the plausible reading that changes least.
    close = [r for r in plausible if r[3] <= 3.0] if clim_mean is not None else plausible
    if not close:
        if offset is not None:
            return (
                f"their spread is plausible but they sit {offset:+.1f} K (median) from zero: "
                "no other units explain a common shift; check that they are anomalies "
                "from this model's climatology (--kind absolute for temperatures)"
            )
        return (
            "no other units or kind makes them plausible"
            + (" and close to the climatology" if plausible else "")
            + "; check the values, --units and --kind"
        )

    def changes(r):
        return int(r[1] != units) + int(r[0] != kind)

    best = min(close, key=lambda r: (changes(r), r[3]))
    what, u = best[0], best[1]
    look = (
        f"absolute temperatures in {_LABEL[u]}"
        if what == "absolute"
        else f"anomalies in {_LABEL[u]}"
    )
    if fixed:
        return (
            f"values look like {look}, not {_LABEL[units]} as the format prescribes; check the file"
        )
    fix = []
    if what != kind:
        fix.append(f"--kind {what}")
    if u != units:
        fix.append(f"--units {u}")
    return f"values look like {look}; pass {' '.join(fix)}"


def _fail(
    raw, kelvin, bad, kind, units, what, clim_mean, sd, source, tolerance=0.0, labels=None,
    fixed=False,
):  # fmt: skip
    k = int(np.flatnonzero(bad)[0])
    where = f"{source}: " if source else ""
    hint = _hint(raw, kind, units, clim_mean, sd, tolerance, fixed)
    row = labels[k] if labels is not None else f"row {k}"
    allowed = f" (at most {tolerance:.0%} are dropped as single bad reports)" if tolerance else ""
    raise ImplausibleObservationError(
        f"{where}{int(bad.sum())} of {bad.size} observation(s) {what}{allowed}; first at "
        f"{row}: value={raw[k]:g} {units} ({kind}) = {kelvin[k]:.2f} K. {hint}"
    )


def screen_absolute(
    raw,
    units: str,
    *,
    clim_mean=None,
    clim_sd=None,
    source: str = "",
    labels=None,
    tolerance: float = MAX_DROPPED_FRACTION,
    fixed_units: bool = False,
) -> np.ndarray:
    """Which absolute temperatures to keep: drop a few impossible ones, refuse many.

    Args:
      raw: ``[n]`` values as given.
      units: their declared units (canonical key).
      clim_mean, clim_sd: ``[n]`` climatology at each value (K), for the hint; optional.
      source: the file name, for the message.
      labels: ``[n]`` names of the values for the message (``"station CXHM, line 36723"``);
        default ``"row k"``.
      tolerance: the largest fraction of values dropped; more are refused.
      fixed_units: the file's format prescribes ``units`` (METAR: degC), so the hint names
        the likely reading without an option to pass.

    Returns:
      ``[n]`` bool, True where the value lies in :data:`ABSOLUTE_RANGE_K` once in K.

    Raises:
      ImplausibleObservationError: more than ``tolerance`` of the values are implausible
        (the message names the first, and the reading that would pass, if any).
    """
    raw = np.asarray(raw, np.float64)
    kelvin = to_kelvin(raw, units)
    bad = ~_plausible_absolute(kelvin)
    if bad.any() and not _tolerated(bad, tolerance):
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
            tolerance,
            labels,
            fixed_units,
        )
    return ~bad


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
    # screen_absolute with nothing tolerated: one implausible value refuses the table
    screen_absolute(raw, units, clim_mean=clim_mean, clim_sd=clim_sd, source=source, tolerance=0)


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
