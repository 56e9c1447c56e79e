"""Tests for bayesda.geo.landmask: land fraction on grids and coastline polylines."""

from __future__ import annotations

import numpy as np
import pytest

from bayesda.geo.grid import Grid
from bayesda.geo.landmask import coastlines, is_land, land_fraction


def test_is_land_known_points():
    # Sahara, Kansas, mid-Pacific, mid-Atlantic; 0..360 longitudes accepted
    got = is_land([23.0, 38.5, 0.0, 30.0], [13.0, 261.5, -150.0, -40.0])
    assert got.tolist() == [True, True, False, False]


def test_land_fraction_range_and_values(small_grid):
    ocean = Grid(lat=np.linspace(-40.0, -30.0, 3), lon=np.linspace(-140.0, -130.0, 3))
    assert (land_fraction(ocean) == 0).all()
    lf = land_fraction(small_grid)
    assert lf.shape == small_grid.shape and lf.dtype == np.float64
    assert ((lf >= 0) & (lf <= 1)).all()
    assert lf[2, 2] == 1.0  # 40N 110W, Utah
    assert land_fraction(small_grid) is lf  # cached
    with pytest.raises(ValueError, match="oversample=0"):
        land_fraction(small_grid, oversample=0)


def test_land_fraction_periodic(global_grid):
    lf = land_fraction(global_grid, oversample=9)
    # equator: 150W is Pacific; 30E is central Africa (cells 30 degrees wide)
    assert lf[3, 1] < 0.1
    assert lf[3, 7] > 0.9


def test_coastlines_inside_box_and_around_iceland():
    lines = coastlines((62.0, 68.0), (-26.0, -12.0), resolution=0.1)
    assert lines and all(line.ndim == 2 and line.shape[1] == 2 for line in lines)
    allpts = np.concatenate(lines)
    assert allpts[:, 0].min() >= -26.0 and allpts[:, 0].max() <= -12.0
    assert allpts[:, 1].min() >= 62.0 and allpts[:, 1].max() <= 68.0
    # Iceland's main coastline is a closed loop of many vertices
    longest = max(lines, key=len)
    assert len(longest) > 100
    np.testing.assert_allclose(longest[0], longest[-1])


@pytest.mark.parametrize(
    "lat, lon, match",
    [((60.0, 50.0), (0.0, 1.0), "lat_range"), ((0.0, 1.0), (10.0, -10.0), "lon_range")],
    ids=["lat", "lon"],
)
def test_coastlines_errors(lat, lon, match):
    with pytest.raises(ValueError, match=match):
        coastlines(lat, lon)
