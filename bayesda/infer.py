"""Posterior inference over the latent ``z``: NUTS (the reference) or MAP + Laplace (fast).

This module orchestrates; its parts live in :mod:`bayesda.obsdata` (observation
preparation and padding), :mod:`bayesda.compiled` (the compiled model functions, cached per
decoder), :mod:`bayesda.sampler` (the NUTS program) and :mod:`bayesda.result` (fields,
InferenceData and the :class:`Assimilation` result). Settings: :mod:`bayesda.settings`.

:func:`assimilate` turns a prior and a table of point observations into posterior samples
of ``z`` and of the field ``g(z) + r`` (representation error conditioned by Matheron's rule,
see :mod:`bayesda.posterior`), an ArviZ ``InferenceData`` and timings.

How it runs (measured on a 2-core CPU box, see ``analysis/results/``):

* NUTS is numpyro's own kernel driven by :mod:`bayesda.sampler`: one compiled program per
  (model, settings, padded shape), reused for every later day; the observations, starting
  points and mass matrix are arguments, not constants. Observations are padded to a power
  of two (>= 32) with a mask so that days with similar numbers of observations share it.
* :func:`assimilate_batch` runs several analysis times in the same program (their chains
  side by side); :func:`assimilate` is the one-time case.
* The chains are split over the JAX devices (:func:`bayesda.set_host_device_count` asks XLA
  for ``max(cores, 4)`` host devices on a CPU, so the default 4 chains run one per device).
* ``mass="laplace"`` (default): the inverse mass matrix is the Laplace covariance at the
  MAP, fixed; trees stay short (7 leapfrog steps per draw on the shipped model).
* ``init="map"`` starts the chains at the MAP plus a draw from the Laplace approximation,
  which puts them in the typical set and shortens warmup while keeping them dispersed
  enough for R-hat to mean something.
"""

from __future__ import annotations

import time as _time
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayesda.compiled import (
    CACHE,
    MAP_STEPS,
    ModelFns,
    constrained_samples,
    laplace_draws,
    prior_draws,
    spd,
)
from bayesda.obsdata import REQUIRED_COLUMNS, ObsData, pad_rows, prepare_obs, repad
from bayesda.result import Assimilation, posterior_fields
from bayesda.sampler import NutsConfig, n_shards, run_nuts
from bayesda.settings import (
    INITS,
    MASSES,
    METHODS,
    ModelOptions,
    SamplerSettings,
    split_legacy_kwargs,
)

__all__ = [
    "INITS",
    "MASSES",
    "METHODS",
    "REQUIRED_COLUMNS",
    "Assimilation",
    "ObsData",
    "assimilate",
    "assimilate_batch",
    "prepare_obs",
]


def _resolve(sampler, options, legacy: dict, where: str) -> tuple[SamplerSettings, ModelOptions]:
    if legacy:
        warnings.warn(
            f"{where}({', '.join(f'{k}=' for k in sorted(legacy))}) is deprecated: pass "
            "sampler=bayesda.SamplerSettings(...) and options=bayesda.ModelOptions(...)",
            DeprecationWarning,
            stacklevel=3,
        )
    return split_legacy_kwargs(legacy, sampler, options)


def assimilate(
    prior,
    obs_df: pd.DataFrame,
    *,
    time=None,
    seed: int = 0,
    sampler: SamplerSettings | None = None,
    options: ModelOptions | None = None,
    progress_bar: bool = True,
    **legacy: Any,
) -> Assimilation:
    """Sample the posterior of the field given point observations.

    Args:
      prior: the :class:`bayesda.prior.GenerativePrior`.
      obs_df: observations (see :func:`bayesda.obsdata.prepare_obs`), values are anomalies
        in K.
      time: analysis time (selects rows of a multi-time table; recorded in outputs).
      seed: the only source of randomness.
      sampler: how to sample (:class:`bayesda.settings.SamplerSettings`; default
        :data:`bayesda.settings.DEFAULT`, 4 chains x 500 warmup + 500 draws, NUTS with the
        Laplace mass matrix started at the MAP).
      options: the model options (:class:`bayesda.settings.ModelOptions`: likelihood, df,
        infer_sigma; default a normal likelihood with known observation errors).
      progress_bar: show progress.
      **legacy: deprecated per-field keywords (``num_chains=``, ``likelihood=``, ...), folded
        into ``sampler`` and ``options`` with a DeprecationWarning.

    Returns:
      An :class:`Assimilation` (``.to_xarray()``, ``.idata``, ``.diagnose()``, ``.plot()``).
    """
    sampler, options = _resolve(sampler, options, legacy, "assimilate")
    return assimilate_batch(
        prior,
        obs_df,
        [time],
        seeds=[seed],
        sampler=sampler,
        options=options,
        progress_bar=progress_bar,
    )[0]


def assimilate_batch(
    prior,
    obs_df: pd.DataFrame,
    times: Sequence,
    *,
    seeds: Sequence[int],
    sampler: SamplerSettings | None = None,
    options: ModelOptions | None = None,
    progress_bar: bool = True,
    **legacy: Any,
) -> list[Assimilation]:
    """Assimilate several analysis times in one compiled NUTS program.

    Each time is an independent posterior with its own ``num_chains`` chains and its own
    seed; all ``len(times) * num_chains`` chains run side by side in one program
    (:func:`bayesda.sampler.run_nuts`), split over the JAX devices (vectorised within each
    on an accelerator, one after another on a CPU). The observations of all times are padded
    to a common length. A time's result depends only on its observations, its seed and the
    batch layout: the same batch of times gives the same numbers again, a different batching
    gives an equally valid posterior sample that differs in the last digits (padding and
    vectorised arithmetic round differently) and, through the chaotic dynamics of NUTS, in
    the individual draws.

    Args:
      prior, obs_df: as for :func:`assimilate`.
      times: the analysis times (``[None]`` for an untimed table).
      seeds: one integer seed per time.
      sampler, options, progress_bar, **legacy: as for :func:`assimilate`.

    Returns:
      One :class:`Assimilation` per time. Timings ``warmup`` and ``sampling`` are those of
      the whole batch; ``batch_size`` says how many times shared them.
    """
    s, opts = _resolve(sampler, options, legacy, "assimilate_batch")
    times = list(times)
    seeds = [int(x) for x in seeds]
    if len(seeds) != len(times) or not times:
        raise ValueError(f"need one seed per time, got {len(seeds)} seeds for {len(times)} times")
    t_start = _time.perf_counter()
    fns = CACHE.model_fns(prior, opts)
    obs_list = [prepare_obs(prior, obs_df, time=t) for t in times]
    m = max(o.mask.size for o in obs_list)
    obs_list = [repad(o, m) for o in obs_list]
    dense = opts.likelihood == "normal" and not opts.infer_sigma
    all_args = [
        (tuple(jnp.asarray(a) for a in o.model_args()), o.model_kwargs(dense=dense))
        for o in obs_list
    ]
    keys = [jax.random.split(jax.random.PRNGKey(x), 4)[1:] for x in seeds]  # init, mcmc, post
    ntime = len(times)
    shards = n_shards(ntime * s.num_chains) if s.method == "nuts" else 0
    settings = dict(
        method=s.method,
        num_chains=s.num_chains,
        num_warmup=s.num_warmup,
        num_samples=s.num_samples,
        target_accept=s.target_accept,
        max_tree_depth=s.max_tree_depth,
        init=s.init,
        likelihood=opts.likelihood,
        infer_sigma=bool(opts.infer_sigma),
        mass=s.mass,
        df=opts.df,
        devices=shards,
        batch_size=ntime,
        n_pad=int(m),
    )
    maps, map_grads = _find_maps(fns, all_args, s)

    if s.method == "laplace":
        runs = []
        for (x_map, hess, _), args, (_, _, key_post) in zip(maps, all_args, keys, strict=True):
            flat = laplace_draws(
                key_post, jnp.asarray(x_map), jnp.asarray(hess), (s.num_chains * s.num_samples,)
            )
            flat = flat.reshape(s.num_chains, s.num_samples, -1)
            runs.append((constrained_samples(fns, flat, args), {}, {"warmup": 0, "sampling": 0}))
        batch_timings = {"warmup": 0.0, "sampling": 0.0}
    else:
        runs, batch_timings = _run_nuts_batch(
            fns, all_args, maps, keys, settings, progress_bar=progress_bar
        )

    out = []
    for i, (time, seed, obs, (samples, sample_stats, steps)) in enumerate(
        zip(times, seeds, obs_list, runs, strict=True)
    ):
        t0 = _time.perf_counter()
        z, decoded, field, scale, idata = posterior_fields(
            prior, obs, samples, sample_stats, seed, settings
        )
        timings = {"map": maps[i][2], **batch_timings, "fields": _time.perf_counter() - t0}
        out.append(
            Assimilation(
                z=z,
                decoded=decoded,
                field=field,
                sigma_scale=scale,
                idata=idata,
                timings=timings,
                grad_evals={"map": map_grads, **steps},
                obs=obs,
                time=time,
                settings={**settings, "seed": seed},
                prior=prior,
            )
        )
    wall = _time.perf_counter() - t_start
    for a in out:
        a.timings["wall"] = wall / ntime
    return out


def _find_maps(fns: ModelFns, all_args, s: SamplerSettings):
    """MAP + Laplace per time (for method="laplace", init="map" and the Laplace mass).

    Returns:
      ``([(x_map, hessian, seconds)], gradient evaluations per time)``.
    """
    need_map = s.method == "laplace" or s.init == "map" or s.mass != "diag"
    maps = []
    for args in all_args:
        t0 = _time.perf_counter()
        if need_map:
            x_map, hess, _ = fns.find_map(fns.flat0, args)
            x_map, hess = np.asarray(x_map), spd(np.asarray(hess))
            if not np.all(np.isfinite(x_map)):
                raise FloatingPointError(
                    "MAP optimisation diverged (non-finite latent); try init='prior'"
                )
        else:
            x_map = hess = None
        maps.append((x_map, hess, _time.perf_counter() - t0))
    # Adam steps, Newton polish (2 x (grad + Hessian) + final Hessian); Hessian ~ D grads.
    return maps, (MAP_STEPS + 3 * (fns.flat0.size + 1) if need_map else 0)


def _run_nuts_batch(fns, all_args, maps, keys, settings, *, progress_bar):
    """All chains of all times through :func:`bayesda.sampler.run_nuts`."""
    nc = settings["num_chains"]
    init, mass = settings["init"], settings["mass"]
    x0, inv_mass, chain_keys = [], [], []
    dim = fns.flat0.size
    for (x_map, hess, _), (key_init, key_mcmc, _) in zip(maps, keys, strict=True):
        if init == "map":
            start = laplace_draws(key_init, jnp.asarray(x_map), jnp.asarray(hess), (nc,))
        elif init == "prior":
            start = prior_draws(key_init, fns, nc)
        else:  # "median": the prior median, 0 in the unconstrained space
            start = jnp.zeros((nc, dim))
        x0.append(np.asarray(start, np.float32))
        if mass == "diag":
            inv_mass.append(np.ones((nc, dim), np.float32))
        else:
            inv_mass.append(np.repeat(np.linalg.inv(hess)[None].astype(np.float32), nc, 0))
        chain_keys.append(np.asarray(jax.random.split(key_mcmc, nc)))
    batched_args = jax.tree.map(lambda *a: jnp.repeat(jnp.stack(a), nc, axis=0), *all_args)
    config = NutsConfig(
        num_warmup=settings["num_warmup"],
        num_samples=settings["num_samples"],
        target_accept=settings["target_accept"],
        max_tree_depth=settings["max_tree_depth"],
        mass=mass,
    )
    draws = run_nuts(
        fns.potential,
        batched_args,
        np.concatenate(chain_keys),
        np.concatenate(x0),
        np.concatenate(inv_mass),
        config,
        progress_bar=progress_bar,
        desc=f"NUTS {len(all_args)} time(s) x {nc} chains",
    )
    runs = []
    for i, args in enumerate(all_args):
        sl = slice(i * nc, (i + 1) * nc)
        samples = constrained_samples(fns, draws.x[sl], args)
        steps = draws.num_steps[sl].astype(np.int64)
        sample_stats = {
            "diverging": draws.diverging[sl].astype(bool),
            "n_steps": steps,
            "tree_depth": np.floor(np.log2(np.maximum(steps, 1))).astype(np.int64) + 1,
            "acceptance_rate": draws.accept_prob[sl],
            "energy": draws.energy[sl],
            "lp": -draws.potential_energy[sl],
            "step_size": draws.step_size[sl],
        }
        grads = {"warmup": int(draws.warmup_steps[sl].sum()), "sampling": int(steps.sum())}
        runs.append((samples, sample_stats, grads))
    return runs, dict(draws.timings)


def _bound_model(prior, likelihood: str, infer_sigma: bool, df: float):
    """The NumPyro model of ``prior`` with these options bound (kept for older callers)."""
    opts = ModelOptions(likelihood=likelihood, df=df, infer_sigma=infer_sigma)
    return CACHE.model_fns(prior, opts).model


# Older private names, kept so that code written against the single-module infer still runs.
_pad_rows = pad_rows
_repad = repad
_spd = spd
_laplace_draws = laplace_draws
_prior_draws = prior_draws
_constrained_samples = constrained_samples
_decode_all = CACHE.decode_all
_posterior_fields = posterior_fields
