"""The closed-form posteriors of analysis.winds_pressure.osse_winds_pressure against the
textbook Gaussian conditioning formula, and the per-method strides of the skill benchmark."""

from __future__ import annotations

import numpy as np

from analysis.common.skill import BenchConfig
from analysis.winds_pressure import osse_winds_pressure as wp


def _condition(C, H, R, target):
    """Target block of the mean gain and covariance of x ~ N(0, C) given y = H x + N(0, R)."""
    K = C @ H.T @ np.linalg.inv(H @ C @ H.T + R)
    post = C - K @ H @ C
    return K[target], post[target, target]


def _problem(seed=0, p=40, m=7, n=200):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5)) @ rng.standard_normal((5, p)) + 0.3 * rng.standard_normal(
        (n, p)
    )
    H = np.zeros((m, p))
    cols = rng.choice(p // 2, size=(m, 2), replace=False)  # observe the first half only
    H[np.arange(m)[:, None], cols] = 0.5
    return X, H, np.full(m, 0.2**2), slice(p // 2, p)


def test_laplace_posterior_matches_gaussian_conditioning():
    X, H, r, target = _problem()
    s, vt, var = wp.pca_basis(X)
    W, resid = wp.joint_linear_prior(s, vt, var, d=6)
    C = W @ W.T + np.diag(resid)
    np.testing.assert_allclose(np.diag(C), var, rtol=1e-10)  # keeps every pixel's variance
    gain, cov = wp.laplace_posterior(W, resid, H, r, W[target], resid[target])
    K, P = _condition(C, H, np.diag(r), target)
    np.testing.assert_allclose(gain, K, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(cov, P, rtol=1e-8, atol=1e-10)


def test_oi_posterior_matches_gaussian_conditioning_with_shrinkage():
    X, H, r, target = _problem(seed=1)
    S = np.cov(X, rowvar=False)
    B = 0.9 * S + 0.1 * np.diag(np.diag(S))
    gain, cov = wp.oi_posterior(X, H, r, target, shrinkage=0.1)
    K, P = _condition(B, H, np.diag(r), target)
    np.testing.assert_allclose(gain, K, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(cov, P, rtol=1e-8, atol=1e-10)


def test_method_strides_override_the_expensive_stride():
    cfg = BenchConfig(expensive_stride=3, method_strides=(("restarts", 10),))
    assert (cfg.stride("nuts"), cfg.stride("restarts"), cfg.stride("oi")) == (3, 10, 1)
    assert BenchConfig(expensive_stride=2).stride("restarts") == 2
