"""GeoTIFF layers: values, orientation, georeferencing and tags survive a round trip."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesda.geo.grid import Grid
from bayesda.outputs.geotiff import geotiff_layers, write_geotiff

rasterio = pytest.importorskip("rasterio")


def _posterior_like():
    grid = Grid(lat=np.arange(15.0, 30.0, 2.5), lon=np.arange(-130.0, -100.0, 2.5))
    rng = np.random.default_rng(0)
    coords = grid.coords()
    mean = rng.standard_normal(grid.shape).astype(np.float32)
    ds = xr.Dataset(
        {
            "mean": (("lat", "lon"), mean, {"units": "K", "long_name": "posterior mean"}),
            "sd": (("lat", "lon"), np.abs(mean) + 1, {"units": "K", "long_name": "posterior SD"}),
            "p_exceed": (
                ("threshold", "lat", "lon"),
                rng.uniform(size=(2, *grid.shape)).astype(np.float32),
                {"units": "1", "long_name": "P(anomaly > threshold)"},
            ),
            "anomaly": (("chain", "draw", "lat", "lon"), np.zeros((1, 2, *grid.shape))),
        },
        coords={**coords, "threshold": [-5.0, 5.0]},
    )
    return ds


def test_layers_named_by_variable_and_threshold():
    assert list(geotiff_layers(_posterior_like())) == [
        "mean",
        "sd",
        "p_exceed_m5K",
        "p_exceed_p5K",
    ]


def test_round_trip_north_up_with_crs_and_tags(tmp_path):
    ds = _posterior_like()
    paths = write_geotiff(ds, tmp_path / "geotiff")
    assert [p.name for p in paths] == [
        "mean.tif",
        "sd.tif",
        "p_exceed_m5K.tif",
        "p_exceed_p5K.tif",
    ]
    assert not [p for p in (tmp_path / "geotiff").iterdir() if p.name.startswith(".")]
    with rasterio.open(tmp_path / "geotiff" / "mean.tif") as src:
        assert src.crs.to_epsg() == 4326
        assert src.tags()["units"] == "K"
        assert src.descriptions == ("posterior mean",)
        back = src.read(1)
        t = src.transform
        assert t.e < 0  # north-up: rows run from north to south
        # cell centres are the grid nodes
        lon_c = [(t * (c + 0.5, 0.5))[0] for c in range(src.width)]
        lat_c = [(t * (0.5, r + 0.5))[1] for r in range(src.height)]
        # the south-west node's value, found through the raster's own georeferencing
        row, col = src.index(float(ds["lon"][0]), float(ds["lat"][0]))
    np.testing.assert_allclose(lon_c, ds["lon"].values)
    np.testing.assert_allclose(lat_c, ds["lat"].values[::-1])
    np.testing.assert_array_equal(back, ds["mean"].values[::-1])
    assert back[row, col] == ds["mean"].values[0, 0]
    with rasterio.open(tmp_path / "geotiff" / "p_exceed_p5K.tif") as src:
        np.testing.assert_array_equal(src.read(1), ds["p_exceed"].sel(threshold=5.0).values[::-1])


def test_irregular_grid_is_refused(tmp_path):
    ds = _posterior_like()
    ds = ds.assign_coords(lat=ds["lat"].values + np.linspace(0, 1, ds.sizes["lat"]) ** 2)
    with pytest.raises(ValueError, match="regular grid: lat steps"):
        write_geotiff(ds, tmp_path)


def test_no_layers_is_an_error(tmp_path):
    ds = _posterior_like()[["anomaly"]]
    with pytest.raises(ValueError, match="no \\(lat, lon\\) layers"):
        write_geotiff(ds, tmp_path)
