"""Tests for the grid convention (bayesda.geo.grid), the bilinear observation operator
(bayesda.obs.operator) and the representation-error estimate (bayesda.prior.representation)."""

from __future__ import annotations

import numpy as np
import pytest

from bayesda.geo.grid import Grid, wrap_lon
from bayesda.obs.operator import as_matrix, bilinear_stencil, interpolate, nearest_index
from bayesda.prior.representation import RepresentationError, estimate, zero_error


def _linear(grid: Grid, a=1.0, b=-0.3, c=0.7) -> np.ndarray:
    lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    return a + b * lat + c * lon


# --- grid ---------------------------------------------------------------------------------
def test_wrap_lon():
    np.testing.assert_array_equal(
        wrap_lon([0.0, 180.0, 359.0, -180.0, 540.0]), [0.0, -180.0, -1.0, -180.0, -180.0]
    )


def test_grid_periodicity_and_contains(small_grid, global_grid):
    assert global_grid.periodic and not small_grid.periodic
    assert small_grid.contains([30.0, 55.0, 29.9], [-120.0, 275.0, -100.0]).tolist() == [
        True,
        True,
        False,
    ]
    # periodic: any longitude is inside, latitude limited to the rows
    assert global_grid.contains([0.0, 0.0, 80.0], [179.0, 200.0, 0.0]).tolist() == [
        True,
        True,
        False,
    ]
    # what the observation operator accepts: the rows for a regional grid, the whole
    # sphere for a periodic one (poleward of the outer rows: the outer row's value)
    assert small_grid.covers([29.9, 40.0], [-100.0, -100.0]).tolist() == [False, True]
    assert global_grid.covers([80.0, -90.0, 90.5], [0.0, 200.0, 0.0]).tolist() == [
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    "lat, lon, match",
    [
        ([1.0, 0.0], [0.0, 1.0], "lat must be strictly ascending"),
        ([0.0, 1.0], [10.0, 10.0], "lon must be strictly ascending"),
        ([-95.0, 0.0], [0.0, 1.0], "lat outside"),
        ([0.0, 1.0], [0.0, 180.0], r"lon outside \[-180, 180\)"),
        ([0.0], [0.0, 1.0], ">= 2 points"),
    ],
    ids=["lat-order", "lon-order", "lat-range", "lon-range", "too-small"],
)
def test_grid_errors(lat, lon, match):
    with pytest.raises(ValueError, match=match):
        Grid(lat=np.array(lat), lon=np.array(lon))


def test_grid_round_trip_and_weights(small_grid):
    assert Grid.from_dict(small_grid.to_dict()) == small_grid
    assert Grid.from_xarray(small_grid.template()) == small_grid
    assert small_grid.lat_weights().mean() == pytest.approx(1.0)


# --- bilinear operator --------------------------------------------------------------------
def test_exact_on_linear_fields(small_grid):
    rng = np.random.default_rng(0)
    lat = rng.uniform(30.0, 55.0, 200)
    lon = rng.uniform(-120.0, -85.0, 200)
    st = bilinear_stencil(small_grid, lat, lon)
    got = interpolate(_linear(small_grid), st)
    # float32 weights: relative error ~1e-7 of values up to ~100
    np.testing.assert_allclose(got, 1.0 - 0.3 * lat + 0.7 * lon, atol=1e-4)
    np.testing.assert_allclose(st.weight.sum(-1), 1.0, atol=1e-6)
    assert (st.weight >= 0).all()


def test_nodes_and_edges(small_grid):
    field = np.random.default_rng(1).standard_normal(small_grid.shape)
    # every node, including the corners and edges, returns its own value
    lat, lon = np.meshgrid(small_grid.lat, small_grid.lon, indexing="ij")
    got = interpolate(field, bilinear_stencil(small_grid, lat.ravel(), lon.ravel()))
    np.testing.assert_allclose(got, field.ravel(), atol=1e-6)
    # a point on the top edge halfway between two nodes
    st = bilinear_stencil(small_grid, [55.0], [-117.5])
    assert interpolate(field, st)[0] == pytest.approx(0.5 * (field[-1, 0] + field[-1, 1]), abs=1e-6)
    # 0..360 longitudes are accepted
    st2 = bilinear_stencil(small_grid, [55.0], [242.5])
    np.testing.assert_array_equal(st.idx, st2.idx)


def test_periodic_wrap(global_grid):
    field = np.random.default_rng(2).standard_normal(global_grid.shape)
    # the centre of the cell between the last column (150E) and the first (-180 = 180E),
    # rows 0N and 25N: the mean of its four corners
    st = bilinear_stencil(global_grid, [12.5], [165.0])
    corners = field[3:5][:, [-1, 0]]
    assert interpolate(field, st)[0] == pytest.approx(corners.mean(), abs=1e-6)
    np.testing.assert_array_equal(st.idx, bilinear_stencil(global_grid, [12.5], [-195.0]).idx)
    # poleward of the outermost row: constant extrapolation of that row
    st_pole = bilinear_stencil(global_grid, [89.0], [-180.0])
    assert interpolate(field, st_pole)[0] == pytest.approx(field[-1, 0], abs=1e-6)


@pytest.mark.parametrize(
    "lat, lon, match",
    [
        ([29.0], [-100.0], r"outside the grid, first at lat=29.000"),
        ([40.0], [-80.0], r"outside the grid, first at lat=40.000, lon=-80.000"),
        ([np.nan], [-100.0], "finite"),
        ([40.0, 41.0], [-100.0], "equal length"),
    ],
    ids=["south", "east", "nan", "shape"],
)
def test_outside_and_bad_points(small_grid, lat, lon, match):
    with pytest.raises(ValueError, match=match):
        bilinear_stencil(small_grid, lat, lon)


def test_global_rejects_beyond_pole(global_grid):
    with pytest.raises(ValueError, match="outside the grid"):
        bilinear_stencil(global_grid, [91.0], [0.0])


def test_as_matrix_equals_interpolate(small_grid, global_grid):
    rng = np.random.default_rng(3)
    for grid, lat, lon in [
        (small_grid, rng.uniform(30, 55, 40), rng.uniform(-120, -85, 40)),
        (global_grid, rng.uniform(-80, 80, 40), rng.uniform(-180, 180, 40)),
    ]:
        st = bilinear_stencil(grid, lat, lon)
        fields = rng.standard_normal((3, *grid.shape))
        H = as_matrix(st, grid.size)
        np.testing.assert_allclose(fields.reshape(3, -1) @ H.T, interpolate(fields, st), atol=1e-5)
        np.testing.assert_allclose(H.sum(1), 1.0, atol=1e-6)


def test_interpolate_works_in_jax(small_grid):
    import jax.numpy as jnp

    st = bilinear_stencil(small_grid, [40.3, 33.3], [-100.1, -90.0])
    field = _linear(small_grid)
    np.testing.assert_allclose(
        np.asarray(interpolate(jnp.asarray(field), st)), interpolate(field, st), rtol=1e-5
    )


def test_nearest_index(small_grid):
    idx = nearest_index(small_grid, [31.0, 54.0], [-119.0, -86.0])
    np.testing.assert_array_equal(idx, [0, small_grid.size - 1])


# --- representation error -----------------------------------------------------------------
def test_estimate_reproduces_mean_square(small_grid):
    rng = np.random.default_rng(4)
    r = rng.standard_normal((30, *small_grid.shape)) * np.linspace(
        0.5, 2.0, small_grid.size
    ).reshape(small_grid.shape)
    r += 0.3  # a bias counts as error
    for rank in (0, 4, 30):
        err = estimate(r, rank=rank)
        np.testing.assert_allclose(err.variance, np.mean(r**2, axis=0), rtol=1e-5)
        assert err.rank == min(rank, 30)
        assert (err.diag_var >= 0).all()


def test_estimate_full_rank_covariance(small_grid):
    """With rank >= n, F^T F is the full raw second-moment matrix of the residuals."""
    rng = np.random.default_rng(5)
    r = rng.standard_normal((10, *small_grid.shape))
    err = estimate(r, rank=10)
    F = err.factor.reshape(10, -1).astype(np.float64)
    flat = r.reshape(10, -1)
    np.testing.assert_allclose(F.T @ F, flat.T @ flat / 10, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[n>=2, nlat, nlon\]"):
        estimate(r[:1])


def test_at_obs_and_sample(small_grid):
    rng = np.random.default_rng(6)
    err = estimate(rng.standard_normal((20, *small_grid.shape)), rank=3)
    st = bilinear_stencil(small_grid, [40.0, 42.5], [-110.0, -101.0])
    factor, diag = err.at_obs(st)
    # rank 3 > 2 observations: the factor is compressed to [n, n] with the same A A^T
    assert factor.shape == (2, 2) and diag.shape == (2,)
    H = as_matrix(st, small_grid.size)
    F = err.factor.reshape(3, -1).astype(np.float64)
    A = H @ F.T
    np.testing.assert_allclose(factor @ factor.T, A @ A.T, atol=1e-4)
    st3 = bilinear_stencil(small_grid, [40.0, 42.5, 41.0, 43.0], [-110.0, -101.0, -105.0, -99.0])
    np.testing.assert_allclose(err.at_obs(st3)[0], as_matrix(st3, small_grid.size) @ F.T, atol=1e-5)
    # at a node the diagonal part is exactly the node's d
    st_node = bilinear_stencil(small_grid, [40.0], [-110.0])
    assert err.at_obs(st_node)[1][0] == pytest.approx(err.diag_var[2, 2], rel=1e-5)
    draws = err.sample(np.random.default_rng(0), 5)
    assert draws.shape == (5, *small_grid.shape)
    z = zero_error(small_grid.shape)
    assert isinstance(z, RepresentationError) and z.rank == 0 and (z.sd == 0).all()
