"""Rank-normalised split R-hat, bulk and tail ESS in JAX, vectorised over every quantity.

The same estimators as ArviZ (``arviz.rhat`` with the default ``method="rank"``,
``arviz.ess`` with ``method="bulk"`` and ``method="tail"``; Vehtari, Gelman, Simpson,
Carpenter and Buerkner 2021, "Rank-normalization, folding, and localization: an improved
R-hat", Bayesian Analysis 16(2)), written as array code so that thousands of quantities
(every pixel of a field, of every analysis time) are diagnosed in one compiled call instead
of one Python-level ArviZ call per quantity.

Input layout: ``[chain, draw, *rest]``; every trailing axis (``latent``, ``lat, lon``,
``time, lat, lon``, ...) is a separate quantity and the outputs have shape ``rest``.

Estimators, for one quantity with ``M`` chains of ``N`` draws:

* split chains: the first and last ``N // 2`` draws of each chain become two chains
  (the middle draw of an odd ``N`` is dropped), ``2M`` chains of ``n = N // 2``;
* rank normalisation: ``z = Phi^-1((r - 3/8) / (S + 1/4))`` with ``r`` the average rank of
  each of the ``S = 2 M n`` values (Blom 1958); ties share their average rank;
* R-hat of ``2M`` chains: ``sqrt(((n - 1) / n W + B / n) / W)``, ``W`` the mean within-chain
  variance, ``B / n`` the variance of the chain means; the rank-normalised R-hat is the
  larger of the R-hat of ``z`` (bulk) and of the rank-normalised ``|x - median(x)|``
  (tails, "folded");
* ESS: ``S / tau`` with ``tau = -1 + 2 sum_t rho_t`` from the multi-chain autocorrelation
  (FFT autocovariance), truncated by Geyer's initial positive sequence and made monotone
  (initial monotone sequence), floored at ``1 / log10(S)``; bulk ESS is that of ``z``, tail
  ESS the smaller of those of the indicators ``x <= q05`` and ``x <= q95`` (quantiles of
  type 7).

Agreement with ArviZ (``tests/test_convergence.py``): to 1e-6 relative on fixtures when the
input is float64 (run under :func:`float64`); in float32 the draws are rounded first,
which moves R-hat by up to about 1e-4 and ESS by up to about 1e-3 (relative).
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

import bayesda.runtime.export as aot
from bayesda.runtime.arrays import to_device

__all__ = [
    "Convergence",
    "convergence",
    "ess_bulk",
    "ess_tail",
    "float64",
    "host_convergence",
    "rhat",
]

TAIL_PROBS = (0.05, 0.95)


class Convergence(NamedTuple):
    """Diagnostics of every quantity, each of shape ``rest`` (the input's trailing axes).

    Attributes:
      rhat: rank-normalised split R-hat (NaN with fewer than 2 chains or 4 draws).
      ess_bulk: bulk effective sample size.
      ess_tail: tail effective sample size (5% and 95% quantiles).
      ess_within: effective sample size from the autocorrelation *within* chains only (the
        smaller of the rank-normalised and the folded values): unlike ``ess_bulk`` it does
        not shrink when chains disagree, so it can calibrate how far R-hat of converged
        chains scatters (:func:`bayesda.verify.verdict.rhat_threshold`). Not an ArviZ quantity.
    """

    rhat: jax.Array
    ess_bulk: jax.Array
    ess_tail: jax.Array
    ess_within: jax.Array


def float64():
    """A context in which JAX computes in float64 (for ArviZ-exact diagnostics on a host)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # pragma: no cover - older/newer JAX spell it differently
        from jax.experimental import enable_x64 as enable
    try:
        return enable(True)
    except TypeError:  # pragma: no cover
        return enable()


def _split(x):
    """``[P, M, N]`` -> ``[P, 2M, N // 2]``: first and last halves of each chain."""
    half = x.shape[2] // 2
    return jnp.concatenate([x[:, :, :half], x[:, :, x.shape[2] - half :]], axis=1)


def _sort_and_rank(flat):
    """Each row of ``[P, S]`` sorted, and the 1-based ranks of its values (ties averaged,
    as ``scipy.stats.rankdata``), with ``lax.sort``."""
    p, n = flat.shape
    iota = jax.lax.broadcasted_iota(jnp.int32, flat.shape, 1)
    sorted_rows, order = jax.lax.sort((flat, iota), dimension=1, num_keys=1, is_stable=True)
    differs = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    true = jnp.ones((p, 1), bool)
    first = jax.lax.cummax(jnp.where(jnp.concatenate([true, differs], 1), iota, 0), axis=1)
    ends = jnp.concatenate([differs, true], 1)
    last = jax.lax.cummin(jnp.where(ends, iota, n - 1), axis=1, reverse=True)
    ranks_sorted = (first + last).astype(flat.dtype) / 2 + 1
    ranks = jnp.zeros_like(flat).at[jnp.arange(p)[:, None], order].set(ranks_sorted)
    return sorted_rows, ranks


@jax.jit
def _prepare_device(x):
    """Ranks of the split draws and of the folded split draws, and the tail quantiles."""
    p, _, n = x.shape
    flat = _split(x).reshape(p, -1)
    size = flat.shape[1]  # even: 2M split chains
    sorted_s, ranks = _sort_and_rank(flat)
    median = 0.5 * (sorted_s[:, size // 2 - 1] + sorted_s[:, size // 2])
    _, ranks_fold = _sort_and_rank(jnp.abs(flat - median[:, None]))
    # Tail quantiles are of the unsplit draws (the same values unless N is odd).
    sorted_x = sorted_s if n % 2 == 0 else jnp.sort(x.reshape(p, -1), axis=1)
    q = jnp.stack([_quantile_sorted(sorted_x, prob) for prob in TAIL_PROBS], axis=1)
    return ranks, ranks_fold, q


def _prepare_host(x):
    """:func:`_prepare_device` in numpy/scipy.

    XLA's CPU sort calls a compiled comparator per comparison and was 30 times slower than
    numpy's (1.1 s against 0.035 s for 1325 x 2000 float32 on this project's 2-core box);
    doing the sorting outside the compiled program also keeps that program free of host
    callbacks, so JAX's persistent cache can keep it for the next process.
    """
    from scipy.stats import rankdata

    x = np.asarray(x)
    p, _, n = x.shape
    half = n // 2
    flat = np.concatenate([x[:, :, :half], x[:, :, n - half :]], axis=1).reshape(p, -1)
    ranks = rankdata(flat, method="average", axis=1)
    folded = np.abs(flat - np.median(flat, axis=1, keepdims=True))
    ranks_fold = rankdata(folded, method="average", axis=1)
    sorted_x = np.sort(x.reshape(p, -1), axis=1)
    q = np.stack([_quantile_sorted(sorted_x, prob) for prob in TAIL_PROBS], axis=1)
    return ranks.astype(x.dtype), ranks_fold.astype(x.dtype), q.astype(x.dtype)


def _quantile_sorted(sorted_rows, prob: float):
    """Type-7 quantile of each sorted row, in ``scipy.stats.mstats.mquantiles``' arithmetic."""
    n = sorted_rows.shape[1]
    aleph = n * prob + (1.0 - prob)
    k = int(np.floor(np.clip(aleph, 1, n - 1)))
    gamma = float(np.clip(aleph - k, 0.0, 1.0))
    return (1.0 - gamma) * sorted_rows[:, k - 1] + gamma * sorted_rows[:, k]


def _rhat_plain(x):
    """Split-free Gelman-Rubin R-hat of ``[M, n]`` (ArviZ's ``_rhat``)."""
    n = x.shape[1]
    within = jnp.mean(jnp.var(x, axis=1, ddof=1))
    between = n * jnp.var(jnp.mean(x, axis=1), ddof=1)
    return jnp.sqrt((between / within + n - 1) / n)


def _ess_one(x, within: bool = False):
    """ESS of ``[M, n]`` (already split): ArviZ's ``_ess`` with Geyer's monotone sequence.

    ``within=True`` leaves the between-chain variance out of the marginal variance.
    """
    m, n = x.shape
    total = m * n
    fft_len = _fast_len(2 * n)
    centred = x - x.mean(axis=1, keepdims=True)
    spec = jnp.fft.rfft(centred, n=fft_len, axis=1)
    acov = jnp.fft.irfft(spec * jnp.conj(spec), n=fft_len, axis=1)[:, :n] / n
    mean_var = jnp.mean(acov[:, 0]) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1 and not within:
        var_plus = var_plus + jnp.var(x.mean(axis=1), ddof=1)
    rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # [n]
    rho = rho.at[0].set(1.0)

    # Pairs (rho_2k, rho_2k+1). ArviZ's loop computes pair k for k = 1, 2, ... while
    # 2k - 1 < n - 3 and the previous pair's sum is > 0; k_last is its last k.
    n_pairs = max((n - 1) // 2, 1)
    k_all = jnp.arange(n_pairs + 1)
    even = rho[jnp.minimum(2 * k_all, n - 1)]
    odd = rho[jnp.minimum(2 * k_all + 1, n - 1)]
    pair = even + odd
    ks = k_all[1:]
    runs = (2 * ks - 1 < n - 3) & (pair[:-1] > 0)
    k_last = jnp.sum(jnp.cumprod(runs.astype(jnp.int32)))
    # Initial monotone sequence over pairs 0 .. k_last - 1: running minimum of pair sums.
    mono = jax.lax.cummin(pair)
    head = jnp.sum(jnp.where(k_all < k_last, mono, 0.0))
    e_last, p_last = even[k_last], pair[k_last]
    tail = jnp.where(k_last == 0, 1.0, jnp.where((p_last >= 0) | (e_last > 0), e_last, 0.0))
    tau = -1.0 + 2.0 * head + tail
    tau = jnp.maximum(tau, 1.0 / math.log10(total))
    ess = total / tau
    constant = (jnp.max(x) - jnp.min(x)) < np.finfo(np.float64).resolution
    ess = jnp.where(constant, float(total), ess)
    return jnp.where(jnp.any(jnp.isnan(rho)) & ~constant, jnp.nan, ess)


def _fast_len(n: int) -> int:
    from scipy.fft import next_fast_len

    return int(next_fast_len(n))


@jax.jit
def _core(x, ranks, ranks_fold, q):
    """R-hat, bulk and tail ESS, within-chain ESS of ``[P, M, N]`` given the ranks."""
    p, m, n = x.shape
    s_shape = (p, 2 * m, n // 2)
    size = ranks.shape[1]
    z = ndtri((ranks - 0.375) / (size + 0.25)).reshape(s_shape)
    z_fold = ndtri((ranks_fold - 0.375) / (size + 0.25)).reshape(s_shape)
    rhat = jnp.maximum(jax.vmap(_rhat_plain)(z), jax.vmap(_rhat_plain)(z_fold))
    bulk = jax.vmap(_ess_one)(z)
    within_ess = functools.partial(_ess_one, within=True)
    within = jnp.minimum(jax.vmap(within_ess)(z), jax.vmap(within_ess)(z_fold))
    tails = [
        jax.vmap(_ess_one)(_split((x <= q[:, i, None, None]).astype(x.dtype)))
        for i in range(len(TAIL_PROBS))
    ]
    return rhat, bulk, jnp.minimum(*tails), within


# Kept on disk for later processes (bayesda.runtime.export): they close over nothing but code.
_CORE = aot.cached(_core, "convergence_core", ("convergence",))
_PREPARE = aot.cached(_prepare_device, "convergence_prepare", ("convergence",))


def _batch(x):
    """R-hat, bulk and tail ESS, within-chain ESS of ``[P, M, N]`` (P quantities)."""
    p, m, n = x.shape
    if jax.default_backend() == "cpu":
        return _batch_host(np.asarray(x))
    bad = jnp.any(jnp.isnan(x), axis=(1, 2))
    x = jnp.where(bad[:, None, None], 0.0, x)
    if n < 4:
        nan = jnp.full((p,), jnp.nan, x.dtype)
        return nan, nan, nan, nan
    rhat, bulk, tail, within = _CORE(x, *_PREPARE(x))
    if m < 2:
        rhat = jnp.full_like(rhat, jnp.nan)
    return tuple(jnp.where(bad, jnp.nan, v) for v in (rhat, bulk, tail, within))


def _batch_host(x: np.ndarray):
    """:func:`_batch` on a CPU backend: everything around the compiled core in numpy.

    Run eagerly in JAX, the masking and reshaping were about ten small programs, each lowered
    and fetched from the compilation cache in every new process.
    """
    p, m, n = x.shape
    bad = np.isnan(x).any(axis=(1, 2))
    x = np.where(bad[:, None, None], np.zeros((), x.dtype), x)
    if n < 4:
        nan = np.full((p,), np.nan, x.dtype)
        return nan, nan, nan, nan
    out = [np.asarray(v) for v in _CORE(*to_device((x, *_prepare_host(x))))]
    if m < 2:
        out[0] = np.full_like(out[0], np.nan)
    return tuple(np.where(bad, np.nan, v).astype(v.dtype) for v in out)


def _as_array(x):
    # host input stays on the host on a CPU backend (see _batch_host)
    on_host = not isinstance(x, jax.Array) and jax.default_backend() == "cpu"
    x = np.asarray(x) if on_host else jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):  # numpy dtypes too (and bfloat16)
        x = x.astype(jnp.result_type(float))
    if x.ndim < 2:
        raise ValueError(f"need samples shaped [chain, draw, ...], got shape {x.shape}")
    return x


def convergence(x) -> Convergence:
    """R-hat, bulk and tail ESS of each quantity of ``x`` ``[chain, draw, *rest]`` in one call.

    Args:
      x: samples; trailing axes are separate quantities (e.g. ``[chain, draw, lat, lon]`` or
        ``[chain, draw, time, lat, lon]``). Float64 input under :func:`float64` reproduces
        ArviZ to rounding; float32 input is faster and agrees to about 1e-4.

    Returns:
      A :class:`Convergence` of arrays shaped like ``x.shape[2:]``: NumPy arrays on a CPU
      backend, JAX arrays (on the device) otherwise.
    """
    x = _as_array(x)
    c, d, *rest = x.shape
    xp = np if isinstance(x, np.ndarray) else jnp
    flat = xp.moveaxis(x.reshape(c, d, -1), -1, 0)  # [P, chain, draw]
    return Convergence(*(v.reshape(rest) for v in _batch(flat)))


def rhat(x) -> jax.Array:
    """Rank-normalised split R-hat of each quantity of ``x`` ``[chain, draw, *rest]``."""
    return convergence(x).rhat


def ess_bulk(x) -> jax.Array:
    """Bulk ESS of each quantity of ``x`` ``[chain, draw, *rest]``."""
    return convergence(x).ess_bulk


def ess_tail(x) -> jax.Array:
    """Tail ESS (5% and 95% quantiles) of each quantity of ``x`` ``[chain, draw, *rest]``."""
    return convergence(x).ess_tail


@contextlib.contextmanager
def _noop():
    yield


def host_convergence(x, *, precise: bool = True) -> Convergence:
    """:func:`convergence` of a host array, returned as numpy arrays.

    Args:
      x: ``[chain, draw, *rest]`` samples (numpy).
      precise: compute in float64 (ArviZ-exact); False computes in the input's float type.
    """
    ctx = float64() if precise else _noop()
    with ctx:
        arr = np.asarray(x, np.float64 if precise else None)
        out = convergence(arr)
        return Convergence(*(np.asarray(o) for o in out))
