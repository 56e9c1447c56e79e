"""The reference pieces of analysis.synthetic_check.synthetic_check: the exact GRF posterior is
calibrated, and the oracle PPCA + diagonal prior keeps the marginal variances and tends to the
truth."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.synthetic_check import synthetic_check as check
from bayesda.sim.grf import GaussianRandomField


def test_exact_posterior_coverage_is_nominal(small_grid):
    grf = GaussianRandomField(small_grid, length_scale_km=800.0, sd=1.5, land_sea_ratio=1.0)
    cov = check.exact_coverage_check(grf, n_fields=300, n_obs=12, sigma=0.5, seed=3)
    # 300 fields x 48 correlated pixels: the Monte Carlo SE is well under 0.01
    assert cov == pytest.approx(0.9, abs=0.02)


def test_oracle_prior_keeps_variance_and_tends_to_truth(small_grid):
    grf = GaussianRandomField(small_grid, length_scale_km=800.0, sd=1.5, land_sea_ratio=1.0)
    C = grf.cov
    oracles = check.oracle_rank_d(C, [4, 20, small_grid.size])
    for P in oracles.values():
        np.testing.assert_allclose(np.diag(P), np.diag(C), rtol=1e-10)
        assert np.linalg.eigvalsh(P).min() > 0
    np.testing.assert_allclose(oracles[small_grid.size], C, atol=1e-10)
    err = [np.abs(oracles[d] - C).max() for d in (4, 20)]
    assert err[1] < err[0]
