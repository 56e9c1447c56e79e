"""The compiled NUTS driver: correct draws per chain, one program reused, batched times."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bayesda.geo.grid import Grid
from bayesda.inference import sampler
from bayesda.inference.assimilate import assimilate, assimilate_batch
from bayesda.settings import ModelOptions, SamplerSettings
from bayesda.testing import dense_posterior, make_linear_prior, make_obs


def _gauss_potential(x, args):
    mu, prec = args
    d = x - mu
    return 0.5 * d @ prec @ d


def _gaussians(n, dim, seed):
    rng = np.random.default_rng(seed)
    mus, covs = [], []
    for _ in range(n):
        a = rng.standard_normal((dim, dim))
        covs.append(a @ a.T / dim + 0.2 * np.eye(dim))
        mus.append(3.0 * rng.standard_normal(dim))
    return np.array(mus), np.array(covs)


def _assert_matches(x, mu, cov):
    """One chain's draws ``[S, D]`` match N(mu, cov): mean and SD within 5 Monte Carlo SEs."""
    import arviz as az

    ess = az.ess(az.convert_to_dataset(x[None]))["x"].values  # one chain, per coordinate
    sd = np.sqrt(np.diag(cov))
    z = (x.mean(0) - mu) / (sd / np.sqrt(ess))
    assert np.all(np.abs(z) < 5), z
    assert np.all(np.abs(x.std(0) / sd - 1) < 5 / np.sqrt(2 * ess))


@pytest.mark.parametrize("mass", ["laplace", "diag"])
def test_each_chain_samples_its_own_target(mass):
    # Four chains with four different Gaussian targets in one program: each chain's
    # draws must match its own target within Monte Carlo error (5 MC SEs, ESS from ArviZ).
    dim, batch = 3, 4
    mus, covs = _gaussians(batch, dim, seed=0)
    args = (jnp.asarray(mus, jnp.float32), jnp.asarray(np.linalg.inv(covs), jnp.float32))
    inv_mass = covs.astype(np.float32) if mass == "laplace" else np.ones((batch, dim), np.float32)
    draws = sampler.run_nuts(
        _gauss_potential,
        args,
        sampler.batch_keys([0], batch),
        np.zeros((batch, dim), np.float32),
        inv_mass,
        SamplerSettings(num_warmup=300, num_samples=1500, mass=mass),
    )
    assert draws.x.shape == (batch, 1500, dim)
    assert not draws.diverging.any()
    for b in range(batch):
        _assert_matches(draws.x[b], mus[b], covs[b])


def test_pool_step_sizes_is_the_geometric_mean_per_group():
    eps = np.array([0.4, 0.5, 0.9, 0.1, 0.3], np.float32)
    out = sampler.pool_step_sizes(eps, [7, 7, 2, 2, 5])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [np.sqrt(0.2)] * 2 + [0.3] * 2 + [0.3], rtol=1e-6)
    with pytest.raises(ValueError, match="groups has shape"):
        sampler.pool_step_sizes(eps, [0, 1])


def test_chains_of_a_group_share_their_step_size_and_sample_their_target():
    # Two targets x two chains each (the chains of two analysis times). With the groups,
    # the two chains of a target sample with one step size, the geometric mean of what
    # each adapted, and still match their target; without, each keeps its own.
    dim = 3
    mus, covs = _gaussians(2, dim, seed=4)
    mus, covs = np.repeat(mus, 2, axis=0), np.repeat(covs, 2, axis=0)
    args = (jnp.asarray(mus, jnp.float32), jnp.asarray(np.linalg.inv(covs), jnp.float32))
    call = dict(
        potential=_gauss_potential,
        args=args,
        keys=sampler.batch_keys([1], 4),
        x0=mus.astype(np.float32),
        inv_mass=covs.astype(np.float32),
        settings=SamplerSettings(num_warmup=100, num_samples=1000),
    )
    own = sampler.run_nuts(**call)
    pooled = sampler.run_nuts(**call, step_size_groups=[0, 0, 1, 1])
    eps_own, eps = own.step_size[:, 0], pooled.step_size[:, 0]
    assert eps_own[0] != eps_own[1] and eps_own[2] != eps_own[3]
    assert eps[0] == eps[1] and eps[2] == eps[3] and eps[0] != eps[2]
    np.testing.assert_allclose(
        eps[[0, 2]], sampler.detune(np.sqrt(eps_own[[0, 2]] * eps_own[[1, 3]])), rtol=0.15
    )
    assert np.all(pooled.step_size == eps[:, None])  # fixed while sampling
    for b in range(4):
        _assert_matches(pooled.x[b], mus[b], covs[b])


def test_program_is_compiled_once_and_reused():
    dim, batch = 2, 2
    config = SamplerSettings(num_warmup=60, num_samples=70)  # two segments per phase
    runs = []
    for seed in range(3):
        mus, covs = _gaussians(batch, dim, seed=seed)
        args = (jnp.asarray(mus, jnp.float32), jnp.asarray(np.linalg.inv(covs), jnp.float32))
        runs.append(
            sampler.run_nuts(
                _gauss_potential,
                args,
                sampler.batch_keys([seed], batch),
                mus.astype(np.float32),
                covs.astype(np.float32),
                config,
            )
        )
    assert not runs[0].timings["cache_hit"]
    assert runs[1].timings["cache_hit"] and runs[2].timings["cache_hit"]
    assert runs[2].x.shape == (batch, 70, dim)


@pytest.mark.parametrize("mass", ["laplace", "diag"])
def test_warmup_trees_are_capped_by_mass(mass):
    # A badly scaled mass (identity for SDs 1 and 0.01): the step size must fit the narrow
    # direction, so trees that follow the wide one run to hundreds of steps. Warmup trees
    # stop at the cap for the mass (7 steps with the Laplace mass, 31 otherwise); sampling
    # trees are not capped.
    cov = np.diag([1.0, 1e-4]).astype(np.float32)
    args = (jnp.zeros((1, 2)), jnp.asarray(np.linalg.inv(cov))[None])
    inv_mass = np.eye(2, dtype=np.float32)[None] if mass == "laplace" else np.ones((1, 2))
    config = SamplerSettings(num_warmup=40, num_samples=20, mass=mass)
    draws = sampler.run_nuts(
        _gauss_potential,
        args,
        sampler.batch_keys([0], 1),
        np.full((1, 2), 0.01, np.float32),
        inv_mass.astype(np.float32),
        config,
    )
    depth = sampler.LAPLACE_WARMUP_TREE_DEPTH if mass == "laplace" else sampler.WARMUP_TREE_DEPTH
    assert draws.warmup_steps[0] <= (2**depth - 1) * config.num_warmup
    if mass == "laplace":  # the mass stays wrong: sampling trees stay long
        assert draws.warmup_steps[0] > 3 * config.num_warmup
        assert draws.num_steps.max() > 2**depth - 1


def test_bad_mass_shape_is_refused():
    with pytest.raises(ValueError, match="inv_mass has shape"):
        sampler.run_nuts(
            _gauss_potential,
            (jnp.zeros((1, 2)), jnp.eye(2)[None]),
            sampler.batch_keys([0], 1),
            np.zeros((1, 2), np.float32),
            np.ones((1, 2), np.float32),  # diag shape for the dense default
            SamplerSettings(num_warmup=10, num_samples=10),
        )


@pytest.fixture(scope="module")
def linear():
    grid = Grid(lat=np.linspace(30.0, 45.0, 7), lon=np.linspace(-110.0, -90.0, 9))
    prior = make_linear_prior(grid=grid, latent_dim=3, rank=2)
    obs_a = make_obs(prior.grid, 6, at_nodes=True, seed=2).assign(time=np.datetime64("2014-01-01"))
    obs_b = make_obs(prior.grid, 40, at_nodes=True, seed=3).assign(time=np.datetime64("2014-01-02"))
    return prior, obs_a, obs_b


def test_batch_of_times_matches_each_closed_form(linear):
    # Two times with different numbers of observations (6 and 40: padded to 32 and 64 alone,
    # to 64 together) in one program: each must match its own exact posterior.
    from bayesda.testing import assert_matches_closed_form as _check_against_closed_form

    prior, obs_a, obs_b = linear
    table = pd.concat([obs_a, obs_b], ignore_index=True)
    times = [np.datetime64("2014-01-01"), np.datetime64("2014-01-02")]
    out = assimilate_batch(
        prior,
        table,
        times,
        seeds=[0, 1],
        progress_bar=False,
        sampler=SamplerSettings(num_chains=2, num_warmup=300, num_samples=600),
        options=ModelOptions(errors="stated"),
    )
    assert [a.obs.n for a in out] == [6, 40]
    assert all(a.settings["batch_size"] == 2 and a.settings["n_pad"] == 64 for a in out)
    for a, obs in zip(out, (obs_a, obs_b), strict=True):
        mean, cov = dense_posterior(prior, obs.drop(columns="time"))
        _check_against_closed_form(a, mean, cov, prior.grid)


def test_batch_is_reproducible_and_checks_seeds(linear):
    prior, obs_a, _ = linear
    kw = dict(
        sampler=SamplerSettings(num_chains=2, num_warmup=30, num_samples=30), progress_bar=False
    )
    a = assimilate_batch(prior, obs_a, [None, None], seeds=[3, 4], **kw)
    b = assimilate_batch(prior, obs_a, [None, None], seeds=[3, 4], **kw)
    np.testing.assert_array_equal(a[0].field, b[0].field)
    np.testing.assert_array_equal(a[1].z, b[1].z)
    assert not np.array_equal(a[0].z, a[1].z)  # different seeds, different chains
    with pytest.raises(ValueError, match="one seed per time"):
        assimilate_batch(prior, obs_a, [None, None], seeds=[3], **kw)


def test_prior_and_median_inits_run(linear):
    prior, obs_a, _ = linear
    for init in ("prior", "median"):
        a = assimilate(
            prior,
            obs_a,
            progress_bar=False,
            sampler=SamplerSettings(
                init=init, mass="diag", num_chains=2, num_warmup=100, num_samples=50
            ),
            options=ModelOptions(errors="stated"),
        )
        assert np.all(np.isfinite(a.z)) and a.grad_evals["map"] == 0


def test_detune_moves_step_sizes_out_of_the_resonance_bands_only():
    from bayesda.inference.sampler import RESONANCE_BAND, detune

    r15 = 2 * np.pi / 15  # a tree of 15 steps spans one period of the whitened flow
    eps = np.array([0.30, 0.40, r15 * 0.97, r15, r15 * 1.06, 0.45, 0.5, 2 * np.pi / 31], np.float32)
    out = np.asarray(detune(eps))
    moved = np.array([False, False, True, True, True, False, False, True])
    np.testing.assert_array_equal(out != eps, moved)
    assert np.all(out[moved] > eps[moved])  # raised just above the band
    np.testing.assert_allclose(out[2:5], r15 * RESONANCE_BAND[1], rtol=1e-6)
    # No detuned value lands in another band.
    np.testing.assert_array_equal(np.asarray(detune(out)), out)


def test_kernel_is_the_nuts_part_of_the_settings_and_draws_do_not_recompile():
    """numpyro's split: NUTS takes the kernel settings, MCMC the run lengths. The compiled
    program depends on the kernel and the warmup only, so more draws reuse it."""
    s = SamplerSettings(num_warmup=60, num_samples=100, target_accept=0.7, max_tree_depth=8)
    assert sampler.NutsKernel.of(s) == sampler.NutsKernel(0.7, 8, "laplace")
    dim, batch = 2, 2
    mus, covs = _gaussians(batch, dim, seed=5)
    args = (jnp.asarray(mus, jnp.float32), jnp.asarray(np.linalg.inv(covs), jnp.float32))
    call = dict(
        potential=_gauss_potential,
        args=args,
        keys=sampler.batch_keys([5], batch),
        x0=mus.astype(np.float32),
        inv_mass=covs.astype(np.float32),
    )
    first = sampler.run_nuts(**call, settings=s)
    more = sampler.run_nuts(**call, settings=s.replace(num_samples=150))  # segments of 50
    assert more.x.shape == (batch, 150, dim) and more.timings["cache_hit"]
    np.testing.assert_array_equal(more.x[:, :100], first.x)  # the same chains, longer
