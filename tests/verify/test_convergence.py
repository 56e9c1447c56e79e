"""JAX R-hat and ESS against ArviZ on fixtures: every quantity, every edge case, to 1e-6."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bayesda.verify.convergence import convergence, float64, host_convergence

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az


def _ar1(rng, chains, draws, n, phi):
    x = np.zeros((chains, draws, n))
    eps = rng.normal(size=(chains, draws, n))
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x


def _fixtures():
    rng = np.random.default_rng(0)
    stuck = rng.normal(size=(4, 200, 3))
    stuck[0] = 1.0  # one chain never moves
    shifted = rng.normal(size=(4, 200, 3)) + np.array([0.0, 0.0, 0.0, 3.0])[:, None, None]
    return {
        "iid": rng.normal(size=(4, 500, 6)),
        "ar1-0.9-odd-draws": _ar1(rng, 4, 301, 5, 0.9),
        "antithetic": _ar1(rng, 4, 200, 4, -0.7),
        "ties": np.round(rng.normal(size=(4, 100, 5)), 1),
        "short": rng.normal(size=(2, 9, 3)),
        "shifted-chain": shifted,
        "stuck-chain": stuck,
        "field-like": rng.normal(size=(3, 60, 2, 3)) * np.arange(1, 7).reshape(2, 3),
    }


FIXTURES = _fixtures()


FAST = ("iid", "ties", "stuck-chain")  # each shape compiles anew: the rest run with -m slow


@pytest.mark.parametrize(
    "name",
    [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in FIXTURES],
    ids=str,
)
def test_equal_to_arviz(name):
    x = FIXTURES[name]
    ds = az.convert_to_dataset({"x": x})
    ref = {
        "rhat": az.rhat(ds)["x"].values,
        "ess_bulk": az.ess(ds, method="bulk")["x"].values,
        "ess_tail": az.ess(ds, method="tail")["x"].values,
    }
    got = host_convergence(x)._asdict()
    for key, want in ref.items():
        assert got[key].shape == want.shape
        np.testing.assert_allclose(got[key], want, rtol=1e-6, atol=0, err_msg=key)


def test_float32_is_close_and_vectorised_over_times():
    rng = np.random.default_rng(1)
    x = _ar1(rng, 4, 200, 2 * 3 * 4, 0.5).reshape(4, 200, 2, 3, 4)  # [chain, draw, time, lat, lon]
    exact = host_convergence(x)
    fast = host_convergence(x.astype(np.float32), precise=False)
    assert exact.rhat.shape == (2, 3, 4)
    # float32 input rounds the draws, which moves the median and the folded ranks a little.
    np.testing.assert_allclose(fast.rhat, exact.rhat, rtol=1e-4)
    np.testing.assert_allclose(fast.ess_bulk, exact.ess_bulk, rtol=1e-3)
    np.testing.assert_allclose(fast.ess_tail, exact.ess_tail, rtol=1e-3)
    # Each time is diagnosed on its own: the batch equals the per-time results.
    one = host_convergence(x[:, :, 1])
    np.testing.assert_allclose(exact.ess_bulk[1], one.ess_bulk, rtol=1e-12)


def test_nan_and_too_few_draws_give_nan():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 50, 2))
    x[1, 3, 0] = np.nan
    out = host_convergence(x)
    assert np.isnan(out.rhat[0]) and np.isnan(out.ess_bulk[0]) and np.isfinite(out.rhat[1])
    assert np.isnan(host_convergence(rng.normal(size=(1, 50, 2))).rhat).all()  # one chain
    assert np.isnan(host_convergence(rng.normal(size=(2, 3, 2))).ess_bulk).all()


def test_rejects_bad_shape():
    with float64(), pytest.raises(ValueError, match=r"\[chain, draw"):
        convergence(np.zeros(5))


def test_device_path_equals_host_path():
    """The lax.sort path (GPU) gives the same ranks and quantiles as the numpy path (CPU)."""
    from bayesda.verify.convergence import _prepare_device, _prepare_host

    x = np.moveaxis(FIXTURES["ties"], -1, 0)  # [P, chain, draw], with ties
    with float64():
        dev = _prepare_device(x)
    host = _prepare_host(x)
    np.testing.assert_array_equal(np.asarray(dev[0]), host[0])  # ranks, ties averaged
    np.testing.assert_array_equal(np.asarray(dev[1]), host[1])  # folded ranks
    np.testing.assert_allclose(np.asarray(dev[2]), host[2], rtol=1e-12)  # XLA may fuse (FMA)
