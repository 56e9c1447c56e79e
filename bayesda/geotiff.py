"""Uncertainty layers as GeoTIFF, for GIS tools (optional extra ``geotiff``: rioxarray).

Every two-dimensional summary of a posterior dataset (:func:`bayesda.posterior.
posterior_dataset`: ``mean``, ``sd``, ``q05``, ``q50``, ``q95``, ``tas_mean``) and each
exceedance probability (``p_exceed`` at every threshold) becomes one single-band float32
GeoTIFF: geographic coordinates (EPSG:4326, cell centres at the model grid's nodes),
north-up (rows from north to south, as GIS tools expect; bayesda's grids run south to north),
with the variable's units and long name as GDAL metadata tags and as the band description.
Each file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from bayesda._optional import require
from bayesda.outputs import atomic_write

__all__ = ["geotiff_layers", "require_geotiff", "write_geotiff"]


def require_geotiff():
    """Import rioxarray (registers ``.rio``) or raise an ImportError naming the extra."""
    return require("rioxarray", "GeoTIFF output")


def _threshold_name(t: float) -> str:
    s = f"{t:+g}".replace("+", "p").replace("-", "m").replace(".", "_")
    return f"p_exceed_{s}K"


def geotiff_layers(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    """The ``(lat, lon)`` layers of a posterior dataset, by file stem.

    ``p_exceed`` is split by threshold: ``p_exceed_p5K`` is P(anomaly > +5 K),
    ``p_exceed_m5K`` P(anomaly > -5 K).
    """
    out = {}
    for name, da in ds.data_vars.items():
        if set(da.dims) == {"lat", "lon"}:
            out[name] = da
        elif name == "p_exceed" and set(da.dims) == {"threshold", "lat", "lon"}:
            for t in da["threshold"].values:
                layer = da.sel(threshold=t).drop_vars("threshold")
                layer.attrs = {
                    **da.attrs,
                    "long_name": f"{da.attrs.get('long_name', name)} {float(t):+g} K",
                }
                out[_threshold_name(float(t))] = layer
    return out


def write_geotiff(ds: xr.Dataset, directory: str | os.PathLike) -> list[Path]:
    """Write each layer of :func:`geotiff_layers` as ``DIRECTORY/STEM.tif``.

    Args:
      ds: a posterior dataset with ``lat`` and ``lon`` (degrees) coordinates.
      directory: created if absent.

    Returns:
      The paths written, in layer order.

    Raises:
      ImportError: rioxarray is not installed (``pip install 'bayesda[geotiff]'``).
      ValueError: ``ds`` has no ``(lat, lon)`` layer.
    """
    require_geotiff()
    layers = geotiff_layers(ds)
    if not layers:
        raise ValueError(
            f"no (lat, lon) layers to write as GeoTIFF in a dataset with {list(ds.data_vars)}"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, da in layers.items():
        da = da.astype(np.float32).sortby("lat", ascending=False).sortby("lon")
        da = da.rio.set_spatial_dims(x_dim="lon", y_dim="lat").rio.write_crs("EPSG:4326")
        da.name = stem
        tags = {k: str(v) for k, v in da.attrs.items() if k in ("units", "long_name")}
        da.attrs = {**tags, "long_name": stem if "long_name" not in tags else tags["long_name"]}
        path = directory / f"{stem}.tif"
        with atomic_write(path) as tmp:
            da.rio.to_raster(tmp, driver="GTiff", tags=tags, compress="DEFLATE")
        paths.append(path)
    return paths
