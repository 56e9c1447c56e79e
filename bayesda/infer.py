"""Posterior inference over the latent ``z``: NUTS (the reference) or MAP + Laplace (fast).

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
* The chains are split over the JAX devices (``bayesda._xla`` asks XLA for
  ``max(cores, 4)`` host devices on a CPU, so the default 4 chains run one per device).
* ``mass="laplace"`` (default): the inverse mass matrix is the Laplace covariance at the
  MAP, fixed; trees stay short (7 leapfrog steps per draw on the shipped model).
* ``init="map"`` starts the chains at the MAP plus a draw from the Laplace approximation,
  which puts them in the typical set and shortens warmup while keeping them dispersed
  enough for R-hat to mean something.
"""

from __future__ import annotations

import functools
import time as _time
import warnings
from typing import Any, NamedTuple

with warnings.catch_warnings():  # arviz announces its 1.0 refactor on import
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import constrain_fn, potential_energy

from bayesda import sampler
from bayesda.model import LIKELIHOODS, SIGMA_SCALE_PRIOR, assimilation_model, pad_length
from bayesda.operators import Stencil, bilinear_stencil
from bayesda.posterior import condition_representation_error, repr_covariance_at_obs

METHODS = ("nuts", "laplace")
MASSES = ("laplace", "diag", "dense")
INITS = ("map", "prior", "median")
REQUIRED_COLUMNS = ("lat", "lon", "value", "sigma")
MAP_STEPS = 400
DECODE_BATCH = 128


class ObsData(NamedTuple):
    """Observations prepared for the model, padded to a fixed length.

    Attributes:
      frame: the ``n`` observations used (columns lat, lon, value, sigma, ...).
      stencil: their bilinear stencil (unpadded, ``n`` points).
      idx, weight: ``[m, 4]`` padded stencil (padding points at index 0, weight 0).
      y: ``[m]`` observed anomalies, K (0 on padding).
      sigma: ``[m]`` observation error SD, K (1 on padding).
      repr_factor: ``[m, rank]`` representation error factor at the observations, K.
      repr_diag: ``[m]`` representation error diagonal at the observations, K^2.
      mask: ``[m]`` True for real observations.
      scale_tril: ``[m, m]`` lower Cholesky factor of ``diag(sigma^2) + H C H^T`` (exact,
        identity on padding) when the representation error is correlated (rank > 0),
        else None.
    """

    frame: pd.DataFrame
    stencil: Stencil
    idx: np.ndarray
    weight: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    repr_factor: np.ndarray
    repr_diag: np.ndarray
    mask: np.ndarray
    scale_tril: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.mask.sum())

    def model_args(self) -> tuple:
        return (self.idx, self.weight, self.sigma, self.repr_factor, self.repr_diag, self.y)

    def model_kwargs(self, *, dense: bool) -> dict:
        """Keyword arguments of the model; ``dense`` uses ``scale_tril`` when there is one."""
        kw = {"mask": jnp.asarray(self.mask)}
        if dense and self.scale_tril is not None:
            kw["scale_tril"] = jnp.asarray(self.scale_tril)
        return kw


class Assimilation(NamedTuple):
    """The result of :func:`assimilate`.

    Attributes:
      z: ``[chain, draw, latent]`` posterior samples of the latent.
      decoded: ``[chain, draw, lat, lon]`` decoder outputs ``g(z)``, K.
      field: ``[chain, draw, lat, lon]`` field samples ``g(z) + r``, K.
      sigma_scale: ``[chain, draw]`` common obs-error scale (ones unless inferred).
      idata: ArviZ InferenceData (posterior, sample_stats, observed_data,
        posterior_predictive, log_likelihood).
      timings: seconds: ``map``, ``warmup`` (includes XLA compile on a cache miss),
        ``sampling``, ``fields``, ``wall``; and ``cache_hit`` (bool).
      grad_evals: gradient evaluations, ``{"map", "warmup", "sampling"}``.
      obs: the :class:`ObsData` used.
      time: the analysis time, or None.
      settings: the sampler settings (JSON-able).
    """

    z: np.ndarray
    decoded: np.ndarray
    field: np.ndarray
    sigma_scale: np.ndarray
    idata: Any
    timings: dict
    grad_evals: dict
    obs: ObsData
    time: Any
    settings: dict


def _select_time(obs: pd.DataFrame, time) -> pd.DataFrame:
    if time is None or "time" not in obs.columns:
        return obs
    t = pd.Timestamp(np.datetime64(time))
    sel = obs[pd.to_datetime(obs["time"]) == t]
    if sel.empty:
        times = pd.to_datetime(obs["time"]).unique()
        raise ValueError(
            f"no observations at time={t}; the table has {len(times)} time(s), "
            f"e.g. {times[:3].tolist()}"
        )
    return sel


def prepare_obs(prior, obs: pd.DataFrame, *, time=None, pad: bool = True) -> ObsData:
    """Check observations against the prior's grid and pad them for the model.

    Args:
      prior: the :class:`bayesda.prior.GenerativePrior`.
      obs: table with columns lat (deg N), lon (deg E), value (anomaly, K), sigma (K), and
        optionally time (rows at other times are dropped when ``time`` is given).
      time: analysis time.
      pad: pad to :func:`bayesda.model.pad_length` (False: no padding).

    Raises:
      ValueError: missing columns, no rows, non-finite values, sigma <= 0, or points
        outside the grid.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in obs.columns]
    if missing:
        raise ValueError(f"observation table lacks column(s) {missing}; it has {list(obs.columns)}")
    obs = _select_time(obs, time).reset_index(drop=True)
    if len(obs) == 0:
        raise ValueError("the observation table has no rows")
    for col in REQUIRED_COLUMNS:
        vals = obs[col].to_numpy(np.float64)
        bad = ~np.isfinite(vals)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} non-finite value(s) in column {col!r}, "
                f"first at row {k}: {obs.iloc[k].to_dict()}"
            )
    sigma = obs["sigma"].to_numpy(np.float64)
    if np.any(sigma <= 0):
        k = int(np.flatnonzero(sigma <= 0)[0])
        raise ValueError(f"sigma must be > 0, got sigma={sigma[k]} at row {k}")
    stencil = bilinear_stencil(prior.grid, obs["lat"].to_numpy(), obs["lon"].to_numpy())
    A, D = prior.repr_error.at_obs(stencil)
    n = len(obs)
    m = pad_length(n) if pad else n
    # at_obs compresses a factor of rank > n to [n, n]; zero columns up to min(rank, m) keep
    # A A^T and give every day with the same padded length the same shapes (one compile).
    A = np.pad(A, ((0, 0), (0, max(0, min(prior.repr_error.rank, m) - A.shape[1]))))

    scale_tril = None
    if prior.repr_error.rank > 0:
        cov = repr_covariance_at_obs(stencil, prior.repr_error) + np.diag(sigma**2)
        scale_tril = _pad_identity(np.linalg.cholesky(cov).astype(np.float32), m)

    return ObsData(
        frame=obs,
        stencil=stencil,
        idx=_pad_rows(stencil.idx, m, 0),
        weight=_pad_rows(stencil.weight, m, 0.0),
        y=_pad_rows(obs["value"].to_numpy(np.float32), m, 0.0),
        sigma=_pad_rows(sigma, m, 1.0),
        repr_factor=_pad_rows(A, m, 0.0),
        repr_diag=_pad_rows(D, m, 0.0),
        mask=np.arange(m) < n,
        scale_tril=scale_tril,
    )


def _pad_rows(x: np.ndarray, m: int, fill) -> np.ndarray:
    """``x`` with rows ``fill`` appended up to length ``m`` (floats as float32)."""
    x = np.asarray(x)
    out = np.full((m, *x.shape[1:]), fill, dtype=np.float32 if x.dtype.kind == "f" else x.dtype)
    out[: x.shape[0]] = x
    return out


def _repad(obs: ObsData, m: int) -> ObsData:
    """The same observations padded to length ``m`` (>= the current padded length)."""
    k = obs.mask.size
    if m == k:
        return obs
    if m < k:
        raise ValueError(f"cannot pad {k} entries down to {m}")

    return obs._replace(
        idx=_pad_rows(obs.idx, m, 0),
        weight=_pad_rows(obs.weight, m, 0.0),
        y=_pad_rows(obs.y, m, 0.0),
        sigma=_pad_rows(obs.sigma, m, 1.0),
        repr_factor=_pad_rows(obs.repr_factor, m, 0.0),
        repr_diag=_pad_rows(obs.repr_diag, m, 0.0),
        mask=np.arange(m) < obs.n,
        scale_tril=None if obs.scale_tril is None else _pad_identity(obs.scale_tril, m),
    )


def _pad_identity(a: np.ndarray, m: int) -> np.ndarray:
    out = np.eye(m, dtype=a.dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out


# --------------------------------------------------------------------------- caches
_MODEL_CACHE: dict = {}
_FN_CACHE: dict = {}


def _bound_model(prior, likelihood, infer_sigma, df):
    key = (id(prior.decode), prior.latent_dim, likelihood, infer_sigma, float(df))
    hit = _MODEL_CACHE.get(key)
    if hit is None or hit[0] is not prior.decode:
        model = functools.partial(
            assimilation_model,
            prior.decode,
            prior.latent_dim,
            likelihood=likelihood,
            infer_sigma=infer_sigma,
            df=df,
        )
        hit = (prior.decode, model)
        _MODEL_CACHE[key] = hit
    return hit[1]


def _unconstrained_template(latent_dim: int, infer_sigma: bool) -> dict:
    """Zeros in the sampler's unconstrained space (``sigma_scale`` lives on the log scale)."""
    params = {"z": jnp.zeros(latent_dim)}
    if infer_sigma:
        params["sigma_scale"] = jnp.zeros(())
    return params


class _Fns(NamedTuple):
    potential: Any  # (flat, (model_args, model_kwargs)) -> minus log density
    find_map: Any  # jitted (flat, args) -> (x_map, hessian, potential)
    constrain: Any  # jitted (flat [s, D], args) -> {"z": [s, d], ...}
    flat0: Any
    unravel: Any


def _fns(model, latent_dim: int, infer_sigma: bool) -> _Fns:
    """Potential, MAP optimiser, Hessian and constraining map, built once per model.

    The observations enter only as arguments (``args = (model_args, model_kwargs)``), so every day
    with the same padded shape reuses the compiled code (the leak described in
    :mod:`bayesda.sampler` came from closures that changed per day). The potential is
    :func:`numpyro.infer.util.potential_energy` of the model, i.e. numpyro's own log
    density with its transforms.
    """
    ck = (id(model), infer_sigma)
    hit = _FN_CACHE.get(ck)
    if hit is not None and hit[0] is model:
        return hit[1]
    flat0, unravel = ravel_pytree(_unconstrained_template(latent_dim, infer_sigma))

    def potential(flat, args):
        model_args, model_kwargs = args
        return potential_energy(model, model_args, model_kwargs, unravel(flat))

    @jax.jit
    def constrain(flat, args):
        model_args, model_kwargs = args
        return jax.vmap(lambda f: constrain_fn(model, model_args, model_kwargs, unravel(f)))(flat)

    opt = optax.adam(0.05)

    @jax.jit
    def find_map(flat, args):
        grad = jax.grad(potential)
        hessian = jax.hessian(potential)

        def step(carry, _):
            x, state = carry
            upd, state = opt.update(grad(x, args), state)
            return (optax.apply_updates(x, upd), state), None

        (x, _), _ = jax.lax.scan(step, (flat, opt.init(flat)), None, length=MAP_STEPS)
        # Two Newton steps polish the optimum (Laplace needs the exact mode).
        for _ in range(2):
            x = x - jnp.linalg.solve(hessian(x, args), grad(x, args))
        return x, hessian(x, args), potential(x, args)

    fns = _Fns(potential, find_map, constrain, flat0, unravel)
    _FN_CACHE[ck] = (model, fns)
    return fns


def _laplace_draws(key, x, hess, shape):
    """Draws from ``N(x, hess^{-1})``: ``x + L^{-T} eps`` with ``hess = L L^T``."""
    L = jnp.linalg.cholesky(hess)
    eps = jax.random.normal(key, (*shape, x.size))
    # Cov = hess^{-1} = L^{-T} L^{-1}, so L^{-T} eps has the right covariance.
    return x + jax.scipy.linalg.solve_triangular(
        L.T, eps.reshape(-1, x.size).T, lower=False
    ).T.reshape(eps.shape)


def _decode_all(prior, z: np.ndarray) -> np.ndarray:
    """Decode ``[s, d]`` latents in fixed-size batches (one compile per prior)."""
    key = ("decode", id(prior.decode))
    hit = _FN_CACHE.get(key)
    if hit is None or hit[0] is not prior.decode:
        hit = (prior.decode, jax.jit(jax.vmap(prior.decode)))
        _FN_CACHE[key] = hit
    dec = hit[1]
    s = z.shape[0]
    out = []
    for i in range(0, s, DECODE_BATCH):
        chunk = z[i : i + DECODE_BATCH]
        k = chunk.shape[0]
        if k < DECODE_BATCH:
            chunk = np.concatenate([chunk, np.zeros((DECODE_BATCH - k, z.shape[1]), z.dtype)])
        out.append(np.asarray(dec(jnp.asarray(chunk)))[:k])
    return np.concatenate(out)


def _check_settings(method, init, likelihood, mass, num_chains, num_warmup, num_samples):
    if method not in METHODS:
        raise ValueError(f"{method=} is not one of {METHODS}")
    if init not in INITS:
        raise ValueError(f"{init=} is not one of {INITS}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"{likelihood=} is not one of {LIKELIHOODS}")
    if mass not in MASSES:
        raise ValueError(f"{mass=} is not one of {MASSES}")
    if min(num_chains, num_samples) < 1 or num_warmup < 0:
        raise ValueError(
            "need num_chains, num_samples >= 1 and num_warmup >= 0, "
            f"got {num_chains=}, {num_samples=}, {num_warmup=}"
        )


def assimilate(
    prior,
    obs_df: pd.DataFrame,
    *,
    time=None,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    seed: int = 0,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    init: str = "map",
    method: str = "nuts",
    likelihood: str = "normal",
    infer_sigma: bool = False,
    df: float = 4.0,
    mass: str = "laplace",
    progress_bar: bool = True,
) -> Assimilation:
    """Sample the posterior of the field given point observations.

    Args:
      prior: the :class:`bayesda.prior.GenerativePrior`.
      obs_df: observations (see :func:`prepare_obs`), values are anomalies in K.
      time: analysis time (selects rows of a multi-time table; recorded in outputs).
      num_chains, num_warmup, num_samples: NUTS settings (for "laplace": the draws are
        ``num_chains x num_samples`` independent samples).
      seed: the only source of randomness.
      target_accept, max_tree_depth: NUTS settings.
      init: "map" (MAP + a Laplace draw per chain), "prior" (a prior draw) or "median"
        (the prior median, z = 0).
      method: "nuts" (reference) or "laplace" (MAP + Gaussian from the Hessian in z).
      likelihood: "normal" or "studentt" (see :mod:`bayesda.model`).
      infer_sigma: infer a common obs-error scale.
      df: Student-t degrees of freedom.
      mass: NUTS mass matrix. "laplace" (default): the dense inverse mass matrix is the
        Laplace covariance at the MAP, held fixed, and warmup adapts only the step size;
        the latent posterior is close to Gaussian, so this whitens it and trees stay short
        (measured on the shipped NCEP model, 60 obs: 7 leapfrog steps per draw vs 31 with
        an adapted diagonal). "diag": adapted diagonal. "dense": adapted dense, started
        from the Laplace covariance -- with a few hundred warmup draws in d = 64 its
        windowed estimates are noisy and drove trees to the maximum depth (~700 steps
        per draw), so it is not recommended.
      progress_bar: show progress.

    Returns:
      An :class:`Assimilation`.
    """
    return assimilate_batch(
        prior,
        obs_df,
        [time],
        seeds=[seed],
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        target_accept=target_accept,
        max_tree_depth=max_tree_depth,
        init=init,
        method=method,
        likelihood=likelihood,
        infer_sigma=infer_sigma,
        df=df,
        mass=mass,
        progress_bar=progress_bar,
    )[0]


def assimilate_batch(
    prior,
    obs_df: pd.DataFrame,
    times,
    *,
    seeds,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    init: str = "map",
    method: str = "nuts",
    likelihood: str = "normal",
    infer_sigma: bool = False,
    df: float = 4.0,
    mass: str = "laplace",
    progress_bar: bool = True,
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
      **settings: as for :func:`assimilate`.

    Returns:
      One :class:`Assimilation` per time. Timings ``warmup`` and ``sampling`` are those of
      the whole batch; ``batch_size`` says how many times shared them.
    """
    _check_settings(method, init, likelihood, mass, num_chains, num_warmup, num_samples)
    times = list(times)
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(times) or not times:
        raise ValueError(f"need one seed per time, got {len(seeds)} seeds for {len(times)} times")
    t_start = _time.perf_counter()
    model = _bound_model(prior, likelihood, infer_sigma, df)
    fns = _fns(model, prior.latent_dim, infer_sigma)
    obs_list = [prepare_obs(prior, obs_df, time=t) for t in times]
    m = max(o.mask.size for o in obs_list)
    obs_list = [_repad(o, m) for o in obs_list]
    dense = likelihood == "normal" and not infer_sigma
    all_args = [
        (tuple(jnp.asarray(a) for a in o.model_args()), o.model_kwargs(dense=dense))
        for o in obs_list
    ]
    keys = [jax.random.split(jax.random.PRNGKey(s), 4)[1:] for s in seeds]  # init, mcmc, post
    ntime = len(times)
    shards = sampler.n_shards(ntime * num_chains) if method == "nuts" else 0
    settings = dict(
        method=method,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        target_accept=target_accept,
        max_tree_depth=max_tree_depth,
        init=init,
        likelihood=likelihood,
        infer_sigma=bool(infer_sigma),
        mass=mass,
        df=df,
        devices=shards,
        batch_size=ntime,
        n_pad=int(m),
    )

    # MAP + Laplace per time (for method="laplace", init="map" and the Laplace mass).
    need_map = method == "laplace" or init == "map" or mass != "diag"
    maps = []
    for args in all_args:
        t0 = _time.perf_counter()
        if need_map:
            x_map, hess, _ = fns.find_map(fns.flat0, args)
            x_map, hess = np.asarray(x_map), _spd(np.asarray(hess))
            if not np.all(np.isfinite(x_map)):
                raise FloatingPointError(
                    "MAP optimisation diverged (non-finite latent); try init='prior'"
                )
        else:
            x_map = hess = None
        maps.append((x_map, hess, _time.perf_counter() - t0))
    # Adam steps, Newton polish (2 x (grad + Hessian) + final Hessian); Hessian ~ D grads.
    map_grads = MAP_STEPS + 3 * (fns.flat0.size + 1) if need_map else 0

    if method == "laplace":
        results = []
        for (x_map, hess, _), args, (_, _, key_post) in zip(maps, all_args, keys, strict=True):
            flat = _laplace_draws(
                key_post, jnp.asarray(x_map), jnp.asarray(hess), (num_chains * num_samples,)
            )
            flat = flat.reshape(num_chains, num_samples, -1)
            results.append(_constrained_samples(fns, flat, args))
        runs = [(samples, {}, {"warmup": 0, "sampling": 0}) for samples in results]
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
        z, decoded, field, scale, idata = _posterior_fields(
            prior, obs, samples, sample_stats, seed, settings
        )
        timings = {
            "map": maps[i][2],
            **batch_timings,
            "fields": _time.perf_counter() - t0,
        }
        grad_evals = {"map": map_grads, **steps}
        out.append(
            Assimilation(
                z=z,
                decoded=decoded,
                field=field,
                sigma_scale=scale,
                idata=idata,
                timings=timings,
                grad_evals=grad_evals,
                obs=obs,
                time=time,
                settings={**settings, "seed": seed},
            )
        )
    wall = _time.perf_counter() - t_start
    for a in out:
        a.timings["wall"] = wall / ntime
    return out


def _run_nuts_batch(fns, all_args, maps, keys, settings, *, progress_bar):
    """All chains of all times through :func:`bayesda.sampler.run_nuts`."""
    nc = settings["num_chains"]
    init, mass = settings["init"], settings["mass"]
    x0, inv_mass, chain_keys = [], [], []
    dim = fns.flat0.size
    for (x_map, hess, _), (key_init, key_mcmc, _) in zip(maps, keys, strict=True):
        if init == "map":
            start = _laplace_draws(key_init, jnp.asarray(x_map), jnp.asarray(hess), (nc,))
        elif init == "prior":
            start = _prior_draws(key_init, fns, nc)
        else:  # "median": the prior median, 0 in the unconstrained space
            start = jnp.zeros((nc, dim))
        x0.append(np.asarray(start, np.float32))
        if mass == "diag":
            inv_mass.append(np.ones((nc, dim), np.float32))
        else:
            inv_mass.append(np.repeat(np.linalg.inv(hess)[None].astype(np.float32), nc, 0))
        chain_keys.append(np.asarray(jax.random.split(key_mcmc, nc)))
    batched_args = jax.tree.map(lambda *a: jnp.repeat(jnp.stack(a), nc, axis=0), *all_args)
    config = sampler.NutsConfig(
        num_warmup=settings["num_warmup"],
        num_samples=settings["num_samples"],
        target_accept=settings["target_accept"],
        max_tree_depth=settings["max_tree_depth"],
        mass=mass,
    )
    draws = sampler.run_nuts(
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
        samples = _constrained_samples(fns, draws.x[sl], args)
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


def _constrained_samples(fns, flat, args) -> dict:
    """``{"z": [chain, draw, d], "sigma_scale": [chain, draw]}`` from unconstrained draws."""
    chains, draws, dim = np.shape(flat)
    post = fns.constrain(jnp.asarray(flat).reshape(-1, dim), args)
    return {
        k: np.asarray(v).reshape(chains, draws, *np.shape(v)[1:])
        for k, v in post.items()
        if k in ("z", "sigma_scale")
    }


def _prior_draws(key, fns, n):
    """``[n, D]`` unconstrained prior draws: ``z ~ N(0, I)``, log sigma_scale ~ its prior."""
    template = fns.unravel(fns.flat0)
    keys = jax.random.split(key, len(template))
    draws = {}
    for k, name in zip(keys, sorted(template), strict=True):
        scale = SIGMA_SCALE_PRIOR[1] if name == "sigma_scale" else 1.0
        draws[name] = scale * jax.random.normal(k, (n, *np.shape(template[name])))
    return jax.vmap(lambda t: ravel_pytree(t)[0])(draws)


def _posterior_fields(prior, obs: ObsData, samples, sample_stats, seed, settings):
    """Decoded fields, fields with the conditioned representation error, and InferenceData."""
    z = samples["z"].astype(np.float32)
    nc, nd, d = z.shape
    decoded = _decode_all(prior, z.reshape(-1, d)).reshape(nc, nd, *prior.grid.shape)
    scale = samples.get("sigma_scale", np.ones((nc, nd), np.float32)).astype(np.float32)
    n = obs.n
    y = obs.y[:n].astype(np.float64)
    mu = np.asarray(decoded.reshape(nc * nd, -1)[:, obs.stencil.idx] * obs.stencil.weight).sum(
        -1
    )  # [s, n]
    sig = obs.sigma[:n][None, :] * scale.reshape(-1, 1)  # [s, n]
    rng = np.random.default_rng([seed, 20260])  # field/predictive noise, seeded like the sampler
    r = condition_representation_error(
        rng,
        y[None, :] - mu,
        sig if settings["infer_sigma"] else obs.sigma[:n],
        obs.stencil,
        prior.repr_error,
    )
    field = decoded + r.reshape(decoded.shape)
    idata = _inference_data(
        samples,
        sample_stats,
        obs,
        mu.reshape(nc, nd, n),
        sig.reshape(nc, nd, n),
        settings["likelihood"],
        settings["df"],
        rng,
        max_tree_depth=settings["max_tree_depth"],
        method=settings["method"],
    )
    return z, decoded, field, scale, idata


def _spd(h: np.ndarray) -> np.ndarray:
    """Symmetrise a Hessian and lift tiny/negative eigenvalues so it is a valid precision."""
    h = 0.5 * (h + h.T)
    w, v = np.linalg.eigh(h)
    return (v * np.maximum(w, 1e-6)) @ v.T


def _inference_data(
    samples, sample_stats, obs: ObsData, mu, sig, likelihood, df, rng, *, max_tree_depth, method
):
    """ArviZ InferenceData; pointwise log-likelihood is the per-observation *marginal*.

    For the low-rank multivariate normal likelihood the joint density does not factorise
    over observations; ``log_likelihood["y"]`` holds the marginal ``log N(y_i | (H g(z))_i,
    s^2 sigma_i^2 + D_i + |A_i|^2)`` for each draw, which is what PSIS-LOO/WAIC treat as
    pointwise terms (an approximation when the representation error is correlated). The
    posterior predictive ``y`` is drawn from the full correlated likelihood.
    """
    from scipy import stats

    n = obs.n
    A = obs.repr_factor[:n].astype(np.float64)
    D = obs.repr_diag[:n].astype(np.float64)
    y = obs.y[:n].astype(np.float64)
    marg_var = sig**2 + D + np.sum(A**2, -1)
    if likelihood == "studentt":
        ll = stats.t.logpdf(y, df, loc=mu, scale=np.sqrt(marg_var))
        pp = mu + np.sqrt(marg_var) * rng.standard_t(df, size=mu.shape)
    else:
        ll = stats.norm.logpdf(y, loc=mu, scale=np.sqrt(marg_var))
        corr = rng.standard_normal((*mu.shape[:2], A.shape[1])) @ A.T if A.shape[1] else 0.0
        pp = mu + corr + np.sqrt(sig**2 + D) * rng.standard_normal(mu.shape)
    posterior = {"z": samples["z"]}
    if "sigma_scale" in samples:
        posterior["sigma_scale"] = samples["sigma_scale"]
    frame = obs.frame
    coords = {"latent": np.arange(samples["z"].shape[-1]), "obs": np.arange(n)}
    idata = az.from_dict(
        posterior=posterior,
        sample_stats=sample_stats or None,
        observed_data={"y": y},
        posterior_predictive={"y": pp},
        log_likelihood={"y": ll},
        coords=coords,
        dims={"z": ["latent"], "y": ["obs"]},
        attrs={
            "inference_library": "numpyro",
            "method": method,
            "max_tree_depth": int(max_tree_depth),
        },
    )
    od = idata.observed_data
    od["obs_lat"] = ("obs", frame["lat"].to_numpy(np.float64))
    od["obs_lon"] = ("obs", frame["lon"].to_numpy(np.float64))
    od["obs_sigma"] = ("obs", frame["sigma"].to_numpy(np.float64))
    return idata
