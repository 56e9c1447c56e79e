"""Field statistics against closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from bayesda.data.fieldstats import (
    EARTH_RADIUS_M,
    gaussian_surrogate,
    moments,
    pca_variance_kept,
    sphere_gradient,
    summarise_gradients,
)

LAT = np.linspace(-80, 80, 33)
LON = np.arange(0, 360, 5.0)


def test_sphere_gradient_matches_analytic():
    """f = sin(lon) cos(lat): df/dx = cos(lon) / R, df/dy = -sin(lon) sin(lat) / R."""
    lam, phi = np.meshgrid(np.radians(LON), np.radians(LAT))
    f = np.sin(lam) * np.cos(phi)
    gx, gy = sphere_gradient(f, LAT, LON)
    ex, ey = np.cos(lam) / EARTH_RADIUS_M, -np.sin(lam) * np.sin(phi) / EARTH_RADIUS_M
    # centred differences: relative error O(h^2), h = 5 degrees -> ~0.3%; ends one-sided
    inner = slice(1, -1)
    np.testing.assert_allclose(gx, ex, atol=0.01 / EARTH_RADIUS_M)
    np.testing.assert_allclose(gy[inner], ey[inner], atol=0.01 / EARTH_RADIUS_M)


def test_moments_gaussian_and_exponential():
    rng = np.random.default_rng(0)
    n = 200_000
    s, k = moments(rng.standard_normal((n, 3)))
    # sampling SDs sqrt(6/n) = 0.0055 and sqrt(24/n) = 0.011; 5 sigma
    assert np.all(np.abs(s) < 0.03) and np.all(np.abs(k) < 0.06)
    s, k = moments(rng.exponential(size=(n, 2)))
    np.testing.assert_allclose(s, 2.0, atol=0.1)  # exponential: skewness 2, excess kurtosis 6
    np.testing.assert_allclose(k, 6.0, atol=0.8)
    with pytest.raises(ValueError, match="at least 3"):
        moments(np.zeros((2, 4)))


@pytest.mark.parametrize("through_eofs", [False, True])
def test_gaussian_surrogate_has_the_sample_covariance(through_eofs):
    from bayesda.data.fieldstats import training_eofs

    rng = np.random.default_rng(1)
    train = rng.exponential(size=(40, 2, 3)) * np.arange(1, 7).reshape(2, 3)
    eofs = training_eofs(train) if through_eofs else None
    sur = gaussian_surrogate(train, 100_000, seed=2, eofs=eofs)
    assert sur.shape == (100_000, 2, 3)
    c_train = np.cov(train.reshape(40, -1).T)
    c_sur = np.cov(sur.reshape(len(sur), -1).T)
    scale = np.sqrt(np.outer(np.diag(c_train), np.diag(c_train)))
    # Monte Carlo SD of a covariance estimate ~ scale * sqrt(2 / n) = 0.0045 scale
    np.testing.assert_allclose(c_sur / scale, c_train / scale, atol=0.025)
    s, _ = moments(sur)
    assert np.all(np.abs(s) < 0.05)


def test_pca_variance_kept():
    rng = np.random.default_rng(3)
    basis = rng.standard_normal((2, 12))
    x = (rng.standard_normal((500, 2)) * [3.0, 1.0]) @ basis
    kept = pca_variance_kept(x.reshape(500, 3, 4), [1, 2, 12])
    assert kept[2] == pytest.approx(1.0) and kept[12] == pytest.approx(1.0)
    assert 0.7 < kept[1] < 1.0


def test_gradient_summary_detects_fronts():
    """A field with sharp steps has heavier-tailed gradients than its Gaussian surrogate."""
    rng = np.random.default_rng(4)
    lam = np.radians(LON)
    pos = rng.uniform(0, 2 * np.pi, 400)
    steps = np.tanh((np.sin(lam[None, :] - pos[:, None])) * 8)[:, None, :] * np.ones(
        (1, LAT.size, 1)
    )
    sur = gaussian_surrogate(steps, 400, seed=5)
    a = summarise_gradients(steps, LAT, LON)
    g = summarise_gradients(sur, LAT, LON)
    assert a["ddx_excess_kurtosis"] > g["ddx_excess_kurtosis"] + 1.0


def test_quadratic_gain_is_null_for_gaussian_fields_and_finds_quadratic_structure():
    from bayesda.data.fieldstats import quadratic_gain

    rng = np.random.default_rng(4)
    npix, d, n = 60, 3, 4000
    basis = np.linalg.qr(rng.normal(size=(npix, npix)))[0]
    sd = np.linspace(3.0, 0.5, npix)
    gauss = rng.normal(size=(2 * n, npix)) * sd @ basis.T
    g = quadratic_gain(gauss[:n], gauss[n:], d)
    # Gaussian: the residual is independent of the scores; the ridge fit of 6 features on
    # 4000 fields can only add noise, O(6 / 4000) in relative variance
    assert g["ratio"] == pytest.approx(1.0, abs=0.01)
    # time-correlated Gaussian fields (each repeated 60 times, so 60 distinct fields):
    # a fixed small ridge overfits, the chosen one stays near 1
    slow = np.repeat(gauss[:60], 60, axis=0)
    assert quadratic_gain(slow, gauss[n:], d)["ratio"] < 1.01
    assert quadratic_gain(slow, gauss[n:], d, ridges=(1e-6,))["ratio"] > 1.01
    # a field whose lower modes are quadratic in the leading ones (plus noise)
    z = rng.normal(size=(2 * n, d))
    coef = np.zeros((2 * n, npix))
    coef[:, :d] = z * sd[:d]
    coef[:, d] = 1.5 * (z[:, 0] ** 2 - 1)
    coef[:, d + 1] = 1.0 * z[:, 0] * z[:, 1]
    coef[:, d + 2 :] = rng.normal(size=(2 * n, npix - d - 2)) * 0.3
    x = coef @ basis.T
    q = quadratic_gain(x[:n], x[n:], d)
    # residual variance 1.5^2 * 2 + 1 + 55 * 0.09 = 10.45, of which 5.5 is quadratic:
    # ratio sqrt(4.95 / 10.45) = 0.69
    assert q["ratio"] == pytest.approx(np.sqrt(4.95 / 10.45), abs=0.03)
    with pytest.raises(ValueError, match="d=50 needs"):
        quadratic_gain(x[:100], x[n:], 50)


def test_symmetrise_is_roll_and_flip_invariant_and_keeps_the_variance():
    from bayesda.data.fieldstats import symmetrise

    rng = np.random.default_rng(1)
    nlat, nlon = 4, 6
    a = rng.normal(size=(50, nlat * nlon)) + np.arange(nlat * nlon)
    mu = a.mean(0)
    c = np.cov(a.T, bias=True)
    m, s = symmetrise(mu, c, nlat, nlon, roll_lon=True, flip_lat=True)
    s4, m2 = s.reshape(nlat, nlon, nlat, nlon), m.reshape(nlat, nlon)
    np.testing.assert_allclose(s, s.T, atol=1e-12)
    np.testing.assert_allclose(np.roll(np.roll(s4, 1, axis=1), 1, axis=3), s4, atol=1e-12)
    np.testing.assert_allclose(s4[::-1, :, ::-1, :], s4, atol=1e-12)
    np.testing.assert_allclose(m2, np.roll(m2, 1, axis=1), atol=1e-12)
    np.testing.assert_allclose(m2, m2[::-1], atol=1e-12)
    np.testing.assert_allclose(symmetrise(m, s, nlat, nlon, True, True)[1], s, atol=1e-12)
    # the moments of the explicitly augmented data (all rolls, both flips)
    f = a.reshape(50, nlat, nlon)
    aug = np.concatenate(
        [np.roll(g, k, axis=2) for g in (f, f[:, ::-1]) for k in range(nlon)]
    ).reshape(-1, nlat * nlon)
    np.testing.assert_allclose(m, aug.mean(0), atol=1e-10)
    np.testing.assert_allclose(s, np.cov(aug.T, bias=True), atol=1e-8)


def test_knn_gain_sees_a_moving_feature_that_is_null_for_gaussian_fields():
    from bayesda.data.fieldstats import knn_gain

    rng = np.random.default_rng(5)
    n, nlon = 3000, 48
    lon = np.arange(nlon) * 2 * np.pi / nlon
    # a narrow bump at a random phase: PCA-2 holds its first harmonic, the rest is a
    # function of the phase, which the 2 leading scores determine
    phase = rng.uniform(0, 2 * np.pi, size=(2 * n, 1))
    x = 3 * np.exp((np.cos(lon - phase) - 1) / 0.05) + 0.1 * rng.normal(size=(2 * n, nlon))
    moving = knn_gain(x[:n], x[n:], 2)
    assert moving["ratio"] < 0.3, moving
    gauss = rng.normal(size=(2 * n, nlon)) * np.linspace(2, 0.5, nlon)
    null = knn_gain(gauss[:n], gauss[n:], 2)
    # chosen k is large; ratio sqrt(1 + 1/k) plus sampling noise of a few 1e-3
    assert null["k"] >= 64 and null["ratio"] == pytest.approx(1.0, abs=0.01), null
    with pytest.raises(ValueError, match="d=0 needs"):
        knn_gain(x[:10], x[n:], 0)


@pytest.mark.parametrize("shape", [(60, 20), (20, 60)])
def test_training_eofs_equal_the_svd(shape):
    """Gram-eigh EOFs: the thin SVD of the centred fields (leading modes up to sign)."""
    from bayesda.data.fieldstats import training_eofs

    rng = np.random.default_rng(3)
    a = rng.standard_normal(shape) @ np.diag(np.linspace(3, 0.5, shape[1])) + 2.0
    mu, sv, vt = training_eofs(a)
    _, s_ref, vt_ref = np.linalg.svd(a - a.mean(0), full_matrices=False)
    k = min(shape[0] - 1, shape[1])  # the rank of the centred matrix
    np.testing.assert_allclose(mu, a.mean(0), atol=1e-12)
    np.testing.assert_allclose(sv[:k], s_ref[:k], rtol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(vt[:5] * vt_ref[:5], axis=1)), 1.0, atol=1e-8)
    # reconstruction from all modes is exact
    c = a - mu
    np.testing.assert_allclose((c @ vt[:k].T) @ vt[:k], c, atol=1e-8)
