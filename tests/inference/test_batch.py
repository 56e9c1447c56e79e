"""The batched fields, summaries and verdicts of bayesda.inference.batch (the reanalysis fast
path)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bayesda.inference.assimilate import assimilate_batch, assimilate_summaries
from bayesda.inference.batch import field_samples, stack_obs, summarise
from bayesda.inference.compiled import CACHE, spd, spd_batch
from bayesda.inference.prepare import prepare_obs, repad
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.runtime.arrays import to_device
from bayesda.settings import ModelOptions, SamplerSettings
from bayesda.testing import dense_posterior, make_linear_prior, make_obs
from bayesda.verify.verdict import diagnose, ebfmi


def test_matheron_on_the_device_matches_the_dense_gaussian_conditional():
    prior = make_linear_prior(rank=2)
    grid = prior.grid
    obs = make_obs(grid, 6, seed=3)  # off-node points: overlapping stencils
    # padded to 32: the padding must contribute nothing
    od = prepare_obs(prior, obs, options=ModelOptions(errors="stated"))
    assert od.padded > od.n
    npix = grid.size
    st = bilinear_stencil(grid, obs["lat"], obs["lon"])
    F = prior.repr_error.factor.reshape(-1, npix).astype(np.float64)
    C = F.T @ F + np.diag(prior.repr_error.diag_var.reshape(npix).astype(np.float64))
    H = as_matrix(st, npix)
    sigma = obs["sigma"].to_numpy()
    z0 = np.full((1, prior.latent_dim), 0.3, np.float32)
    g = np.asarray(prior.decode(z0[0]), np.float64).reshape(npix)
    resid = obs["value"].to_numpy() - H @ g
    S = H @ C @ H.T + np.diag(sigma**2)
    mean = g + C @ H.T @ np.linalg.solve(S, resid)
    cov = C - C @ H.T @ np.linalg.solve(S, H @ C)

    s = 40000
    z = np.tile(z0, (s, 1))[None]
    x = field_samples(prior, z, stack_obs([od]), jax.random.PRNGKey(0)[None])
    x = np.asarray(x, np.float64).reshape(s, npix)
    se = np.sqrt(np.diag(cov) / s)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se + 1e-5)
    emp = np.cov(x.T)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / s)
    assert np.all(np.abs(emp - cov) < 5 * se_cov + 1e-5)


def test_summaries_match_the_exact_posterior_of_a_linear_decoder():
    # Laplace draws are exact for a linear-Gaussian model: the summaries must then match
    # the closed-form posterior of the field within Monte Carlo error.
    prior = make_linear_prior(rank=2)
    obs_a = make_obs(prior.grid, 5, seed=11).assign(time=np.datetime64("2014-01-01"))
    obs_b = make_obs(prior.grid, 9, seed=12).assign(time=np.datetime64("2014-01-02"))
    table = pd.concat([obs_a, obs_b], ignore_index=True)
    times = [np.datetime64("2014-01-01"), np.datetime64("2014-01-02")]
    draws = 3000
    out = assimilate_summaries(
        prior,
        table,
        times,
        seeds=[1, 2],
        sampler=SamplerSettings(method="laplace", num_chains=4, num_samples=draws),
        keep_samples=7,
        options=ModelOptions(errors="stated"),
    )
    n = 4 * draws
    for res, obs in zip(out, (obs_a, obs_b), strict=True):
        mean, cov = dense_posterior(prior, obs)
        sd = np.sqrt(np.diag(cov))
        s = res.summary
        assert np.all(np.abs(s.mean.ravel() - mean) < 5 * sd / np.sqrt(n) + 1e-4)
        # SE of a sample SD of n Gaussian draws: sd / sqrt(2 (n - 1)).
        assert np.all(np.abs(s.sd.ravel() - sd) < 5 * sd / np.sqrt(2 * (n - 1)) + 1e-4)
        # 5% quantile: mean - 1.645 sd, SE sqrt(p (1 - p)) / (n phi(z_p)) * sd ~ 2.1 sd / sqrt(n).
        q05 = mean - 1.6449 * sd
        assert np.all(np.abs(s.q05.ravel() - q05) < 5 * 2.2 * sd / np.sqrt(n) + 1e-4)
        assert np.all(s.q05 <= s.q50) and np.all(s.q50 <= s.q95)
        assert s.samples.shape == (7, *prior.grid.shape)
        assert s.verdict.status == "WARN"  # no sampler statistics: never PASS
        assert any("no sampler statistics" in r for r in s.verdict.reasons)


def test_fast_path_agrees_with_the_full_path_and_judges_by_the_same_rule():
    prior = make_linear_prior(rank=2)
    obs = make_obs(prior.grid, 8, seed=4).assign(time=np.datetime64("2014-01-01"))
    t = [np.datetime64("2014-01-01")]
    sampler = SamplerSettings(num_chains=4, num_warmup=150, num_samples=300)
    fast = assimilate_summaries(
        prior, obs, t, seeds=[5], sampler=sampler, options=ModelOptions(errors="stated")
    )[0]
    full = assimilate_batch(
        prior,
        obs,
        t,
        seeds=[5],
        sampler=sampler,
        progress_bar=False,
        options=ModelOptions(errors="stated"),
    )[0]
    ref = diagnose(full.idata, full.field)
    assert fast.summary.verdict.status == ref.status == "PASS"
    # Two valid samples of one posterior: means agree within Monte Carlo error.
    flat = full.field.reshape(-1, *prior.grid.shape)
    sd = flat.std(0)
    assert np.all(np.abs(fast.summary.mean - flat.mean(0)) < 5 * sd * np.sqrt(2 / 300))
    assert np.all(np.abs(fast.summary.sd / sd - 1) < 0.25)
    assert 0 < fast.timings["lockstep"] <= 1

    # Given the full path's own draws, the batched verdict is diagnose()'s, number for number.
    st = full.idata.sample_stats
    stats = {
        "diverging": st["diverging"].values,
        "energy": st["energy"].values,
        "n_steps": st["n_steps"].values,
        "max_tree_depth": sampler.max_tree_depth,
    }
    od = full.obs
    [again] = summarise(
        prior,
        full.z.reshape(1, -1, prior.latent_dim),
        stack_obs([od]),
        jax.random.PRNGKey(0)[None],
        num_chains=4,
        sampler_stats=[stats],
    )
    v = again.verdict
    assert v.max_rhat_z == pytest.approx(ref.max_rhat_z, rel=1e-6)
    assert v.min_ess_bulk_z == pytest.approx(ref.min_ess_bulk_z, rel=1e-5)
    assert v.min_ess_tail_z == pytest.approx(ref.min_ess_tail_z, rel=1e-5)
    assert v.divergences == ref.divergences
    assert v.ebfmi == pytest.approx(ref.ebfmi, rel=1e-6)
    assert v.treedepth_saturation == ref.treedepth_saturation


def test_fast_path_refuses_the_studentt_likelihood():
    prior = make_linear_prior()
    obs = make_obs(prior.grid, 4)
    with pytest.raises(ValueError, match="normal likelihood"):
        assimilate_summaries(
            prior,
            obs,
            [None],
            seeds=[0],
            options=ModelOptions(likelihood="studentt", errors="stated"),
        )


def test_ebfmi_equals_arviz():
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(0)
    energy = np.cumsum(rng.normal(size=(3, 200)), axis=1)
    ds = az.from_dict(posterior={"x": rng.normal(size=(3, 200))}, sample_stats={"energy": energy})
    np.testing.assert_allclose(ebfmi(energy), az.bfmi(ds), rtol=1e-12)


def test_batched_map_equals_the_per_time_map():
    prior = make_linear_prior(rank=2)
    stated = ModelOptions(errors="stated")
    fns = CACHE.model_fns(prior, stated)
    obs = [
        repad(prepare_obs(prior, make_obs(prior.grid, 6, seed=k), options=stated), 32)
        for k in (1, 2)
    ]
    args = [to_device(o.arrays) for o in obs]
    batched = jax.tree.map(lambda *a: jnp.stack(a), *args)
    xb, hb, _ = fns.find_map_batch(fns.flat0, batched)
    for i, a in enumerate(args):
        x, h, _ = fns.find_map(fns.flat0, a)
        np.testing.assert_allclose(xb[i], x, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(spd_batch(hb))[i], spd(np.asarray(h)), rtol=1e-4, atol=1e-4
        )


def test_device_cholesky_equals_the_host_scale_tril():
    from bayesda.inference.batch import innovation_cholesky

    prior = make_linear_prior(rank=2)
    stated = ModelOptions(errors="stated")
    obs = [
        repad(prepare_obs(prior, make_obs(prior.grid, k, seed=k), options=stated), 32)
        for k in (3, 7)
    ]
    chol = innovation_cholesky(prior, stack_obs(obs))
    for c, o in zip(chol, obs, strict=True):
        np.testing.assert_allclose(c, o.arrays.scale_tril, rtol=1e-4, atol=1e-5)
    cheap = prepare_obs(prior, make_obs(prior.grid, 3, seed=3), covariance=False, options=stated)
    assert cheap.arrays.scale_tril is None
    np.testing.assert_allclose(cheap.arrays.repr_diag, obs[0].arrays.repr_diag)


def test_spd_lifts_negative_curvature_to_the_prior_precision():
    """A nonlinear decoder can give an indefinite Hessian at the mode; the Laplace precision
    must then not be wider than the prior's (it was 1e-6: SD 1,000 in such a direction)."""
    from bayesda.inference.compiled import PRECISION_FLOOR, spd, spd_batch

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    h = (q * np.array([-3.0, 1e-8, 0.5, 2.0, 40.0])) @ q.T
    w = np.linalg.eigvalsh(spd(h))
    np.testing.assert_allclose(np.sort(w), [1.0, 1.0, 1.0, 2.0, 40.0], rtol=1e-10)
    assert PRECISION_FLOOR == 1.0
    np.testing.assert_allclose(np.asarray(spd_batch(h[None]))[0], spd(h), rtol=1e-4, atol=1e-4)
    good = (q * np.array([1.5, 2.0, 3.0, 4.0, 9.0])) @ q.T  # a valid posterior precision
    np.testing.assert_allclose(spd(good), good, atol=1e-12)
