"""Uncertainty layers as GeoTIFF, for GIS tools (optional extra ``geotiff``: rasterio).

Every two-dimensional summary of a posterior dataset (:func:`bayesda.inference.fields.
posterior_dataset`: ``mean``, ``sd``, ``q05``, ``q50``, ``q95``, ``tas_mean``) and each
exceedance probability (``p_exceed`` at every threshold) becomes one single-band float32
GeoTIFF: geographic coordinates (EPSG:4326, cell centres at the model grid's nodes),
north-up (rows from north to south, as GIS tools expect; bayesda's grids run south to north),
with the variable's units and long name as GDAL metadata tags and as the band description.
Each file is written under a temporary name and renamed into place. The grid must be
regular in latitude and longitude (a GeoTIFF has one affine transform).

Written with rasterio directly rather than rioxarray: rioxarray registers an xarray backend
that imports pyproj, and with pyproj 3.7 and cfgrib (the ``grib`` extra) both loaded every
process that let xarray list its backends (any ``xr.open_dataset`` without ``engine=``)
aborted at exit with "double free or corruption" (exit code 134; measured with rioxarray
0.19.0, pyproj 3.7.2, cfgrib 0.9.15). rasterio alone does not.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from bayesda.runtime.files import atomic_write
from bayesda.runtime.optional import require

__all__ = ["geotiff_layers", "require_geotiff", "write_geotiff"]


def require_geotiff():
    """Import rasterio or raise an ImportError naming the extra."""
    return require("rasterio", "GeoTIFF output")


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


def _north_up_transform(ds: xr.Dataset):
    """The affine transform of the north-up raster whose cell centres are the grid nodes."""
    from rasterio.transform import from_origin

    steps = {}
    for dim in ("lat", "lon"):
        v = np.sort(np.asarray(ds[dim].values, np.float64))
        d = np.diff(v)
        if v.size < 2 or not np.allclose(d, d[0], rtol=1e-4, atol=1e-6):
            raise ValueError(
                f"GeoTIFF needs a regular grid: {dim} steps range from "
                f"{d.min() if d.size else 0:g} to {d.max() if d.size else 0:g} degrees; "
                "use posterior.nc for this grid"
            )
        steps[dim] = (v[0], v[-1], d[0])
    lat0, lat1, dlat = steps["lat"]
    lon0, _, dlon = steps["lon"]
    return from_origin(lon0 - dlon / 2, lat1 + dlat / 2, dlon, dlat)


def write_geotiff(ds: xr.Dataset, directory: str | os.PathLike) -> list[Path]:
    """Write each layer of :func:`geotiff_layers` as ``DIRECTORY/STEM.tif``.

    Args:
      ds: a posterior dataset with ``lat`` and ``lon`` (degrees) coordinates.
      directory: created if absent.

    Returns:
      The paths written, in layer order.

    Raises:
      ImportError: rasterio is not installed (``pip install 'bayesda[geotiff]'``).
      ValueError: ``ds`` has no ``(lat, lon)`` layer, or its grid is not regular.
    """
    rasterio = require_geotiff()
    layers = geotiff_layers(ds)
    if not layers:
        raise ValueError(
            f"no (lat, lon) layers to write as GeoTIFF in a dataset with {list(ds.data_vars)}"
        )
    transform = _north_up_transform(ds)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, da in layers.items():
        data = da.transpose("lat", "lon").sortby("lat", ascending=False).sortby("lon")
        tags = {k: str(v) for k, v in da.attrs.items() if k in ("units", "long_name")}
        path = directory / f"{stem}.tif"
        with atomic_write(path) as tmp:
            with rasterio.open(
                tmp,
                "w",
                driver="GTiff",
                height=data.sizes["lat"],
                width=data.sizes["lon"],
                count=1,
                dtype="float32",
                crs="EPSG:4326",
                transform=transform,
                compress="deflate",
            ) as dst:
                dst.write(data.values.astype(np.float32), 1)
                dst.update_tags(**tags)
                dst.set_band_description(1, tags.get("long_name", stem))
        paths.append(path)
    return paths
