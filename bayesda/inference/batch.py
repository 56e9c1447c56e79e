"""Posterior fields, their summaries and their verdicts for many analysis times at once.

A reanalysis keeps, per analysis time, the posterior mean, SD and quantiles of the field and
a verdict; it never needs the full :class:`~bayesda.inference.result.Assimilation` (an ArviZ
InferenceData with pointwise log-likelihoods, posterior predictive draws, ...). Building
that per time on the host was what bounded a reanalysis on a GPU (issue 11: about 0.25 s of
fields and 0.1-0.5 s of diagnostics per time, one time after another, against a few
milliseconds of sampling per time when many times share a program). Here the same
quantities are computed as array programs over a batch of ``T`` times:

* the field samples ``g(z) + r``, with the representation error ``r`` conditioned on each
  time's observations by Matheron's rule exactly as in :mod:`bayesda.inference.fields` (the
  innovation covariance ``S = diag(sigma^2) + H C H^T`` is built exactly, including the
  shared-node terms of ``H diag(d) H^T``, and factored once per time), vectorised over
  draws and mapped over times;
* mean, SD (ddof 1) and the 5/50/95% quantiles (linear interpolation, as ``np.quantile``);
* rank-normalised R-hat, bulk/tail ESS and within-chain ESS of the latent and of every
  pixel of every time in one :func:`bayesda.verify.convergence.convergence` call; the verdict
  is then :func:`bayesda.verify.verdict.judge`, the same rule as
  :func:`bayesda.verify.verdict.diagnose`.

The random numbers of ``r`` come from JAX keys (one per time), not from the numpy generator
of :func:`bayesda.inference.result.posterior_fields`: for the same latent draws the two paths give
equally valid field samples that differ by Monte Carlo noise (``tests/test_summaries.py``
checks the agreement, and the exact Gaussian posterior of a linear decoder).

Work is done in chunks of :data:`TIME_CHUNK` times so that memory stays bounded (one chunk
of 64 times of the NCEP model at 4 x 500 draws is about 0.7 GB of field samples).
Sorting (quantiles and ranks) runs in numpy on a CPU backend, where XLA's sort is about 30
times slower (see :mod:`bayesda.verify.convergence`), and on the device otherwise.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesda.inference.prepare import ObsData
from bayesda.verify.convergence import Convergence, convergence
from bayesda.verify.metrics import QUANTILES
from bayesda.verify.verdict import Verdict, group_extremes, judge

__all__ = [
    "DRAW_BATCH",
    "TIME_CHUNK",
    "BatchSummary",
    "TimeObs",
    "field_samples",
    "innovation_cholesky",
    "stack_obs",
    "summarise",
]

TIME_CHUNK = 64
"""Times per chunk of field samples, summaries and diagnostics."""
DRAW_BATCH = 256
"""Draws decoded at once (``lax.map`` batch size)."""


class TimeObs(NamedTuple):
    """The padded observations of ``T`` times as plain arrays (leading axis ``T``).

    Attributes:
      idx, weight: ``[T, m, 4]`` bilinear stencils (padding: index 0, weight 0).
      sigma: ``[T, m]`` observation error SD, K (1 on padding).
      y: ``[T, m]`` observed anomalies, K (0 on padding).
      mask: ``[T, m]`` True for real observations.
    """

    idx: np.ndarray
    weight: np.ndarray
    sigma: np.ndarray
    y: np.ndarray
    mask: np.ndarray


def stack_obs(obs_list: Sequence[ObsData]) -> TimeObs:
    """Stack equally padded :class:`~bayesda.inference.prepare.ObsData` of several times."""
    sizes = {o.padded for o in obs_list}
    if len(sizes) != 1:
        raise ValueError(f"observations must share one padded length, got {sorted(sizes)}")
    if any(o.arrays.errors is not None for o in obs_list):
        raise ValueError("the batched summaries cover the stated-error model only")
    arrays = [o.arrays for o in obs_list]
    return TimeObs(
        idx=np.stack([a.idx for a in arrays]).astype(np.int32),
        weight=np.stack([a.weight for a in arrays]).astype(np.float32),
        sigma=np.stack([a.sigma for a in arrays]).astype(np.float32),
        y=np.stack([a.y for a in arrays]).astype(np.float32),
        mask=np.stack([a.mask for a in arrays]).astype(bool),
    )


def _dense_h(idx, weight, mask, npix):
    """``[m, npix]`` matrix of ``H`` (rows of padding are zero)."""
    m = idx.shape[0]
    w = weight * mask[:, None]
    return jnp.zeros((m, npix), weight.dtype).at[jnp.arange(m)[:, None], idx].add(w)


def _innovation(factor, diag, obs: TimeObs):
    """``H`` ``[m, npix]``, ``A = H F^T`` ``[m, rank]`` and the lower Cholesky factor of
    ``S = diag(sigma^2) + H C H^T`` (identity on padding) of one time."""
    H = _dense_h(obs.idx, obs.weight, obs.mask, diag.size)
    A = H @ factor.T
    m = H.shape[0]
    live = obs.mask[:, None] & obs.mask[None, :]
    S = A @ A.T + (H * diag) @ H.T + jnp.diag(obs.sigma**2)
    return H, A, jnp.linalg.cholesky(jnp.where(live, S, jnp.eye(m, dtype=S.dtype)))


def _chol_one(factor, diag, obs: TimeObs):
    return _innovation(factor, diag, obs)[2]


@jax.jit
def _chol_batch(factor, diag, obs: TimeObs):
    return jax.vmap(_chol_one, in_axes=(None, None, 0))(factor, diag, obs)


def _flat_repr(prior):
    rep = prior.repr_error
    npix = int(np.prod(prior.grid.shape))
    factor = jnp.asarray(np.asarray(rep.factor, np.float32).reshape(rep.rank, npix))
    diag = jnp.asarray(np.asarray(rep.diag_var, np.float32).reshape(npix))
    return factor, diag


def innovation_cholesky(prior, obs: TimeObs) -> np.ndarray:
    """``[T, m, m]`` Cholesky factors of ``diag(sigma^2) + H C H^T`` of ``T`` times at once.

    The same matrix as :attr:`bayesda.inference.prepare.ObsData.scale_tril` (exact, including the
    shared-node terms of ``H diag(d) H^T``; identity on padding), built on the device for
    a whole batch instead of on the host one time after another.
    """
    factor, diag = _flat_repr(prior)
    return np.asarray(_chol_batch(factor, diag, jax.tree.map(jnp.asarray, obs)))


def _one_time(decode, factor, diag, z, obs: TimeObs, key):
    """Field samples ``g(z) + r`` of one time: ``z [s, d]`` -> ``[s, npix]``.

    Matheron's rule, as :func:`bayesda.inference.fields.condition_representation_error`:
    ``r = r0 + C H^T S^{-1} (y - H g(z) - H r0 - e0)`` with ``r0 ~ N(0, C)``,
    ``e0 ~ N(0, diag(sigma^2))``, ``S = diag(sigma^2) + H C H^T``.
    """
    s = z.shape[0]
    npix = diag.size
    decoded = jax.lax.map(decode, z, batch_size=min(DRAW_BATCH, s)).reshape(s, npix)
    H, A, chol = _innovation(factor, diag, obs)
    k_u, k_d, k_e = jax.random.split(key, 3)
    r0 = jax.random.normal(k_u, (s, factor.shape[0])) @ factor
    r0 = r0 + jnp.sqrt(diag) * jax.random.normal(k_d, (s, npix))
    e0 = obs.sigma * jax.random.normal(k_e, (s, H.shape[0]))
    innov = obs.y - decoded @ H.T - r0 @ H.T - e0
    innov = jnp.where(obs.mask, innov, 0.0)
    w = jax.scipy.linalg.cho_solve((chol, True), innov.T).T  # [s, m]
    return decoded + r0 + (w @ A) @ factor + diag * (w @ H)


_FIELDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fields_fn(decode):
    """The jitted ``(factor, diag, z [T, s, d], obs, keys [T]) -> [T, s, npix]`` of a decoder."""
    fn = _FIELDS.get(decode)
    if fn is None:

        @jax.jit
        def fn(factor, diag, z, obs, keys):
            one = functools.partial(_one_time, decode, factor, diag)
            return jax.lax.map(lambda a: one(*a), (z, obs, keys))

        _FIELDS[decode] = fn
    return fn


def field_samples(prior, z, obs: TimeObs, keys) -> jax.Array:
    """Posterior field samples ``g(z) + r`` of ``T`` times, on the device.

    Args:
      prior: the :class:`bayesda.prior.generative.GenerativePrior` (decoder and
        representation error).
      z: ``[T, s, d]`` latent draws.
      obs: the times' observations (:func:`stack_obs`).
      keys: ``[T, 2]`` PRNG keys for the representation error draws.

    Returns:
      ``[T, s, nlat, nlon]`` field samples, K.
    """
    shape = tuple(prior.grid.shape)
    factor, diag = _flat_repr(prior)
    z = jnp.asarray(z, jnp.float32)
    out = _fields_fn(prior.decode)(factor, diag, z, jax.tree.map(jnp.asarray, obs), keys)
    return out.reshape(*z.shape[:2], *shape)


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def _moments_and_quantiles(fields) -> dict[str, np.ndarray]:
    """Mean, SD and quantiles over axis 1 of ``[T, s, ...]`` field samples (host arrays)."""
    probs = list(QUANTILES.values())
    if _on_cpu():
        x = np.asarray(fields)
        qs = np.quantile(x, probs, axis=1)
        mean, sd = x.mean(1), x.std(1, ddof=1)
    else:
        qs = np.asarray(jnp.quantile(fields, jnp.asarray(probs), axis=1))
        mean, sd = np.asarray(fields.mean(1)), np.asarray(fields.std(1, ddof=1))
    out = {"mean": mean, "sd": sd}
    out.update({name: qs[i] for i, name in enumerate(QUANTILES)})
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def _per_time(conv: Convergence) -> list[Convergence]:
    """Split a Convergence of ``[T, ...]`` arrays into one per time (host arrays)."""
    host = Convergence(*(np.asarray(a) for a in conv))
    return [Convergence(*(a[t] for a in host)) for t in range(host.rhat.shape[0])]


class BatchSummary(NamedTuple):
    """What a reanalysis keeps of one time (host arrays).

    Attributes:
      mean, sd, q05, q50, q95: ``[nlat, nlon]`` posterior summaries of the field, K.
      samples: ``[keep, nlat, nlon]`` field samples spread evenly over the draws (or None).
      verdict: the :class:`bayesda.verify.verdict.Verdict`.
    """

    mean: np.ndarray
    sd: np.ndarray
    q05: np.ndarray
    q50: np.ndarray
    q95: np.ndarray
    samples: np.ndarray | None
    verdict: Verdict


def summarise(
    prior,
    z,
    obs: TimeObs,
    keys,
    *,
    num_chains: int,
    sampler_stats: Sequence[dict | None],
    keep_samples: int = 0,
    chunk: int = TIME_CHUNK,
) -> list[BatchSummary]:
    """Field summaries and verdicts of ``T`` times from their latent draws.

    Args:
      prior: the generative prior.
      z: ``[T, chain * draw, d]`` latent draws, chain-major.
      obs: the times' observations (:func:`stack_obs`).
      keys: ``[T, 2]`` PRNG keys for the representation error.
      num_chains: chains per time.
      sampler_stats: per time, the ``sampler`` argument of
        :func:`bayesda.verify.verdict.judge` (None for independent draws, e.g. Laplace).
      keep_samples: field samples to keep per time (0: none).
      chunk: times per chunk (bounds memory).

    Returns:
      One :class:`BatchSummary` per time.
    """
    z = np.asarray(z, np.float32)
    n_time, n_all, _ = z.shape
    if n_all % num_chains:
        raise ValueError(f"{n_all} draws per time do not split into {num_chains} chains")
    n_draw = n_all // num_chains
    keys = np.asarray(keys)
    pick = np.linspace(0, n_all - 1, keep_samples).round().astype(int) if keep_samples else None
    out: list[BatchSummary] = []
    for lo in range(0, n_time, chunk):
        sl = slice(lo, min(lo + chunk, n_time))
        part = TimeObs(*(a[sl] for a in obs))
        fields = field_samples(prior, z[sl], part, keys[sl])  # [t, s, lat, lon]
        t = fields.shape[0]
        stats = _moments_and_quantiles(fields)
        by_chain = jnp.moveaxis(fields.reshape(t, num_chains, n_draw, -1), 0, 2)
        conv_f = _per_time(convergence(by_chain))  # [chain, draw, t, npix] -> per time
        zc = np.moveaxis(z[sl].reshape(t, num_chains, n_draw, -1), 0, 2)
        conv_z = _per_time(convergence(zc))
        kept = np.asarray(fields[:, pick]) if pick is not None else None
        for i in range(t):
            verdict = judge(
                num_chains,
                n_draw,
                group_extremes(conv_z[i], num_chains, n_draw),
                group_extremes(conv_f[i], num_chains, n_draw),
                sampler_stats[lo + i],
            )
            out.append(
                BatchSummary(
                    *(stats[k][i] for k in ("mean", "sd", "q05", "q50", "q95")),
                    samples=None if kept is None else kept[i],
                    verdict=verdict,
                )
            )
    return out
