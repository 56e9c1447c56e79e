"""The NumPyro assimilation model: densities, padding, options."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive
from numpyro.infer.util import log_density
from scipy import stats

from bayesda.inference.model import ModelObs, assimilation_model, pad_length
from bayesda.obs.operator import bilinear_stencil
from bayesda.settings import ModelOptions

STATED = ModelOptions(errors="stated")


def _obs(st, sigma, A, D, y, mask=None):
    return ModelObs(
        idx=st.idx,
        weight=st.weight,
        y=y,
        sigma=sigma,
        mask=np.ones(len(sigma), bool) if mask is None else mask,
        repr_factor=A,
        repr_diag=D,
    )


def _problem(small_grid, n=7, rank=2, seed=0):
    rng = np.random.default_rng(seed)
    d = 3
    W = jnp.asarray(rng.normal(size=(*small_grid.shape, d)), jnp.float32)

    def decode(z):
        return jnp.einsum("ijk,...k->...ij", W, z)

    st = bilinear_stencil(small_grid, rng.uniform(31, 54, n), rng.uniform(-119, -86, n))
    A = (0.3 * rng.normal(size=(n, rank))).astype(np.float32)
    D = np.full(n, 0.05, np.float32)
    sigma = rng.uniform(0.3, 0.8, n).astype(np.float32)
    y = rng.normal(size=n).astype(np.float32)
    z = rng.normal(size=d).astype(np.float32)
    return decode, d, st, sigma, A, D, y, z


def _pad(x, m, fill=0):
    out = np.full((m, *x.shape[1:]), fill, x.dtype)
    out[: x.shape[0]] = x
    return out


@pytest.mark.parametrize("n,expected", [(1, 32), (32, 32), (33, 64), (500, 512)], ids=str)
def test_pad_length(n, expected):
    assert pad_length(n) == expected


def test_pad_length_rejects_zero():
    with pytest.raises(ValueError, match="n=0"):
        pad_length(0)


def test_log_likelihood_is_the_low_rank_gaussian(small_grid):
    decode, d, st, sigma, A, D, y, z = _problem(small_grid)
    args = (decode, d, _obs(st, sigma, A, D, y))
    lp, _ = log_density(assimilation_model, args, {"options": STATED}, {"z": z})
    mu = np.einsum("nk,nk->n", np.asarray(decode(z)).reshape(-1)[st.idx], st.weight)
    cov = np.diag(sigma.astype(np.float64) ** 2 + D) + A @ A.T
    expected = stats.multivariate_normal(mu, cov).logpdf(y) + stats.norm.logpdf(z).sum()
    assert float(lp) == pytest.approx(expected, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("likelihood", ["normal", "studentt"])
@pytest.mark.parametrize("rank", [0, 2], ids=["rank0", "rank2"])
def test_padding_leaves_the_density_unchanged(small_grid, likelihood, rank):
    decode, d, st, sigma, A, D, y, z = _problem(small_grid, rank=rank)
    m = pad_length(len(y))
    plain = (decode, d, _obs(st, sigma, A, D, y))
    mask = np.arange(m) < len(y)
    padded_st = type(st)(_pad(st.idx, m), _pad(st.weight, m))
    padded = (
        decode,
        d,
        _obs(padded_st, _pad(sigma, m, 1.0), _pad(A, m), _pad(D, m), _pad(y, m), mask),
    )
    kw = {"options": ModelOptions(errors="stated", likelihood=likelihood)}
    lp0, _ = log_density(assimilation_model, plain, kw, {"z": z})
    lp1, _ = log_density(assimilation_model, padded, kw, {"z": z})
    assert float(lp1) == pytest.approx(float(lp0), rel=1e-5, abs=1e-4)


def test_studentt_uses_the_marginal_scale(small_grid):
    decode, d, st, sigma, A, D, y, z = _problem(small_grid)
    args = (decode, d, _obs(st, sigma, A, D, y))
    opts = ModelOptions(errors="stated", likelihood="studentt", df=4.0)
    lp, _ = log_density(assimilation_model, args, {"options": opts}, {"z": z})
    mu = np.einsum("nk,nk->n", np.asarray(decode(z)).reshape(-1)[st.idx], st.weight)
    scale = np.sqrt(sigma.astype(np.float64) ** 2 + D + (A**2).sum(-1))
    expected = stats.t.logpdf(y, 4.0, mu, scale).sum() + stats.norm.logpdf(z).sum()
    assert float(lp) == pytest.approx(expected, rel=1e-5, abs=1e-4)


def test_prior_predictive_and_sites(small_grid):
    decode, d, st, sigma, A, D, _, _ = _problem(small_grid)
    pred = Predictive(assimilation_model, num_samples=4000)
    out = pred(
        jax.random.PRNGKey(0),
        decode,
        d,
        _obs(st, sigma, A, D, np.zeros_like(sigma)),
        options=ModelOptions(errors="stated", infer_sigma=True),
        observed=False,
        store_field=True,
    )
    assert out["z"].shape == (4000, d)
    assert out["y"].shape == (4000, len(sigma))
    assert out["field"].shape == (4000, *small_grid.shape)
    assert out["sigma_scale"].shape == (4000,)
    # LogNormal(0, 0.5): median 1.
    assert float(np.median(out["sigma_scale"])) == pytest.approx(1.0, abs=0.05)


def test_unknown_likelihood_or_error_model_is_rejected():
    with pytest.raises(ValueError, match="likelihood='cauchy'"):
        ModelOptions(errors="stated", likelihood="cauchy")
    with pytest.raises(ValueError, match="errors='guessed'"):
        ModelOptions(errors="guessed")
    with pytest.raises(ValueError, match="belong to the stated-error model"):
        ModelOptions(likelihood="studentt")
