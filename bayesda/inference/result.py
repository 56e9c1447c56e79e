"""The result of an assimilation: field samples, InferenceData, and the ways to use them.

:class:`Assimilation` is what :func:`bayesda.assimilate` returns; ``.to_xarray()``,
``.diagnose()`` and ``.plot()`` turn it into a Dataset, a verdict and maps.
:func:`posterior_fields` builds it from latent draws: decoded fields, the representation
error conditioned by Matheron's rule (:mod:`bayesda.inference.fields`) and the ArviZ InferenceData.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

with warnings.catch_warnings():  # arviz announces its 1.0 refactor on import
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az
import numpy as np
import xarray as xr

from bayesda.inference.compiled import CACHE
from bayesda.inference.fields import condition_representation_error, studentt_effective_sigma
from bayesda.inference.prepare import ObsData
from bayesda.obs.operator import bilinear_stencil, interpolate

__all__ = ["Assimilation", "inference_data", "posterior_fields"]


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
      settings: the sampler settings and model options (JSON-able).
      prior: the :class:`bayesda.prior.generative.GenerativePrior` used (for :meth:`to_xarray`).
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
    prior: Any = None

    def to_xarray(self, **kwargs) -> xr.Dataset:
        """The field posterior as a CF-annotated Dataset (``posterior_dataset``).

        Keyword arguments go to :func:`~bayesda.inference.fields.posterior_dataset` (``thresholds``,
        ``climatology``).
        """
        from bayesda.inference.fields import posterior_dataset

        return posterior_dataset(self, self._prior(), time=self.time, **kwargs)

    def diagnose(self):
        """The convergence :class:`bayesda.verify.verdict.Verdict` (latent and field)."""
        from bayesda.verify.verdict import diagnose

        return diagnose(self.idata, field_samples=self.to_xarray()[["anomaly"]])

    def plot(self, out="maps.png", *, truth=None, climatology_sd=None, **kwargs):
        """Draw the uncertainty maps to a PNG (:func:`bayesda.outputs.maps.plot_posterior`).

        Returns:
          The path written.
        """
        from bayesda.outputs.maps import plot_posterior

        return plot_posterior(
            self.to_xarray(),
            self.obs.frame,
            truth=truth,
            climatology_sd=climatology_sd,
            out=out,
            **kwargs,
        )

    def at(self, lat, lon, elevation=None, *, sigma=None, lapse=None, seed: int = 0, draws=False):
        """The predictive distribution of an observation at sites.

        What a station at ``(lat, lon)`` would report: the field there plus the error of an
        observation (its own ``sigma`` and, with learned errors, each draw's site SD), with
        the lapse-rate adjustment undone where the site's ``elevation`` is known
        (:func:`bayesda.outputs.sites.predictive_at`).

        Args:
          lat, lon: site coordinates (scalars or ``[n]``).
          elevation: site heights, m (None or NaN: at the model's surface).
          sigma: the SD of such an observation's own error, K (default: the median stated
            ``sigma`` of the observations used).
          lapse: the :class:`bayesda.obs.elevation.LapseRate` (default 6.5 +- 2 K/km).
          seed: seeds the observation-error draws.
          draws: also return the predictive draws (``draws``, dims ``draw, site``).

        Returns:
          A Dataset on dim ``site``: ``mean``, ``sd``, ``q05``, ``q50``, ``q95`` (anomaly,
          K) and, when the prior has a climatology and the analysis a time, the same as
          absolute temperatures ``tas_mean``, ``tas_q05``, ... (K).
        """
        from bayesda.outputs.sites import predictive_at

        prior = self._prior()
        lat = np.atleast_1d(np.asarray(lat, np.float64))
        lon = np.atleast_1d(np.asarray(lon, np.float64))
        s = self.field.shape[0] * self.field.shape[1]
        if sigma is None:
            sigma = float(np.median(self.obs.frame["sigma"]))
        var = np.square(np.broadcast_to(np.asarray(sigma, np.float64), lat.shape))[None, :]
        post = self.idata.posterior
        if "site_sd" in post:
            var = var + np.square(post["site_sd"].values.reshape(s, 1).astype(np.float64))
        else:
            var = var * np.square(self.sigma_scale.reshape(s, 1).astype(np.float64))
        dz = None
        if elevation is not None and getattr(prior, "surface_height", None) is not None:
            from bayesda.obs.elevation import surface_height_at

            dz = np.asarray(elevation, np.float64) - surface_height_at(prior, lat, lon)
        ds = predictive_at(
            self.field.reshape(s, *prior.grid.shape),
            prior.grid,
            lat,
            lon,
            error_sd=np.sqrt(var),
            rng=np.random.default_rng([seed, 55]),
            height_difference=dz,
            lapse=lapse,
            draws=draws,
        )
        if prior.climatology is not None and self.time is not None:
            from bayesda.obs.table import climatology_at

            clim = climatology_at(prior.climatology, lat, lon, np.datetime64(self.time, "ns"))
            for name in ("mean", "q05", "q50", "q95"):
                ds[f"tas_{name}"] = ds[name] + clim
                ds[f"tas_{name}"].attrs = {
                    "units": "K",
                    "long_name": f"predictive {name} of an observed temperature",
                }
        return ds

    def _prior(self):
        if self.prior is None:
            raise ValueError("this Assimilation does not carry its prior; pass it explicitly")
        return self.prior


def posterior_fields(prior, obs: ObsData, samples, sample_stats, seed, settings):
    """Decoded fields, fields with the conditioned representation error, and InferenceData.

    Returns:
      ``(z, decoded, field, sigma_scale, idata)``; ``field`` includes the learned offset.
    """
    z = samples["z"].astype(np.float32)
    nc, nd, d = z.shape
    decoded = CACHE.decode_all(prior, z.reshape(-1, d)).reshape(nc, nd, *prior.grid.shape)
    rng = np.random.default_rng([seed, 20260])  # field/predictive noise, seeded like the sampler
    if obs.arrays.errors is not None:
        field, post, ll, pp = _learned_fields(prior, obs, samples, decoded, rng)
        scale = np.ones((nc, nd), np.float32)
    else:
        field, post, ll, pp, scale = _stated_fields(prior, obs, samples, decoded, settings, rng)
    idata = inference_data(
        post,
        sample_stats,
        obs,
        ll,
        pp,
        max_tree_depth=settings["max_tree_depth"],
        method=settings["method"],
    )
    return z, decoded, field, scale, idata


def _stated_fields(prior, obs: ObsData, samples, decoded, settings, rng):
    """Fields and pointwise terms of the stated-error model (rows are stations)."""
    from scipy import stats

    a = obs.arrays
    nc, nd = decoded.shape[:2]
    n = obs.n
    scale = samples.get("sigma_scale", np.ones((nc, nd), np.float32)).astype(np.float32)
    y = a.y[:n].astype(np.float64)
    mu = interpolate(decoded.reshape(nc * nd, *decoded.shape[2:]), obs.stencil)  # [s, n]
    sig = a.sigma[:n][None, :] * scale.reshape(-1, 1)  # [s, n]
    cond_sigma = sig if settings["infer_sigma"] else a.sigma[:n]
    A = a.repr_factor[:n].astype(np.float64)
    D = a.repr_diag[:n].astype(np.float64)
    if settings["likelihood"] == "studentt":
        # discount in the Matheron step what the t-likelihood discounts (issue 13)
        marginal = sig**2 + D + np.sum(A**2, -1)
        cond_sigma = studentt_effective_sigma(y[None, :] - mu, sig, marginal, settings["df"])
    r = condition_representation_error(
        rng, y[None, :] - mu, cond_sigma, obs.stencil, prior.repr_error
    )
    field = decoded + r.reshape(decoded.shape)
    # Pointwise log-likelihood: the per-observation *marginal* (see inference_data).
    mu, sig = mu.reshape(nc, nd, n), sig.reshape(nc, nd, n)
    marg_var = sig**2 + D + np.sum(A**2, -1)
    if settings["likelihood"] == "studentt":
        df = settings["df"]
        ll = stats.t.logpdf(y, df, loc=mu, scale=np.sqrt(marg_var))
        pp = mu + np.sqrt(marg_var) * rng.standard_t(df, size=mu.shape)
    else:
        ll = stats.norm.logpdf(y, loc=mu, scale=np.sqrt(marg_var))
        corr = rng.standard_normal((nc, nd, A.shape[1])) @ A.T if A.shape[1] else 0.0
        pp = mu + corr + np.sqrt(sig**2 + D) * rng.standard_normal(mu.shape)
    post = {"z": samples["z"]}
    if "sigma_scale" in samples:
        post["sigma_scale"] = samples["sigma_scale"]
    return field, post, ll, pp, scale


def _learned_fields(prior, obs: ObsData, samples, decoded, rng):
    """Fields and pointwise terms of the learned-error model.

    Each draw's site SD is drawn from its conditional over the grid given the draw's
    ``(z, lam, b)`` (:func:`bayesda.inference.errors.site_sd_weights`), then the
    representation error by Matheron's rule at the cell means. Pointwise terms are per
    station: ``y_i ~ N((H x)_i, sigma_i^2 + tau^2)`` given the draw's field ``x``.
    """
    from scipy import stats

    from bayesda.inference.errors import condition_learned, learned_loglik, site_sd_weights

    a, cells, e = obs.arrays, obs.cells, obs.arrays.errors
    nc, nd = decoded.shape[:2]
    s = nc * nd
    lam = samples["repr_scale"].reshape(s).astype(np.float64)
    offset = samples["offset"].reshape(s).astype(np.float64) if "offset" in samples else 0.0
    flat = decoded.reshape(s, -1).astype(np.float64) + np.reshape(offset, (-1, 1))
    m = obs.rows
    resid = a.y[:m][None, :] - interpolate(flat.reshape(s, *prior.grid.shape), obs.stencil)
    # [s, K] log likelihood per site-SD grid value, in blocks to bound memory
    padded = np.pad(resid, ((0, 0), (0, a.mask.size - m)))
    ll_k = np.concatenate(
        [learned_loglik(padded[i : i + 256], lam[i : i + 256], e, m) for i in range(0, s, 256)]
    )
    weights = site_sd_weights(ll_k, e.log_prior)
    site = (weights.cumsum(axis=1) > rng.uniform(size=(s, 1))).argmax(axis=1)
    r = condition_learned(rng, resid, lam, site, cells, e, prior.repr_error)
    field = (flat.reshape(decoded.shape) + r.reshape(decoded.shape)).astype(np.float32)
    tau = e.site_sd[site].astype(np.float64)
    st = bilinear_stencil(prior.grid, obs.frame["lat"].to_numpy(), obs.frame["lon"].to_numpy())
    y = obs.frame["value"].to_numpy(np.float64)
    sig2 = np.square(obs.frame["sigma"].to_numpy(np.float64))[None, :] + tau[:, None] ** 2
    hx = interpolate(field.reshape(s, *prior.grid.shape), st)  # [s, n]
    ll = stats.norm.logpdf(y, loc=hx, scale=np.sqrt(sig2)).reshape(nc, nd, -1)
    pp = (hx + np.sqrt(sig2) * rng.standard_normal(hx.shape)).reshape(nc, nd, -1)
    post = {"z": samples["z"], "repr_scale": samples["repr_scale"]}
    if "offset" in samples:
        post["offset"] = samples["offset"]
    post["site_sd"] = tau.reshape(nc, nd).astype(np.float32)
    return field, post, ll, pp


def inference_data(posterior, sample_stats, obs: ObsData, ll, pp, *, max_tree_depth, method):
    """ArviZ InferenceData of one time, one observation per station.

    ``log_likelihood["y"]`` holds each station's *marginal* log density per draw (with the
    stated-error model's correlated representation error, the joint density does not
    factorise over observations; PSIS-LOO/WAIC treat these as pointwise terms, an
    approximation there). ``posterior_predictive["y"]`` are replicate observations.
    """
    frame = obs.frame
    n = len(frame)
    coords = {"latent": np.arange(posterior["z"].shape[-1]), "obs": np.arange(n)}
    idata = az.from_dict(
        posterior=posterior,
        sample_stats=sample_stats or None,
        observed_data={"y": frame["value"].to_numpy(np.float64)},
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
