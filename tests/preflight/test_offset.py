"""The large-scale offset prior: modes, the folded covariance, and its closed-form posterior."""

from __future__ import annotations

import numpy as np
import pytest

from bayesda.preflight.offset import add_offset, estimate_offset, offset_modes
from bayesda.preflight.pipeline import format_preflight, preflight
from bayesda.settings import ModelOptions
from bayesda.testing import grf_prior as _grf_prior
from bayesda.testing import obs_at as _obs_at


def test_modes_and_folded_covariance():
    prior, _ = _grf_prior()
    g = prior.grid
    assert offset_modes(g, "none").shape == (0, *g.shape)
    smooth = offset_modes(g, "smooth")
    assert smooth.shape == (3, *g.shape)
    np.testing.assert_allclose(smooth[0], 1.0)
    for m in smooth[1:]:
        assert m.min() == pytest.approx(-1.0) and m.max() == pytest.approx(1.0)
    assert add_offset(prior, "none") is prior
    p = add_offset(prior, "uniform", sd=2.0)
    assert p.repr_error.rank == prior.repr_error.rank + 1
    np.testing.assert_allclose(p.repr_error.variance, prior.repr_error.variance + 4.0, rtol=1e-6)
    with pytest.raises(ValueError, match="offset='warm'"):
        add_offset(prior, "warm")
    with pytest.raises(ValueError, match="sd=-1"):
        add_offset(prior, "uniform", sd=-1)


def test_offset_posterior_is_calibrated_against_the_truth():
    """Fields drawn from the model with the offset: the posterior of each coefficient
    (closed form, exact for this linear prior) holds the drawn one with z-scores ~ N(0, 1)."""
    prior, grf = _grf_prior(repr_sd=0.3)
    rng = np.random.default_rng(4)
    sd = 2.0
    U = offset_modes(prior.grid, "smooth")
    z = []
    for seed in range(40):
        c = sd * rng.standard_normal(3)
        truth = (
            grf.sample(rng, 1)[0]
            + 0.3 * rng.standard_normal(prior.grid.shape)
            + np.tensordot(c, U, axes=1)
        )
        obs = _obs_at(prior, truth, 40, seed=seed, sigma=0.5)
        est = estimate_offset(prior, obs, "smooth", sd)
        z.append((c - np.array(est["mean"])) / np.array(est["post_sd"]))
    z = np.array(z)  # [40, 3]
    # 120 z-scores: mean z^2 of a calibrated posterior is 1 +- 0.13 (SD of chi2_1 / sqrt(120))
    assert abs(np.mean(z**2) - 1.0) < 0.4
    assert np.all(np.abs(z.mean(0)) < 3 / np.sqrt(40) * 1.5)


def test_preflight_records_and_prints_the_offset():
    prior, grf = _grf_prior(repr_sd=0.3)
    rng = np.random.default_rng(1)
    truth = grf.sample(rng, 1)[0] + 3.0
    obs = _obs_at(prior, truth, 40, seed=1, sigma=0.5)
    p, o, record = preflight(
        prior,
        obs,
        qc=False,
        calibrate="none",
        offset="uniform",
        options=ModelOptions(errors="stated"),
    )
    assert p.repr_error.rank == prior.repr_error.rank + 1
    (m,), (s,) = record["offset"]["mean"], record["offset"]["post_sd"]
    assert 0 < s < 2.0 and abs(m - 3.0) < 4 * s + 0.5
    assert "offset (uniform, prior SD 2 K): uniform" in format_preflight(record)
