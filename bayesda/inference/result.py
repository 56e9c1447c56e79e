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
from bayesda.obs.operator import interpolate

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

    def _prior(self):
        if self.prior is None:
            raise ValueError("this Assimilation does not carry its prior; pass it explicitly")
        return self.prior


def posterior_fields(prior, obs: ObsData, samples, sample_stats, seed, settings):
    """Decoded fields, fields with the conditioned representation error, and InferenceData."""
    z = samples["z"].astype(np.float32)
    nc, nd, d = z.shape
    decoded = CACHE.decode_all(prior, z.reshape(-1, d)).reshape(nc, nd, *prior.grid.shape)
    scale = samples.get("sigma_scale", np.ones((nc, nd), np.float32)).astype(np.float32)
    n = obs.n
    y = obs.y[:n].astype(np.float64)
    mu = interpolate(decoded.reshape(nc * nd, *decoded.shape[2:]), obs.stencil)  # [s, n]
    sig = obs.sigma[:n][None, :] * scale.reshape(-1, 1)  # [s, n]
    rng = np.random.default_rng([seed, 20260])  # field/predictive noise, seeded like the sampler
    cond_sigma = sig if settings["infer_sigma"] else obs.sigma[:n]
    if settings["likelihood"] == "studentt":
        # discount in the Matheron step what the t-likelihood discounts (issue 13)
        marginal = sig**2 + obs.repr_diag[:n] + np.sum(obs.repr_factor[:n] ** 2, -1)
        cond_sigma = studentt_effective_sigma(y[None, :] - mu, sig, marginal, settings["df"])
    r = condition_representation_error(
        rng, y[None, :] - mu, cond_sigma, obs.stencil, prior.repr_error
    )
    field = decoded + r.reshape(decoded.shape)
    idata = inference_data(
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


def inference_data(
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
