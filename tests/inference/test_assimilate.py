"""NUTS and Laplace posteriors against the closed-form linear-Gaussian answer."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

from bayesda.inference.assimilate import assimilate, prepare_obs
from bayesda.settings import ModelOptions, SamplerSettings
from bayesda.testing import assert_matches_closed_form as _check_against_closed_form
from bayesda.testing import dense_posterior, make_linear_prior, make_obs


@pytest.fixture(scope="module")
def problem():
    prior = make_linear_prior(latent_dim=3, rank=2)
    # Observations on distinct grid nodes: the sampler's low-rank + diagonal likelihood is
    # then exact, so NUTS must reproduce the dense closed form up to Monte Carlo error.
    obs = make_obs(prior.grid, 6, at_nodes=True, seed=2)
    return prior, obs, dense_posterior(prior, obs)


def test_nuts_matches_closed_form(problem):
    prior, obs, (mean, cov) = problem
    a = assimilate(
        prior,
        obs,
        seed=0,
        progress_bar=False,
        sampler=SamplerSettings(num_chains=2, num_warmup=300, num_samples=600),
        options=ModelOptions(errors="stated"),
    )
    assert a.field.shape == (2, 600, *prior.grid.shape)
    assert a.z.shape == (2, 600, 3)
    assert int(a.idata.sample_stats["diverging"].sum()) == 0
    assert a.grad_evals["sampling"] == int(a.idata.sample_stats["n_steps"].sum())
    _check_against_closed_form(a, mean, cov, prior.grid)
    # The representation error matters here: g(z) alone would miss the closed form.
    with pytest.raises(AssertionError):
        _check_against_closed_form(a._replace(field=a.decoded), mean, cov, prior.grid)


def test_laplace_is_exact_for_a_linear_prior(problem):
    prior, obs, (mean, cov) = problem
    a = assimilate(
        prior,
        obs,
        seed=1,
        progress_bar=False,
        sampler=SamplerSettings(num_chains=2, num_samples=1000, method="laplace"),
        options=ModelOptions(errors="stated"),
    )
    assert "sample_stats" not in a.idata.groups()
    _check_against_closed_form(a, mean, cov, prior.grid)


def test_idata_groups_and_pointwise_loglik(problem):
    prior, obs, _ = problem
    a = assimilate(
        prior,
        obs,
        seed=0,
        progress_bar=False,
        sampler=SamplerSettings(num_chains=2, num_samples=50, method="laplace"),
        options=ModelOptions(errors="stated"),
    )
    idata = a.idata
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs")
    assert idata.posterior_predictive["y"].shape == (2, 50, len(obs))
    np.testing.assert_allclose(idata.observed_data["y"].values, obs["value"].values, rtol=1e-6)
    assert np.all(np.isfinite(idata.log_likelihood["y"].values))


def test_same_seed_same_answer(problem):
    prior, obs, _ = problem
    kw = dict(
        sampler=SamplerSettings(num_chains=2, num_warmup=50, num_samples=50),
        seed=7,
        progress_bar=False,
    )
    a, b = assimilate(prior, obs, **kw), assimilate(prior, obs, **kw)
    np.testing.assert_array_equal(a.field, b.field)
    assert b.timings["cache_hit"]


def test_infer_sigma_and_studentt_run(problem):
    prior, obs, _ = problem
    a = assimilate(
        prior,
        obs,
        progress_bar=False,
        sampler=SamplerSettings(num_chains=2, num_warmup=100, num_samples=100),
        options=ModelOptions(infer_sigma=True, likelihood="studentt", errors="stated"),
    )
    assert a.sigma_scale.shape == (2, 100) and np.all(a.sigma_scale > 0)
    assert "sigma_scale" in a.idata.posterior


@pytest.mark.parametrize(
    "change,match",
    [
        (
            lambda o: o.assign(value=np.where(o.index == 2, np.nan, o["value"])),
            "non-finite value; first at row 2",
        ),
        (
            lambda o: o.assign(lat=np.where(o.index == 1, 80.0, o["lat"])),
            "outside the grid.*lat=80",
        ),
        (lambda o: o.assign(sigma=0.0), "sigma <= 0"),
        (lambda o: o.drop(columns="sigma"), r"lacks column\(s\) \['sigma'\]"),
        (lambda o: o.iloc[:0], "no rows"),
    ],
    ids=["nan", "off-grid", "sigma0", "no-sigma", "empty"],
)
def test_bad_observations_are_rejected(problem, change, match):
    prior, obs, _ = problem
    with pytest.raises(ValueError, match=match):
        prepare_obs(prior, change(obs))


def test_time_selection():
    prior = make_linear_prior()
    obs = make_obs(prior.grid, 8)
    obs["time"] = pd.to_datetime(["2014-01-01"] * 5 + ["2014-01-02"] * 3)
    assert prepare_obs(prior, obs, time="2014-01-02").n == 3
    stated = prepare_obs(prior, obs, time="2014-01-02", options=ModelOptions(errors="stated"))
    assert stated.arrays.idx.shape == (32, 4)
    learned = prepare_obs(prior, obs, time="2014-01-02")
    assert learned.n == 3 and learned.arrays.idx.shape == (32, 9)
    with pytest.raises(ValueError, match="no observations at time=2015-01-01"):
        prepare_obs(prior, obs, time="2015-01-01")


def test_off_node_observations_are_exact_with_the_dense_likelihood():
    # Observations between grid nodes share nodes, so H diag(d) H^T has off-diagonal terms.
    # The per-time Cholesky likelihood includes them: Laplace (exact for a linear prior)
    # must then match the dense closed form, and the low-rank density at nodes agrees.
    prior = make_linear_prior(latent_dim=3, rank=2)
    obs = make_obs(prior.grid, 12, at_nodes=False, seed=5)
    assert (
        prepare_obs(prior, obs, options=ModelOptions(errors="stated")).arrays.scale_tril is not None
    )
    mean, cov = dense_posterior(prior, obs)
    a = assimilate(
        prior,
        obs,
        seed=3,
        progress_bar=False,
        sampler=SamplerSettings(num_chains=2, num_samples=1500, method="laplace"),
        options=ModelOptions(errors="stated"),
    )
    _check_against_closed_form(a, mean, cov, prior.grid)


def test_dense_and_low_rank_likelihoods_agree_at_nodes(problem):
    import jax.numpy as jnp
    from numpyro.infer.util import log_density

    from bayesda.inference.compiled import CACHE
    from bayesda.runtime.arrays import to_device

    prior, obs, _ = problem
    stated = ModelOptions(errors="stated")
    o = to_device(prepare_obs(prior, obs, options=stated).arrays)
    model = CACHE.model_fns(prior, stated).model
    z = {"z": jnp.asarray([0.3, -1.2, 0.7])}
    dense, _ = log_density(model, (o,), {}, z)
    low, _ = log_density(model, (o._replace(scale_tril=None),), {}, z)
    np.testing.assert_allclose(float(dense), float(low), rtol=1e-5)


def test_days_with_the_same_padded_length_share_compiled_code():
    # A factor of rank 10 > n is compressed per day by at_obs; the padded model arguments
    # must still have the same shapes for 6 and 7 observations (both padded to 32), or
    # every day would compile (and map) new code.
    prior = make_linear_prior(latent_dim=3, rank=10)
    a_obs, b_obs = make_obs(prior.grid, 6, seed=1), make_obs(prior.grid, 7, seed=2)
    shapes = [
        [np.shape(x) for x in jax.tree.leaves(prepare_obs(prior, o, options=o_).arrays)]
        for o in (a_obs, b_obs)
        for o_ in (ModelOptions(errors="stated"), ModelOptions())
    ]
    assert shapes[0] == shapes[2] and shapes[1] == shapes[3]
    kw = dict(
        sampler=SamplerSettings(num_chains=2, num_warmup=20, num_samples=20), progress_bar=False
    )
    assimilate(prior, a_obs, **kw)
    assert assimilate(prior, b_obs, **kw).timings["cache_hit"]
