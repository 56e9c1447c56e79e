"""Tests for the representation-error covariance (bayesda.prior.representation)."""

import numpy as np
import pytest

from bayesda.geo.grid import Grid
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.prior.representation import (
    RepresentationError,
    captured_fraction,
    empirical_correlogram,
    estimate,
    fit_length_scale,
    from_power,
    homogeneous,
    stationary,
    stationary_cached,
    stationary_loglik,
)
from bayesda.sim.grf import GaussianRandomField, correlation, pairwise_distance_km

GRID = Grid(lat=np.arange(30.0, 61.0, 2.5), lon=np.arange(-130.0, -79.0, 2.5))  # 13 x 21


def sd_map(grid=GRID):
    lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    return 0.8 + 0.4 * np.cos(np.deg2rad(lat)) + 0.1 * np.sin(np.deg2rad(3 * lon))


def dense(rep: RepresentationError) -> np.ndarray:
    f = rep.factor.reshape(rep.rank, -1).astype(np.float64)
    return f.T @ f + np.diag(rep.diag_var.reshape(-1).astype(np.float64))


def test_stationary_variance_is_sd_squared_and_psd():
    sd = sd_map()
    rep = stationary(sd, GRID, 600.0, var_fraction=0.97, max_rank=1000)
    np.testing.assert_allclose(rep.variance, sd**2, rtol=2e-6)
    assert np.all(rep.diag_var >= 0)
    assert np.linalg.eigvalsh(dense(rep)).min() > -1e-6
    assert 0.97 <= captured_fraction(rep) < 0.975
    assert rep.spec.rank == rep.rank and rep.spec.length_scale_km == 600.0


def test_stationary_correlation_matches_kernel_within_truncation():
    sd = sd_map()
    want = correlation(pairwise_distance_km(GRID), 500.0)
    off = ~np.eye(GRID.size, dtype=bool)
    worst = []
    for vf in (0.97, 0.999):
        rep = stationary(sd, GRID, 500.0, var_fraction=vf, max_rank=10_000)
        c = dense(rep)
        s = np.sqrt(np.diag(c))
        corr = c / np.outer(s, s)
        # the dropped remainder R is PSD with diagonal diag_var, so |R_ij| <= sqrt(R_ii R_jj)
        share = np.sqrt(rep.diag_var.reshape(-1) / sd.reshape(-1) ** 2)
        assert np.all(np.abs(corr - want)[off] <= np.outer(share, share)[off] + 1e-5)
        worst.append(np.max(np.abs(corr - want)[off]))
    assert worst[1] < worst[0] and worst[1] < 0.01


def test_stationary_rank_caps_and_exact_rank():
    sd = sd_map()
    capped = stationary(sd, GRID, 300.0, var_fraction=0.99, max_rank=50)
    assert capped.rank == 50 and captured_fraction(capped) < 0.99
    np.testing.assert_allclose(capped.variance, sd**2, rtol=2e-6)
    exact = stationary(sd, GRID, 300.0, rank=7)
    assert exact.rank == 7
    np.testing.assert_allclose(
        exact.factor,
        capped.factor[:7]
        * np.sign(np.sum(exact.factor * capped.factor[:7], axis=(1, 2)))[:, None, None],
        atol=1e-5,
    )
    with pytest.raises(ValueError):
        stationary(sd[:-1], GRID, 300.0)
    with pytest.raises(ValueError):
        stationary(sd, GRID, -1.0)


def test_at_obs_compresses_high_rank_factor_exactly():
    sd = sd_map()
    rep = stationary(sd, GRID, 400.0, var_fraction=0.999, max_rank=2000)
    rng = np.random.default_rng(1)
    lat = rng.uniform(31, 59, 12)
    lon = rng.uniform(-128, -82, 12)
    st = bilinear_stencil(GRID, lat, lon)
    a, d = rep.at_obs(st)
    assert rep.rank > 12 and a.shape == (12, 12)
    f = np.asarray(rep.factor, np.float64).reshape(rep.rank, -1)
    h = as_matrix(st, GRID.size).astype(np.float64)
    want = h @ f.T @ f @ h.T
    np.testing.assert_allclose(a.astype(np.float64) @ a.T, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method,tol", [("likelihood", 0.10), ("correlogram", 0.15)])
def test_fit_recovers_known_length_scale(method, tol):
    """Residuals drawn from a known Matern-3/2 field: the fit is within ``tol`` (relative)."""
    grf = GaussianRandomField(GRID, length_scale_km=600.0, sd=1.0, land_sea_ratio=1.0)
    fields = np.asarray(grf.sample(0, 200)).reshape(200, *GRID.shape) * sd_map()
    length, info = fit_length_scale(fields, GRID, "matern32", method=method)
    assert abs(length / 600.0 - 1.0) < tol, (length, info["method"])
    if method == "likelihood":
        assert info["objective_best"] == pytest.approx(
            stationary_loglik(fields, GRID, length, "matern32"), abs=1e-6
        )


def test_empirical_correlogram_of_white_noise_is_zero():
    r = np.random.default_rng(2).standard_normal((400, *GRID.shape))
    edges, corr, pairs, pair_bin = empirical_correlogram(r, GRID, max_km=800.0)
    assert len(edges) == len(corr) + 1 and np.all(pairs[1:] > 0)
    assert np.max(np.abs(corr[pairs > 0])) < 0.02
    assert pair_bin.shape == (GRID.size, GRID.size)


def test_estimate_rank_zero_is_mean_square():
    r = np.random.default_rng(3).normal(size=(50, *GRID.shape))
    rep = estimate(r, rank=0)
    assert rep.rank == 0 and rep.spec is None
    np.testing.assert_allclose(rep.variance, np.mean(r**2, axis=0), rtol=1e-5)


def test_from_residuals_structures():
    from bayesda.prior.representation import from_residuals

    grid = Grid(lat=np.linspace(30.0, 50.0, 5), lon=np.linspace(-110.0, -80.0, 7))
    r = np.random.default_rng(0).standard_normal((30, *grid.shape))
    assert from_residuals(r, grid, "0").rank == 0
    assert from_residuals(r, grid, "3").rank == 3
    fixed = from_residuals(r, grid, "sqexp@400")
    assert fixed.spec.kind == "sqexp" and fixed.spec.length_scale_km == 400.0
    with pytest.raises(ValueError, match="unknown representation-error structure"):
        from_residuals(r, grid, "gaussian")


def _periodic_shift_cov(r: np.ndarray) -> np.ndarray:
    """The translation-averaged sample covariance of fields on a doubly periodic grid."""
    n, ny, nx = r.shape
    y, x = (a.ravel() for a in np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij"))
    cov = np.zeros((ny * nx, ny * nx))
    for dy in range(ny):
        for dx in range(nx):
            lag = np.mean(r * np.roll(r, (-dy, -dx), axis=(1, 2)))  # E[r(p) r(p + lag)]
            cov[((y[None] - y[:, None]) % ny == dy) & ((x[None] - x[:, None]) % nx == dx)] = lag
    return cov


def test_homogeneous_full_rank_is_the_translation_averaged_covariance():
    rng = np.random.default_rng(3)
    white = rng.standard_normal((40, 6, 8))
    r = white + 0.8 * np.roll(white, 1, axis=2) + 0.3 * np.roll(white, 1, axis=1)  # anisotropic
    rep = homogeneous(r, var_fraction=1.0, max_rank=10**6)
    assert rep.rank == 48 and rep.spec.rank == 48
    f = rep.factor.reshape(rep.rank, -1).astype(np.float64)
    cov = f.T @ f + np.diag(rep.diag_var.ravel())
    np.testing.assert_allclose(cov, _periodic_shift_cov(r), atol=1e-5)
    assert cov[0, 1] > 2 * abs(cov[0, 8])  # the x-lag correlation is kept, not made isotropic


def test_homogeneous_truncation_keeps_marginal_variance_and_pairs():
    rng = np.random.default_rng(4)
    r = rng.standard_normal((30, 8, 8)) * 2.0
    for max_rank in (0, 5, 17):
        rep = homogeneous(r, var_fraction=1.0, max_rank=max_rank)
        assert rep.rank <= max_rank
        np.testing.assert_allclose(rep.variance, np.mean(r**2), rtol=1e-5)
    smooth = r + np.roll(r, 1, axis=1) + np.roll(r, 1, axis=2) + np.roll(r, (1, 1), axis=(1, 2))
    rep = homogeneous(smooth, var_fraction=0.5)  # a red spectrum: few modes hold half of it
    assert 0 < rep.rank < 32
    assert captured_fraction(rep) >= 0.5
    again = from_power(rep.spec.power, rank=rep.spec.rank)  # what a checkpoint rebuilds
    np.testing.assert_allclose(again.factor, rep.factor, atol=1e-6)
    with pytest.raises(ValueError, match="must be"):
        homogeneous(r[0])
    with pytest.raises(ValueError, match="var_fraction"):
        homogeneous(r, var_fraction=0.0)


def test_stationary_cached_is_stationary_and_reads_back(tmp_path, monkeypatch):
    import bayesda.prior.representation as representation

    monkeypatch.setenv("BAYESDA_CACHE", str(tmp_path))
    monkeypatch.delenv("BAYESDA_DISK_CACHE", raising=False)
    sd = sd_map().astype(np.float32)
    want = stationary(sd, GRID, 600.0, "matern32", rank=30, distance="chordal")
    first = stationary_cached(sd, GRID, 600.0, "matern32", rank=30, distance="chordal")
    assert list((tmp_path / "stationary_repr_error").glob("*.npz"))  # an entry was written

    def boom(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(representation, "stationary", boom)
    again = stationary_cached(sd, GRID, 600.0, "matern32", rank=30, distance="chordal")
    for got in (first, again):
        np.testing.assert_array_equal(got.factor, want.factor)
        np.testing.assert_array_equal(got.diag_var, want.diag_var)
        assert got.factor.dtype == want.factor.dtype and got.diag_var.dtype == want.diag_var.dtype
        np.testing.assert_array_equal(got.spec.sd, want.spec.sd)
        assert got.spec[1:] == want.spec[1:]
    with pytest.raises(AssertionError, match="recomputed"):  # another length: not the entry
        stationary_cached(sd, GRID, 700.0, "matern32", rank=30, distance="chordal")
