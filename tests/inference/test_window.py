"""The window model (bayesda.inference.window) against the closed-form joint Gaussian."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bayesda.inference.window import (
    assimilate_window,
    prepare_window,
    window_times,
)
from bayesda.testing import (
    assert_matches_closed_form,
    dense_window_posterior,
    make_dynamics,
    make_linear_prior,
    make_obs,
)

T0 = np.datetime64("2014-01-07T12")


@pytest.fixture(scope="module")
def problem():
    prior = make_linear_prior(latent_dim=3, rank=2)
    prior = dataclasses.replace(prior, dynamics=make_dynamics(3, repr_corr=0.6))
    # the middle time has no observations: it learns only through the dynamics
    obs = [
        make_obs(prior.grid, 5, at_nodes=True, seed=2),
        None,
        make_obs(prior.grid, 4, at_nodes=True, seed=3),
    ]
    return prior, obs, dense_window_posterior(prior, prior.dynamics, obs)


def test_nuts_matches_the_joint_closed_form(problem):
    prior, obs, exact = problem
    times = window_times(T0, 3, 6)
    out = assimilate_window(
        prior, obs, times, seed=0, sampler=_settings(num_warmup=300, num_samples=600)
    )
    assert [a.time for a in out] == list(times)
    assert [a.obs.n for a in out] == [5, 0, 4]
    for a, (mean, cov) in zip(out, exact, strict=True):
        assert a.field.shape == (2, 600, *prior.grid.shape)
        assert int(a.idata.sample_stats["diverging"].sum()) == 0
        assert_matches_closed_form(a, mean, cov, prior.grid)
    # the unobserved middle time is sharper than the prior but wider than its neighbours
    sd = [np.sqrt(np.diag(c)).mean() for _, c in exact]
    assert sd[1] > max(sd[0], sd[2])
    assert out[1].diagnose().status in ("PASS", "WARN")


def test_laplace_is_exact_for_a_linear_prior(problem):
    prior, obs, exact = problem
    out = assimilate_window(
        prior, obs, seed=1, sampler=_settings(method="laplace", num_samples=1000)
    )
    for a, (mean, cov) in zip(out, exact, strict=True):
        assert_matches_closed_form(a, mean, cov, prior.grid)


def test_without_temporal_correlation_the_field_needs_it(problem):
    """The closed form with rho = 0.6 is missed by a window run with rho = 0."""
    prior, obs, exact = problem
    flat = prior.dynamics._replace(repr_corr=0.0)
    out = assimilate_window(
        prior, obs, seed=1, dynamics=flat, sampler=_settings(method="laplace", num_samples=2000)
    )
    with pytest.raises(AssertionError):
        for a, (mean, cov) in zip(out, exact, strict=True):
            assert_matches_closed_form(a, mean, cov, prior.grid)


def test_window_times_and_bad_input(problem):
    prior, obs, _ = problem
    t = window_times("2014-01-07T12", 5, 6)
    assert str(t[0])[:13] == "2014-01-07T00" and str(t[-1])[:13] == "2014-01-08T00"
    with pytest.raises(ValueError, match="odd number"):
        window_times(T0, 4, 6)
    with pytest.raises(ValueError, match="no observation at any"):
        prepare_window(prior, [None, None])
    with pytest.raises(ValueError, match="no latent dynamics"):
        assimilate_window(dataclasses.replace(prior, dynamics=None), obs)
    from bayesda.settings import ModelOptions

    with pytest.raises(ValueError, match="stated-error model"):
        assimilate_window(prior, obs, options=ModelOptions(errors="stated", likelihood="studentt"))
    with pytest.raises(ValueError, match="stated-error model"):
        assimilate_window(prior, obs, options=ModelOptions())  # learned errors
    with pytest.raises(ValueError, match="not window times"):
        prepare_window(prior, {"2014-01-09T00": obs[0]}, times=window_times(T0, 3, 6))


def test_stacked_covariance_couples_times(problem):
    prior, obs, _ = problem
    w = prepare_window(prior, obs)
    n0 = len(obs[0])
    S = w.scale_tril[: w.n, : w.n].astype(np.float64)
    S = S @ S.T
    # cross-time block = rho^2 H_0 C H_2^T (two steps apart), not zero
    from bayesda.obs.operator import bilinear_stencil

    st = w.stencil
    full = prior.repr_error.covariance_at_obs(st)
    np.testing.assert_allclose(S[:n0, n0:], 0.36 * full[:n0, n0:], rtol=1e-4, atol=1e-5)
    assert w.n_by_time() == [5, 0, 4] and w.mask.size == 32
    assert bilinear_stencil(prior.grid, obs[2]["lat"], obs[2]["lon"]).n == 4


def _settings(**kw):
    from bayesda.settings import SamplerSettings

    return SamplerSettings(num_chains=2, **kw)


def test_windows_with_the_same_padded_length_share_compiled_code(problem):
    prior, obs, _ = problem
    quick = _settings(num_warmup=20, num_samples=20)
    assimilate_window(prior, obs, seed=0, sampler=quick)
    fewer = [obs[0].iloc[:3], obs[2], None]  # 7 observations instead of 9: padded to 32 too
    again = assimilate_window(prior, fewer, seed=1, sampler=quick)
    assert again[0].timings["cache_hit"] and again[0].settings["n_pad"] == 32
