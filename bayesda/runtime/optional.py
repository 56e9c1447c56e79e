"""Imports of optional dependencies, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "require"]

# module -> the ``bayesda[...]`` extra that installs it
EXTRAS: dict[str, str] = {
    "dask": "dask",
    "distributed": "dask",
    "zarr": "zarr",
    "cfgrib": "grib",
    "rasterio": "geotiff",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``"dask.array"``) or raise an ImportError naming the extra.

    Args:
      module: the dotted module name.
      purpose: what needs it, for the message (e.g. "a reanalysis store").

    Raises:
      ImportError: the module is not installed; the message says ``pip install 'bayesda[X]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = EXTRAS.get(module.split(".")[0], "all")
        raise ImportError(
            f"{purpose} needs the {module.split('.')[0]!r} package, which is not installed: "
            f"pip install 'bayesda[{extra}]'"
        ) from err
