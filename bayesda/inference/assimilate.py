"""Posterior inference over the latent ``z``: NUTS (the reference) or MAP + Laplace (fast).

This module orchestrates; its parts live in :mod:`bayesda.inference.prepare` (observation
preparation and padding), :mod:`bayesda.inference.compiled` (the compiled model functions, cached
per
decoder), :mod:`bayesda.inference.sampler` (the NUTS program) and :mod:`bayesda.inference.result`
(fields,
InferenceData and the :class:`Assimilation` result). Settings: :mod:`bayesda.settings`.

:func:`assimilate` turns a prior and a table of point observations into posterior samples
of ``z`` and of the field ``g(z) + r`` (representation error conditioned by Matheron's rule,
see :mod:`bayesda.inference.fields`), an ArviZ ``InferenceData`` and timings.

How it runs (measured on a 2-core CPU box, see the studies indexed in ``analysis/README.md``):

* NUTS is numpyro's own kernel driven by :mod:`bayesda.inference.sampler`: one compiled program per
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
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayesda.inference.compiled import (
    CACHE,
    MAP_STEPS,
    ModelFns,
    constrained_samples,
    laplace_draws,
    prior_draws,
    spd,
    spd_batch,
)
from bayesda.inference.prepare import REQUIRED_COLUMNS, ObsData, prepare_obs, repad
from bayesda.inference.result import Assimilation, posterior_fields
from bayesda.inference.sampler import n_shards, run_nuts
from bayesda.runtime.arrays import to_device
from bayesda.settings import (
    INITS,
    MASSES,
    METHODS,
    ModelOptions,
    SamplerSettings,
)

__all__ = [
    "INITS",
    "MASSES",
    "METHODS",
    "REQUIRED_COLUMNS",
    "Assimilation",
    "ObsData",
    "SampledBatch",
    "TimeSummary",
    "assimilate",
    "assimilate_batch",
    "assimilate_summaries",
    "sample_batch",
    "summaries_supported",
    "prepare_obs",
]


def _checked_inputs(prior, obs, where: str):
    """The prior (a model directory's path loaded) and the observation table (a path or a
    Dataset read with :func:`bayesda.obs.table.read_obs`); a TypeError names what is taken."""
    from bayesda.obs.table import as_obs_table
    from bayesda.prior.checkpoint import as_prior

    prior = as_prior(prior, where)
    return prior, as_obs_table(obs, climatology=prior.climatology, grid=prior.grid, where=where)


def assimilate(
    prior,
    obs_df: pd.DataFrame,
    *,
    time=None,
    seed: int = 0,
    sampler: SamplerSettings | None = None,
    options: ModelOptions | None = None,
    progress_bar: bool = True,
) -> Assimilation:
    """Sample the posterior of the field given point observations.

    Args:
      prior: the :class:`bayesda.prior.generative.GenerativePrior`.
      obs_df: observations (see :func:`bayesda.inference.prepare.prepare_obs`), values are anomalies
        in K: a DataFrame, an xarray Dataset or the path of a CSV or netCDF file (read with
        :func:`bayesda.obs.table.read_obs`); anything else raises a TypeError.
      time: analysis time (selects rows of a multi-time table; recorded in outputs).
      seed: the only source of randomness.
      sampler: how to sample (:class:`bayesda.settings.SamplerSettings`; default
        :data:`bayesda.settings.DEFAULT`, 4 chains x 500 warmup + 500 draws, NUTS with the
        Laplace mass matrix started at the MAP).
      options: the model options (:class:`bayesda.settings.ModelOptions`: likelihood, df,
        infer_sigma; default a normal likelihood with known observation errors).
      progress_bar: show progress.

    Returns:
      An :class:`Assimilation` (``.to_xarray()``, ``.idata``, ``.diagnose()``, ``.plot()``).
    """
    prior, obs_df = _checked_inputs(prior, obs_df, "bayesda.assimilate")
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
) -> list[Assimilation]:
    """Assimilate several analysis times in one compiled NUTS program.

    Each time is an independent posterior with its own ``num_chains`` chains and its own
    seed; all ``len(times) * num_chains`` chains run side by side in one program
    (:func:`bayesda.inference.sampler.run_nuts`), split over the JAX devices (vectorised within each
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
      sampler, options, progress_bar: as for :func:`assimilate`.

    Returns:
      One :class:`Assimilation` per time. Timings ``warmup`` and ``sampling`` are those of
      the whole batch; ``batch_size`` says how many times shared them.
    """
    s, opts = sampler or SamplerSettings(), options or ModelOptions()
    prior, obs_df = _checked_inputs(prior, obs_df, "bayesda.assimilate_batch")
    t_start = _time.perf_counter()
    batch = sample_batch(prior, obs_df, times, seeds, s, opts, progress_bar=progress_bar)
    times, seeds, obs_list, settings = batch.times, batch.seeds, batch.obs_list, batch.settings
    maps, map_grads, batch_timings = batch.maps, batch.map_grads, batch.timings
    runs = [
        (constrained_samples(batch.fns, x, args), stats, steps)
        for x, args, stats, steps in zip(
            batch.flat, batch.args, batch.sample_stats, batch.grad_evals, strict=True
        )
    ]
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
        a.timings["wall"] = wall / len(times)
    return out


class TimeSummary(NamedTuple):
    """One time of :func:`assimilate_summaries`.

    Attributes:
      time: the analysis time.
      seed: its seed.
      obs: the :class:`ObsData` used.
      summary: the :class:`bayesda.inference.batch.BatchSummary` (mean, sd, quantiles, kept
        samples, verdict).
      grad_evals: gradient evaluations ``{"map", "warmup", "sampling"}``.
      settings: the sampler settings and model options (JSON-able).
      timings: seconds of the whole batch: ``prepare`` (observations), ``map``, ``warmup``,
        ``sampling``, ``summaries``; and ``lockstep`` / ``lockstep_warmup``: the useful
        fraction of the batch's leapfrog work in sampling / warmup (see
        :class:`bayesda.inference.sampler.Draws`; 1 when every chain's tree had the same size).
    """

    time: Any
    seed: int
    obs: ObsData
    summary: Any
    grad_evals: dict
    settings: dict
    timings: dict


def summaries_supported(sampler: SamplerSettings, options: ModelOptions) -> bool:
    """Whether :func:`assimilate_summaries` handles these settings (the stated-error model
    with its normal likelihood; learned errors, the Student-t and ``infer_sigma`` fields
    need :func:`assimilate_batch`)."""
    return _dense(options)


def assimilate_summaries(
    prior,
    obs_df: pd.DataFrame,
    times: Sequence,
    *,
    seeds: Sequence[int],
    sampler: SamplerSettings | None = None,
    options: ModelOptions | None = None,
    keep_samples: int = 0,
    progress_bar: bool = False,
) -> list[TimeSummary]:
    """Assimilate several times and keep only their summaries and verdicts (the fast path).

    The same sampling as :func:`assimilate_batch` (same programs, same seeds, so the same
    latent draws); the fields, summaries and diagnostics of all times are then computed
    as array programs (:mod:`bayesda.inference.batch`) instead of one InferenceData per time.
    This is what a reanalysis needs.

    Args:
      prior, obs_df, times, seeds, sampler, options, progress_bar: as for
        :func:`assimilate_batch`.
      keep_samples: field samples to keep per time (0: none).

    Returns:
      One :class:`TimeSummary` per time.

    Raises:
      ValueError: settings the fast path does not support (see :func:`summaries_supported`).
    """
    from bayesda.inference.batch import stack_obs, summarise

    s, opts = sampler or SamplerSettings(), options or ModelOptions(errors="stated")
    if not summaries_supported(s, opts):
        raise ValueError(
            f"assimilate_summaries needs the normal likelihood with known errors, got {opts}; "
            "use assimilate_batch"
        )
    batch = sample_batch(
        prior, obs_df, times, seeds, s, opts, progress_bar=progress_bar, device_covariance=True
    )
    t0 = _time.perf_counter()
    z = np.stack([np.asarray(x).reshape(-1, x.shape[-1]) for x in batch.flat])
    post_keys = np.stack([np.asarray(k[2]) for k in batch.keys])
    stats: list[dict | None]
    if s.method == "nuts":
        stats = [
            {
                "diverging": st["diverging"],
                "energy": st["energy"],
                "n_steps": st["n_steps"],
                "max_tree_depth": s.max_tree_depth,
            }
            for st in batch.sample_stats
        ]
    else:
        stats = [None] * len(batch.times)
    out = summarise(
        prior,
        z,
        stack_obs(batch.obs_list),
        post_keys,
        num_chains=s.num_chains,
        sampler_stats=stats,
        keep_samples=keep_samples,
    )
    timings = {
        "map": float(sum(m[2] for m in batch.maps)),
        **batch.timings,
        "summaries": _time.perf_counter() - t0,
        "lockstep": batch.timings.get("lockstep_sampling", 1.0),
        "lockstep_warmup": batch.timings.get("lockstep_warmup", 1.0),
    }
    return [
        TimeSummary(
            time=t,
            seed=seed,
            obs=obs,
            summary=summ,
            grad_evals={"map": batch.map_grads, **g},
            settings={**batch.settings, "seed": seed},
            timings=timings,
        )
        for t, seed, obs, summ, g in zip(
            batch.times, batch.seeds, batch.obs_list, out, batch.grad_evals, strict=True
        )
    ]


class SampledBatch(NamedTuple):
    """The sampled, not yet summarised state of a batch of times (see :func:`sample_batch`)."""

    times: list
    seeds: list
    obs_list: list
    args: list
    fns: ModelFns
    keys: list
    maps: list
    map_grads: int
    flat: list  # per time [chain, draw, D] unconstrained draws (host)
    sample_stats: list  # per time dict of [chain, draw] arrays ({} for Laplace)
    grad_evals: list  # per time {"warmup", "sampling"}
    settings: dict
    timings: dict


def _by_time(obs_df: pd.DataFrame, times: list) -> list[pd.DataFrame]:
    """Each time's rows of the table (the whole table for ``None``), grouped once: selecting
    per time from the whole table cost O(rows) per time, which a batch of 1000 times felt."""
    if "time" not in obs_df.columns or all(t is None for t in times):
        return [obs_df] * len(times)
    stamps = pd.to_datetime(obs_df["time"]).to_numpy().astype("datetime64[ns]")
    groups = {k: v for k, v in obs_df.groupby(stamps, sort=False)}
    empty = obs_df.iloc[:0]
    return [
        obs_df if t is None else groups.get(np.datetime64(pd.Timestamp(t), "ns"), empty)
        for t in times
    ]


def _prepare_batch(
    prior, obs_df, times, options: ModelOptions, device_covariance: bool
) -> list[ObsData]:
    """Every time's observations, padded to one length; with ``device_covariance`` the
    exact observation covariance is factored for all times at once on the device."""
    frames = _by_time(obs_df, times)
    fast = device_covariance and _dense(options) and prior.repr_error.rank > 0
    obs_list = []
    for frame, t in zip(frames, times, strict=True):
        if frame.empty:
            frame = obs_df  # prepare_obs names the time that has no rows
        obs_list.append(prepare_obs(prior, frame, time=t, covariance=not fast, options=options))
    m = max(o.padded for o in obs_list)
    obs_list = [repad(o, m) for o in obs_list]
    if fast:
        from bayesda.inference.batch import innovation_cholesky, stack_obs

        chol = innovation_cholesky(prior, stack_obs(obs_list))
        obs_list = [
            o._replace(arrays=o.arrays._replace(scale_tril=c))
            for o, c in zip(obs_list, chol, strict=True)
        ]
    return obs_list


def _dense(options: ModelOptions) -> bool:
    """Whether the stated-error likelihood uses the exact dense covariance (``scale_tril``)."""
    return options.errors == "stated" and options.likelihood == "normal" and not options.infer_sigma


def _model_obs(obs: ObsData, options: ModelOptions):
    """What the model sees of ``obs``, on the device (the low-rank ``C`` where the dense
    factor does not apply)."""
    arrays = obs.arrays
    if arrays.scale_tril is not None and not _dense(options):
        arrays = arrays._replace(scale_tril=None)
    return to_device(arrays)


def sample_batch(
    prior,
    obs_df,
    times,
    seeds,
    s: SamplerSettings,
    opts: ModelOptions,
    *,
    progress_bar,
    device_covariance: bool = False,
) -> SampledBatch:
    """Prepare the observations, find the MAPs and draw the latent of every time.

    The sampling that :func:`assimilate_batch` and :func:`assimilate_summaries` share, without
    their fields, summaries or diagnostics: for studies of the sampler itself (its adapted
    step sizes and tree sizes per chain, in ``sample_stats``).

    Args:
      prior: the generative prior.
      obs_df: observations of these times (a ``time`` column when there are several).
      times: the analysis times.
      seeds: one seed per time.
      s: sampler settings.
      opts: model options.
      progress_bar: show numpyro's progress bar.
      device_covariance: keep each time's observation-error covariance on the device (what
        :func:`assimilate_summaries` does).

    Returns:
      The :class:`SampledBatch`: per time the unconstrained draws ``flat`` ``[chain, draw, D]``,
      numpyro's ``sample_stats`` (``n_steps``, ``step_size``, ...), gradient counts and
      timings.

    Raises:
      ValueError: not one seed per time, or no times.
    """
    times = list(times)
    seeds = [int(x) for x in seeds]
    if len(seeds) != len(times) or not times:
        raise ValueError(f"need one seed per time, got {len(seeds)} seeds for {len(times)} times")
    fns = CACHE.model_fns(prior, opts)
    t_prep = _time.perf_counter()
    obs_list = _prepare_batch(prior, obs_df, times, opts, device_covariance)
    t_prep = _time.perf_counter() - t_prep
    m = obs_list[0].padded
    all_args = [_model_obs(o, opts) for o in obs_list]
    keys = [jax.random.split(jax.random.PRNGKey(x), 4)[1:] for x in seeds]  # init, mcmc, post
    ntime = len(times)
    shards = n_shards(ntime * s.num_chains) if s.method == "nuts" else 0
    settings = dict(
        **s.to_dict(),
        **opts.to_dict(),
        devices=shards,
        batch_size=ntime,
        n_pad=int(m),
    )
    maps, map_grads = _find_maps(fns, all_args, s)
    if opts.errors == "learned" and maps[0][0] is not None:
        obs_list = _prune_site_grids(prior, fns, obs_list, all_args, maps, opts)
        all_args = [_model_obs(o, opts) for o in obs_list]

    if s.method == "laplace":
        flat: list = []
        stats: list = []
        grads: list = []
        for (x_map, hess, _), (_, _, key_post) in zip(maps, keys, strict=True):
            draws = laplace_draws(key_post, x_map, hess, (s.num_chains * s.num_samples,))
            flat.append(np.asarray(draws).reshape(s.num_chains, s.num_samples, -1))
            stats.append({})
            grads.append({"warmup": 0, "sampling": 0})
        batch_timings = {"warmup": 0.0, "sampling": 0.0}
    else:
        flat, stats, grads, batch_timings = _run_nuts_batch(
            fns, all_args, maps, keys, s, progress_bar=progress_bar
        )
    return SampledBatch(
        times,
        seeds,
        obs_list,
        all_args,
        fns,
        keys,
        maps,
        map_grads,
        flat,
        stats,
        grads,
        settings,
        {"prepare": t_prep, **batch_timings},
    )


SITE_GRID_BUCKETS = (2, 4, 8, 16, 32)
"""Sizes the pruned site-SD grids are padded to (one compiled program per size)."""

REFINED_SITE_GRID = 8
"""Values of the finer site-SD grid where at most :data:`REFINE_BELOW` coarse ones matter."""
REFINE_BELOW = 4


def _prune_site_grids(
    prior, fns: ModelFns, obs_list, all_args, maps, options: ModelOptions
) -> list[ObsData]:
    """Focus each time's site-SD grid where its weight at the MAP is not negligible.

    Each density evaluation costs ``O(K m^2)`` for ``K`` grid values; a dense network
    keeps 2-4 of the 16, more tightly than the grid resolves: those times get a finer grid
    of :data:`REFINED_SITE_GRID` values over that range
    (:func:`bayesda.inference.errors.refined_site_grid`). Then every time keeps its values
    of non-negligible weight (:func:`bayesda.inference.errors.prune_site_grid`), padded to
    one size (weight-0 entries) so that the times share one program.
    """
    from bayesda.inference.errors import (
        kept_site_values,
        learned_errors,
        learned_loglik,
        prune_site_grid,
        refined_site_grid,
    )
    from bayesda.obs.operator import interpolate

    focused = []
    for obs, args, (x_map, _, _) in zip(obs_list, all_args, maps, strict=True):
        point = {k: np.asarray(v)[0] for k, v in fns.constrain(x_map[None], args).items()}
        field = np.asarray(prior.decode(point["z"]), np.float64) + float(point.get("offset", 0.0))
        m = obs.rows
        resid = np.zeros(obs.padded)
        resid[:m] = obs.arrays.y[:m] - interpolate(field, obs.stencil)
        lam = float(point["repr_scale"])
        e = obs.arrays.errors
        ll = learned_loglik(resid, lam, e, m)
        if kept_site_values(e, ll) <= REFINE_BELOW:
            e = learned_errors(
                obs.cells,
                prior.repr_error,
                pad_to=obs.padded,
                site_sd_scale=options.site_sd_scale,
                scatter=options.scatter,
                site_sd_grid=refined_site_grid(e, ll, REFINED_SITE_GRID),
            )
            ll = learned_loglik(resid, lam, e, m)
        focused.append((e, ll))
    need = max(kept_site_values(e, ll) for e, ll in focused)
    size = next(b for b in SITE_GRID_BUCKETS if b >= need)
    return [
        o._replace(arrays=o.arrays._replace(errors=prune_site_grid(e, ll, size)))
        for o, (e, ll) in zip(obs_list, focused, strict=True)
    ]


def _finite_map(x: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(x)):
        raise FloatingPointError("MAP optimisation diverged (non-finite latent); try init='prior'")
    return x


def _find_maps(fns: ModelFns, all_args, s: SamplerSettings):
    """MAP + Laplace per time (for method="laplace", init="map" and the Laplace mass).

    Returns:
      ``([(x_map, hessian, seconds)], gradient evaluations per time)``.
    """
    need_map = s.method == "laplace" or s.init == "map" or s.mass != "diag"
    maps = []
    if need_map and len(all_args) > 1 and jax.default_backend() != "cpu":
        # One vectorised program for every time (a GPU runs T optimisations as fast as one).
        t0 = _time.perf_counter()
        batched = jax.tree.map(lambda *a: jnp.stack(a), *all_args)
        x_maps, hessians, _ = fns.find_map_batch(fns.flat0, batched)
        x_maps, hessians = _finite_map(np.asarray(x_maps)), np.asarray(spd_batch(hessians))
        each = (_time.perf_counter() - t0) / len(all_args)
        maps = [(x, h, each) for x, h in zip(x_maps, hessians, strict=True)]
        return maps, MAP_STEPS + 3 * (fns.flat0.size + 1)
    for args in all_args:
        t0 = _time.perf_counter()
        if need_map:
            x_map, hess, _ = fns.find_map(fns.flat0, args)
            x_map, hess = _finite_map(np.asarray(x_map)), spd(np.asarray(hess))
        else:
            x_map = hess = None
        maps.append((x_map, hess, _time.perf_counter() - t0))
    # Adam steps, Newton polish (2 x (grad + Hessian) + final Hessian); Hessian ~ D grads.
    return maps, (MAP_STEPS + 3 * (fns.flat0.size + 1) if need_map else 0)


def _run_nuts_batch(fns, all_args, maps, keys, s: SamplerSettings, *, progress_bar):
    """All chains of all times through :func:`bayesda.inference.sampler.run_nuts`, which
    takes the sampler settings as they came."""
    nc = s.num_chains
    init, mass = s.init, s.mass
    x0, inv_mass, chain_keys = [], [], []
    dim = fns.flat0.size
    for (x_map, hess, _), (key_init, key_mcmc, _) in zip(maps, keys, strict=True):
        if init == "map":
            start = laplace_draws(key_init, x_map, hess, (nc,))
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
    # On the host: jnp.repeat runs ~15 small eager programs per leaf, each lowered in every
    # new process; the values are the same.
    batched_args = jax.tree.map(
        lambda *a: np.repeat(np.stack([np.asarray(x) for x in a]), nc, axis=0), *all_args
    )
    draws = run_nuts(
        fns.potential,
        batched_args,
        np.concatenate(chain_keys),
        np.concatenate(x0),
        np.concatenate(inv_mass),
        s,
        progress_bar=progress_bar,
        desc=f"NUTS {len(all_args)} time(s) x {nc} chains",
        cache_key=fns.cache_key,
        step_size_groups=np.repeat(np.arange(len(all_args)), nc),
    )
    flat, stats, grads = [], [], []
    for i in range(len(all_args)):
        sl = slice(i * nc, (i + 1) * nc)
        steps = draws.num_steps[sl].astype(np.int64)
        flat.append(draws.x[sl])
        stats.append(
            {
                "diverging": draws.diverging[sl].astype(bool),
                "n_steps": steps,
                "tree_depth": np.floor(np.log2(np.maximum(steps, 1))).astype(np.int64) + 1,
                "acceptance_rate": draws.accept_prob[sl],
                "energy": draws.energy[sl],
                "lp": -draws.potential_energy[sl],
                "step_size": draws.step_size[sl],
            }
        )
        grads.append({"warmup": int(draws.warmup_steps[sl].sum()), "sampling": int(steps.sum())})
    return flat, stats, grads, dict(draws.timings)
