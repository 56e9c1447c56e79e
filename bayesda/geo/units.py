"""Temperature units: the one place that turns a user's units into kelvin.

Observation readers (``bayesda.obs.table`` and the station-format readers) accept temperatures in
several units. Absolute values and differences (anomalies, error SDs) convert differently:
an absolute temperature is shifted and scaled, a difference is only scaled.

Units are named by a canonical key; common spellings are accepted (case-insensitive):

=========  ==============================================  ======================
key        accepted spellings                              absolute -> K
=========  ==============================================  ======================
``K``      K, kelvin                                        x
``degC``   degC, C, celsius, °C, deg_C                      x + 273.15
``degF``   degF, F, fahrenheit, °F, deg_F                   (x - 32) * 5/9 + 273.15
``0.1degC`` 0.1degC, tenths_degC, decidegC (GHCN, ISD)      x / 10 + 273.15
=========  ==============================================  ======================
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "UNITS",
    "canonical_units",
    "difference_from_kelvin",
    "difference_to_kelvin",
    "from_kelvin",
    "to_kelvin",
]

_SPELLINGS = {
    "K": ("k", "kelvin"),
    "degC": ("degc", "c", "celsius", "°c", "deg_c", "degrees_c", "degrees_celsius"),
    "degF": ("degf", "f", "fahrenheit", "°f", "deg_f", "degrees_f", "degrees_fahrenheit"),
    "0.1degC": ("0.1degc", "tenths_degc", "decidegc", "0.1c", "tenths_c"),
}
# (scale, offset): kelvin = value * scale + offset; a difference only takes the scale.
_AFFINE = {
    "K": (1.0, 0.0),
    "degC": (1.0, 273.15),
    "degF": (5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
    "0.1degC": (0.1, 273.15),
}
UNITS = tuple(_SPELLINGS)


def canonical_units(units: str) -> str:
    """The canonical key (one of :data:`UNITS`) for a spelling of a temperature unit.

    Raises:
      ValueError: the spelling is not known; the message lists the accepted keys.
    """
    key = str(units).strip().lower()
    for name, spellings in _SPELLINGS.items():
        if key in spellings:
            return name
    raise ValueError(f"unknown units {units!r}; expected one of {', '.join(UNITS)}")


def to_kelvin(values, units: str) -> np.ndarray:
    """Absolute temperatures in ``units`` converted to K (float64 array)."""
    scale, offset = _AFFINE[canonical_units(units)]
    return np.asarray(values, dtype=np.float64) * scale + offset


def difference_to_kelvin(values, units: str) -> np.ndarray:
    """Temperature differences (anomalies, error SDs) in ``units`` converted to K."""
    scale, _ = _AFFINE[canonical_units(units)]
    return np.asarray(values, dtype=np.float64) * scale


def from_kelvin(values, units: str) -> np.ndarray:
    """Absolute temperatures in K converted to ``units`` (the inverse of :func:`to_kelvin`)."""
    scale, offset = _AFFINE[canonical_units(units)]
    return (np.asarray(values, dtype=np.float64) - offset) / scale


def difference_from_kelvin(values, units: str) -> np.ndarray:
    """Temperature differences in K converted to ``units``."""
    scale, _ = _AFFINE[canonical_units(units)]
    return np.asarray(values, dtype=np.float64) / scale
