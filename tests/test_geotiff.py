"""GeoTIFF layers: values, orientation, georeferencing and tags survive a round trip."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesda.geotiff import geotiff_layers, write_geotiff
from bayesda.grid import Grid

rioxarray = pytest.importorskip("rioxarray")


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
    back = rioxarray.open_rasterio(tmp_path / "geotiff" / "mean.tif").squeeze("band", drop=True)
    assert back.rio.crs.to_epsg() == 4326
    assert back.attrs["units"] == "K"
    assert np.all(np.diff(back["y"].values) < 0)  # north-up
    np.testing.assert_allclose(back["y"].values, ds["lat"].values[::-1])
    np.testing.assert_allclose(back["x"].values, ds["lon"].values)
    np.testing.assert_array_equal(back.values, ds["mean"].values[::-1])
    # the cell of the south-west node holds that node's value
    sw = back.sel(x=ds["lon"].values[0], y=ds["lat"].values[0])
    assert float(sw) == float(ds["mean"].values[0, 0])
    p5 = rioxarray.open_rasterio(tmp_path / "geotiff" / "p_exceed_p5K.tif").squeeze("band")
    np.testing.assert_array_equal(p5.values, ds["p_exceed"].sel(threshold=5.0).values[::-1])


def test_no_layers_is_an_error(tmp_path):
    ds = _posterior_like()[["anomaly"]]
    with pytest.raises(ValueError, match="no \\(lat, lon\\) layers"):
        write_geotiff(ds, tmp_path)
