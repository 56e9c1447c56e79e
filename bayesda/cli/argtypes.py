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
    "finite_float",
    "kind_from_args",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "repr_error_structure",
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
