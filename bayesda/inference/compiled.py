"""The compiled functions of an assimilation model, built once per (decoder, model options).

:class:`CompiledCache` holds, per decoder, the bound NumPyro model, its potential, the
jitted MAP optimiser (Adam + two Newton steps, and the Hessian), the constraining map and
the batched decoder. The observations enter only as arguments, so every day with the same
padded shape reuses the compiled code (the leak described in :mod:`bayesda.inference.sampler` came
from closures that changed per day). Entries are keyed weakly on the decoder function, so
they go away with the prior; :data:`CACHE` is the process-wide instance.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import constrain_fn, potential_energy

import bayesda.runtime.export as aot
from bayesda.inference.errors import LearnedErrors
from bayesda.inference.model import SIGMA_SCALE_PRIOR, ModelObs, assimilation_model
from bayesda.settings import ModelOptions

__all__ = [
    "CACHE",
    "DECODE_BATCH",
    "MAP_STEPS",
    "CompiledCache",
    "ModelFns",
    "constrained_samples",
    "laplace_draws",
    "prior_draws",
    "spd",
    "spd_batch",
]

MAP_STEPS = 400
DECODE_BATCH = 128


class ModelFns(NamedTuple):
    """The compiled functions of one bound model.

    Attributes:
      model: the NumPyro model with the decoder and the model options bound.
      potential: ``(flat, obs) -> minus log density`` (``obs`` a
        :class:`~bayesda.inference.model.ModelObs`).
      find_map: jitted ``(flat, args) -> (x_map, hessian, potential)``.
      find_map_batch: ``find_map`` vectorised over a leading time axis of ``args``.
      constrain: jitted ``(flat [s, D], args) -> {"z": [s, d], ...}``.
      flat0: zeros in the sampler's unconstrained space.
      unravel: flat vector -> ``{"z": ..., "repr_scale": ..., ...}``.
      prior_sd: the prior SD of each site in the unconstrained space (for prior draws).
      cache_key: the content key of the bound model for :mod:`bayesda.runtime.export` (the decoder's
        fingerprint and the options), or None when the decoder has no fingerprint.
    """

    model: Any
    potential: Any
    find_map: Any
    find_map_batch: Any
    constrain: Any
    flat0: Any
    unravel: Any
    prior_sd: dict
    cache_key: Any = None


def _unconstrained_prior_sd(latent_dim: int, options: ModelOptions) -> dict:
    """The sampled sites with their prior SD in the sampler's unconstrained space (the scale
    sites live on the log scale)."""
    sd: dict = {"z": 1.0}
    if options.errors == "learned":
        sd["repr_scale"] = options.repr_scale_sd
        if options.offset_sd > 0:
            sd["offset"] = options.offset_sd
    elif options.infer_sigma:
        sd["sigma_scale"] = SIGMA_SCALE_PRIOR[1]
    return sd


def _unconstrained_template(latent_dim: int, options: ModelOptions) -> dict:
    """Zeros in the sampler's unconstrained space."""
    return {
        name: jnp.zeros(latent_dim) if name == "z" else jnp.zeros(())
        for name in _unconstrained_prior_sd(latent_dim, options)
    }


def _build(decode: Callable, latent_dim: int, options: ModelOptions) -> ModelFns:
    """Potential, MAP optimiser, Hessian and constraining map of one model.

    The potential is :func:`numpyro.infer.util.potential_energy` of the model, i.e.
    numpyro's own log density with its transforms.
    """
    aot.register_namedtuples(ModelObs, LearnedErrors)  # exported programs take them
    model = functools.partial(assimilation_model, decode, latent_dim, options=options)
    flat0, unravel = ravel_pytree(_unconstrained_template(latent_dim, options))

    def potential(flat, obs):
        return potential_energy(model, (obs,), {}, unravel(flat))

    @jax.jit
    def constrain(flat, obs):
        return jax.vmap(lambda f: constrain_fn(model, (obs,), {}, unravel(f)))(flat)

    opt = optax.adam(0.05)

    @jax.jit
    def find_map(flat, args):
        grad = jax.grad(potential)

        # The Hessian and the gradient from one trace (the gradient rides along as aux).
        def grad_twice(x):
            g = grad(x, args)
            return g, g

        hess_grad = jax.jacfwd(grad_twice, has_aux=True)

        def step(carry, _):
            x, state = carry
            upd, state = opt.update(grad(x, args), state)
            return (optax.apply_updates(x, upd), state), None

        (x, _), _ = jax.lax.scan(step, (flat, opt.init(flat)), None, length=MAP_STEPS)

        # Two Newton steps polish the optimum (Laplace needs the exact mode), then the
        # Hessian at the polished point. One loop body instead of three unrolled Hessians:
        # tracing the model's Hessian is what costs (find_map traced in 1.7 s before).
        def newton(carry, i):
            x, _ = carry
            h, g = hess_grad(x)
            # a Newton step only where the Hessian is positive definite: with a nonlinear
            # decoder an indefinite one sends the step to a saddle or far away
            ok = jnp.all(jnp.isfinite(jnp.linalg.cholesky(0.5 * (h + h.T))))
            return (jnp.where((i < 2) & ok, x - jnp.linalg.solve(h, g), x), h), None

        (x, h), _ = jax.lax.scan(newton, (x, jnp.zeros((x.size, x.size), x.dtype)), jnp.arange(3))
        return x, h, potential(x, args)

    fp = aot.fingerprint(decode)
    key = None
    if fp is not None:
        key = (fp, int(latent_dim), *dataclasses.astuple(options))
    find_map_batch = jax.jit(jax.vmap(find_map, in_axes=(None, 0)))
    return ModelFns(
        model,
        potential,
        aot.cached(find_map, "find_map", key),
        aot.cached(find_map_batch, "find_map_batch", key),
        aot.cached(constrain, "constrain", key),
        flat0,
        unravel,
        _unconstrained_prior_sd(latent_dim, options),
        key,
    )


class CompiledCache:
    """Compiled model functions and batched decoders, per decoder (weakly referenced)."""

    def __init__(self) -> None:
        self._fns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._decoders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def model_fns(self, prior, options: ModelOptions) -> ModelFns:
        """The :class:`ModelFns` of ``prior``'s decoder with ``options`` (built once)."""
        per_decoder = self._fns.setdefault(prior.decode, {})
        key = (int(prior.latent_dim), *dataclasses.astuple(options))
        if key not in per_decoder:
            per_decoder[key] = _build(prior.decode, prior.latent_dim, options)
        return per_decoder[key]

    def decode_all(self, prior, z: np.ndarray) -> np.ndarray:
        """Decode ``[s, d]`` latents in fixed-size batches (one compile per prior)."""
        dec = self._decoders.get(prior.decode)
        if dec is None:
            fp = aot.fingerprint(prior.decode)
            dec = aot.cached(
                jax.jit(jax.vmap(prior.decode)), "decode_all", None if fp is None else (fp,)
            )
            self._decoders[prior.decode] = dec
        s = z.shape[0]
        out = []
        for i in range(0, s, DECODE_BATCH):
            chunk = z[i : i + DECODE_BATCH]
            k = chunk.shape[0]
            if k < DECODE_BATCH:
                chunk = np.concatenate([chunk, np.zeros((DECODE_BATCH - k, z.shape[1]), z.dtype)])
            out.append(np.asarray(dec(chunk))[:k])
        return np.concatenate(out)

    def clear(self) -> None:
        """Forget every compiled function."""
        self._fns.clear()
        self._decoders.clear()


CACHE = CompiledCache()


@functools.partial(jax.jit, static_argnames="shape")
def laplace_draws(key, x, hess, shape):
    """Draws from ``N(x, hess^{-1})``: ``x + L^{-T} eps`` with ``hess = L L^T``.

    One program (host arrays welcome): run eagerly, its six operations were six programs
    to lower in every new process.
    """
    L = jnp.linalg.cholesky(hess)
    eps = jax.random.normal(key, (*shape, x.size))
    # Cov = hess^{-1} = L^{-T} L^{-1}, so L^{-T} eps has the right covariance.
    return x + jax.scipy.linalg.solve_triangular(
        L.T, eps.reshape(-1, x.size).T, lower=False
    ).T.reshape(eps.shape)


def constrained_samples(fns: ModelFns, flat, obs) -> dict:
    """``{"z": [chain, draw, d], "repr_scale": [chain, draw], ...}`` (every sampled site)
    from unconstrained draws."""
    chains, draws, dim = np.shape(flat)
    post = fns.constrain(np.asarray(flat).reshape(-1, dim), obs)
    return {
        k: np.asarray(v).reshape(chains, draws, *np.shape(v)[1:])
        for k, v in post.items()
        if k in fns.prior_sd
    }


def prior_draws(key, fns: ModelFns, n: int):
    """``[n, D]`` unconstrained prior draws of every site (each centred, with its prior SD
    in the unconstrained space: exact for ``z`` and the offset, log-normal scales)."""
    template = fns.unravel(fns.flat0)
    keys = jax.random.split(key, len(template))
    draws = {}
    for k, name in zip(keys, sorted(template), strict=True):
        draws[name] = fns.prior_sd[name] * jax.random.normal(k, (n, *np.shape(template[name])))
    return jax.vmap(lambda t: ravel_pytree(t)[0])(draws)


PRECISION_FLOOR = 1.0
"""Smallest eigenvalue :func:`spd` leaves in a Laplace precision (the potential's Hessian).

Every coordinate of the unconstrained space has a prior precision of at least 1
(``z ~ N(0, I)``; ``log sigma_scale ~ N(0, 0.5^2)``: 4), and with a Gaussian likelihood and a
linear decoder the posterior precision ``I + J^T S^-1 J`` is at least that. A nonlinear
decoder can make the likelihood locally non-convex at the mode (negative eigenvalues);
lifting those to the floor keeps the Laplace approximation no wider than the prior there.
The floor used to be 1e-6, i.e. a standard deviation of 1,000 in such a direction: on the
QG model (a decoder that is truly nonlinear) Laplace draws then reached ``|z| ~ 1000``, the
decoded fields overflowed and the run failed on non-finite values."""


@jax.jit
def spd_batch(h):
    """:func:`spd` of ``[..., D, D]`` Hessians in JAX (for batches on an accelerator)."""
    h = 0.5 * (h + jnp.swapaxes(h, -1, -2))
    w, v = jnp.linalg.eigh(h)
    return (v * jnp.maximum(w, PRECISION_FLOOR)[..., None, :]) @ jnp.swapaxes(v, -1, -2)


def spd(h: np.ndarray) -> np.ndarray:
    """Symmetrise a Hessian and lift its eigenvalues to at least :data:`PRECISION_FLOOR`."""
    h = 0.5 * (h + h.T)
    w, v = np.linalg.eigh(h)
    return (v * np.maximum(w, PRECISION_FLOOR)) @ v.T
