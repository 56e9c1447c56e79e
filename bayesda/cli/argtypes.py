"""Argument types that reject bad values while parsing, before any work starts.

Each is an ``argparse`` ``type=`` callable: it returns the parsed value or raises
:class:`argparse.ArgumentTypeError`, which argparse turns into a one-line usage error
(exit code 2) naming the option and the value.
"""

from __future__ import annotations

import argparse
import math

__all__ = [
    "add_units_kind",
    "column_mapping",
    "finite_float",
    "ghcn_element",
    "half_width",
    "kind_from_args",
    "lapse_rate",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
    "repr_error_structure",
    "timestamp",
    "units",
]


def _number(text: str, cast, what: str):
    try:
        value = cast(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    return value


def finite_float(text: str) -> float:
    """A finite float (not nan or inf)."""
    value = _number(text, float, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 1")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 0")
    return value


def probability(text: str) -> float:
    """A number strictly between 0 and 1."""
    value = finite_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1 (exclusive)")
    return value


TIME_RANGE = ("1678-01-01", "2261-12-31")
"""The dates bayesda's times (nanoseconds since 1970 in 64 bits) can hold."""


def timestamp(text: str) -> str:
    """A date and time, returned as naive UTC ``YYYY-MM-DDTHH:MM:SS``.

    A UTC offset (``2014-01-07T12:00+02:00``, ``...Z``) is converted to UTC; a time
    without one is taken as UTC.
    """
    import warnings

    import pandas as pd

    example = "e.g. 2014-01-07T12 or 2014-01-07T12:00Z"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = pd.Timestamp(text.strip())
    except (TypeError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date and time ({example})") from None
    if t is pd.NaT or pd.isna(t):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date and time ({example})")
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    lo, hi = (pd.Timestamp(x) for x in TIME_RANGE)
    if not lo <= t <= hi:
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside the dates bayesda can hold ({TIME_RANGE[0]} .. {TIME_RANGE[1]})"
        )
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def half_width(text: str):
    """A positive duration with a unit (``3h``, ``90min``, ``1 day``, ``PT3H``), as a
    :class:`pandas.Timedelta`."""
    import pandas as pd

    example = "a duration with a unit, e.g. 3h, 90min or 1d"
    stripped = text.strip()
    try:
        float(stripped)
        bare = True
    except ValueError:
        bare = False
    if bare:
        raise argparse.ArgumentTypeError(f"{text!r} has no unit; give {example}")
    try:
        dt = pd.Timedelta(stripped)
    except (TypeError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {example}") from None
    if dt is pd.NaT or pd.isna(dt):
        raise argparse.ArgumentTypeError(f"{text!r} is not {example}")
    if dt <= pd.Timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive duration, e.g. 3h")
    return dt


LAPSE_RANGE = (0.0, 15.0)
"""Lapse rates (and their SD) a user may give, K/km (:class:`bayesda.obs.elevation.LapseRate`)."""


def lapse_rate(text: str) -> float:
    """A lapse rate (or its SD) in K/km, within :data:`LAPSE_RANGE`."""
    value = finite_float(text)
    lo, hi = LAPSE_RANGE
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(
            f"{text!r} K/km is outside [{lo:g}, {hi:g}] (temperature falls with height at "
            "about 6.5 K/km; 0 turns the adjustment off)"
        )
    return value


def column_mapping(text: str) -> dict:
    """A ``--columns`` mapping ``lat=LAT,lon=LON,value=TMP[,...]``
    (:func:`bayesda.obs.stations.parse_columns`)."""
    from bayesda.obs.stations import parse_columns

    try:
        return parse_columns(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def ghcn_element(text: str) -> str:
    """A GHCN-Daily temperature element (:data:`bayesda.obs.stations.TEMPERATURE_ELEMENTS`),
    upper-cased."""
    from bayesda.obs.stations import _check_element

    try:
        return _check_element(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def units(text: str) -> str:
    """A temperature unit :func:`bayesda.geo.units.canonical_units` knows (canonical key)."""
    from bayesda.geo.units import canonical_units

    try:
        return canonical_units(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def repr_error_structure(text: str) -> str:
    """A representation-error structure that
    :func:`bayesda.prior.representation.from_residuals` knows."""
    from bayesda.prior.representation import check_structure

    try:
        check_structure(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_units_kind(p: argparse.ArgumentParser) -> None:
    """``--units``, ``--kind`` and the older ``--absolute`` (= ``--kind absolute``)."""
    p.add_argument(
        "--units",
        type=units,
        default="K",
        help="units of the obs values and sigmas: K, degC, degF or 0.1degC (default K)",
    )
    p.add_argument(
        "--kind",
        choices=("anomaly", "absolute"),
        default=None,
        help="obs values are anomalies w.r.t. the model's climatology (default) or "
        "absolute temperatures",
    )
    p.add_argument("--absolute", action="store_true", help="same as --kind absolute")


def kind_from_args(args) -> str:
    """The declared kind; ``--absolute`` with ``--kind anomaly`` is a contradiction."""
    if args.absolute and args.kind == "anomaly":
        raise ValueError("--absolute and --kind anomaly contradict each other; give one")
    return "absolute" if args.absolute else (args.kind or "anomaly")
