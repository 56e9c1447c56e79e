"""Forecast skill of the latent dynamics against persistence and climatology, in field space.

From a known field ``x_t`` (a held-out truth), each method forecasts ``x_{t+k}``:

* ``dynamics``: the latent transition of :mod:`bayesda.prior.dynamics`. ``z_t`` is the
  encoder mean of ``x_t`` and ``r_t = x_t - g(z_t)`` the representation error then, so the
  forecast is the ensemble ``g(z) + rho^k r_t + sqrt(1 - rho^{2k}) eta``,
  ``z ~ N(A^k z_t, P - A^k P A^kT)``, ``eta ~ N(0, C)``.
* ``persistence``: ``N(x_t, s_k^2)`` per pixel, ``s_k^2`` the mean square of
  ``x_{t+k} - x_t`` over training pairs (a probabilistic persistence; its CRPS is fair
  against the others).
* ``climatology``: ``N(0, s^2)``, ``s`` the per-pixel RMS of the training anomalies.

Scores (:mod:`bayesda.verify.metrics`): RMSE of the forecast mean (root of the mean over
pairs of the area-weighted MSE) and CRPS (area-weighted, fair ensemble estimator for the
dynamics, closed form for the Gaussian ones), each with its standard error over pairs (pairs
overlap in time, so the standard error is optimistic), and the spread/skill ratio (root of
the mean forecast variance over the RMSE; 1 for a calibrated forecast).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayesda.prior.dynamics import LatentDynamics, consecutive_pairs
from bayesda.verify.metrics import SAMPLE_DIM, crps_ensemble, crps_gaussian, spatial_mean

__all__ = ["FORECAST_METHODS", "forecast_skill"]

FORECAST_METHODS = ("dynamics", "persistence", "climatology")


def _scores(mse: np.ndarray, crps: np.ndarray, var: np.ndarray) -> dict:
    n = mse.size
    return {
        "rmse": float(np.sqrt(mse.mean())),
        # delta method: SE of sqrt(mean mse)
        "rmse_se": float(mse.std(ddof=1) / np.sqrt(n) / (2 * np.sqrt(mse.mean()))),
        "crps": float(crps.mean()),
        "crps_se": float(crps.std(ddof=1) / np.sqrt(n)),
        "spread_skill": float(np.sqrt(var.mean() / mse.mean())),
    }


def _lagged_sd(train: xr.DataArray, steps: int, step_hours: float) -> np.ndarray:
    i, j = consecutive_pairs(train["time"].values, steps * step_hours)
    if i.size == 0:
        raise ValueError(f"no training pairs {steps * step_hours:g} h apart")
    x = train.values.astype(np.float64)
    return np.sqrt(np.mean((x[j] - x[i]) ** 2, axis=0))


def forecast_skill(
    prior,
    dynamics: LatentDynamics,
    verifying: xr.DataArray,
    train: xr.DataArray,
    *,
    leads: tuple[int, ...] = (1, 2, 4),
    n_members: int = 50,
    seed: int = 0,
    chunk: int = 64,
) -> dict:
    """Forecast scores at each lead on every pair of verifying fields ``k`` steps apart.

    Args:
      prior: the generative prior (``encode``, ``decode``, ``repr_error``).
      dynamics: its latent dynamics.
      verifying: held-out anomalies ``(time, lat, lon)``, K; pairs are taken within it.
      train: training anomalies ``(time, lat, lon)``, K (persistence and climatology SDs).
      leads: forecast leads in steps.
      n_members: members of the dynamics ensemble.
      seed: seed of the ensemble.
      chunk: pairs per batch (bounds memory).

    Returns:
      ``{"<hours>h": {"n_pairs": n, "dynamics": {"rmse", "rmse_se", "crps", "crps_se",
      "spread_skill"},
      "persistence": {...}, "climatology": {...}}}``.
    """
    if prior.encode is None:
        raise ValueError("the prior has no encoder; the dynamics forecast starts from encode(x)")
    if n_members < 2:
        raise ValueError(f"{n_members=} must be >= 2")
    verifying = verifying.transpose("time", "lat", "lon")
    x = verifying.values.astype(np.float32)
    template = verifying.isel(time=0, drop=True)
    clim_sd = np.sqrt(np.mean(train.values.astype(np.float64) ** 2, axis=0))
    z_all = np.asarray(prior.encode(x)[0], np.float64)
    rng = np.random.default_rng(seed)
    out: dict = {}
    for k in leads:
        i, j = consecutive_pairs(verifying["time"].values, k * dynamics.step_hours)
        if i.size < 2:
            raise ValueError(f"fewer than 2 verifying pairs {k * dynamics.step_hours:g} h apart")
        mean, cov = dynamics.forecast(z_all[i], k)
        chol = np.linalg.cholesky(cov + 1e-9 * np.eye(cov.shape[0]))
        pers_sd = _lagged_sd(train, k, dynamics.step_hours)
        rho_k = dynamics.repr_corr**k
        parts: dict[str, list] = {m: [] for m in ("dyn_mse", "dyn_crps", "dyn_var", "per", "cli")}
        for lo in range(0, i.size, chunk):
            ii, jj = i[lo : lo + chunk], j[lo : lo + chunk]
            mm = mean[lo : lo + chunk]
            start = x[ii].astype(np.float64)
            r_now = start - np.asarray(prior.decode(z_all[ii].astype(np.float32)), np.float64)
            z = mm[:, None, :] + rng.standard_normal((ii.size, n_members, mm.shape[1])) @ chol.T
            dec = np.asarray(prior.decode(z.astype(np.float32)), np.float64)
            eta = prior.repr_error.sample(rng, ii.size * n_members).reshape(dec.shape)
            ens = dec + rho_k * r_now[:, None] + np.sqrt(1 - rho_k**2) * eta
            truth = xr.DataArray(x[jj], dims=("pair", "lat", "lon"), coords=template.coords)
            members = xr.DataArray(
                ens, dims=("pair", SAMPLE_DIM, "lat", "lon"), coords=template.coords
            )
            parts["dyn_crps"].append(crps_ensemble(members, truth).values)
            parts["dyn_mse"].append(spatial_mean((members.mean(SAMPLE_DIM) - truth) ** 2).values)
            parts["dyn_var"].append(spatial_mean(members.var(SAMPLE_DIM, ddof=1)).values)
            start_da = truth.copy(data=start)
            parts["per"].append(
                (
                    spatial_mean((start_da - truth) ** 2).values,
                    crps_gaussian(
                        start_da, truth.copy(data=np.broadcast_to(pers_sd, start.shape)), truth
                    ).values,
                )
            )
            zero = truth.copy(data=np.zeros_like(start))
            parts["cli"].append(
                (
                    spatial_mean(truth**2).values,
                    crps_gaussian(
                        zero, truth.copy(data=np.broadcast_to(clim_sd, start.shape)), truth
                    ).values,
                )
            )
        cat = np.concatenate
        weights = np.cos(np.deg2rad(template["lat"].values))[:, None] * np.ones_like(pers_sd)
        per_var = np.full(i.size, np.sum(weights * pers_sd**2) / weights.sum())
        cli_var = np.full(i.size, np.sum(weights * clim_sd**2) / weights.sum())
        out[f"{k * dynamics.step_hours:g}h"] = {
            "n_pairs": int(i.size),
            "dynamics": _scores(
                cat(parts["dyn_mse"]), cat(parts["dyn_crps"]), cat(parts["dyn_var"])
            ),
            "persistence": _scores(
                cat([p[0] for p in parts["per"]]), cat([p[1] for p in parts["per"]]), per_var
            ),
            "climatology": _scores(
                cat([p[0] for p in parts["cli"]]), cat([p[1] for p in parts["cli"]]), cli_var
            ),
        }
    return out
