"""The posterior at the observation sites: residuals and flags, one row per observation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayesda.obs.operator import bilinear_stencil, interpolate

__all__ = ["site_table"]


def site_table(obs: pd.DataFrame, posterior: xr.Dataset) -> pd.DataFrame:
    """Posterior mean, SD and 5-95% range of the field at each observation, with residuals.

    Args:
      obs: the observations used (``lat``, ``lon``, ``value``, ``sigma`` and any QC
        columns of :mod:`bayesda.preflight.qc`, kept).
      posterior: :func:`bayesda.inference.fields.posterior_dataset` (``anomaly`` samples).

    Returns:
      ``obs`` plus ``post_mean``, ``post_sd``, ``post_q05``, ``post_q95`` (the field
      ``(H x)_i``, K), ``residual`` = value - post_mean and ``z`` = residual /
      sqrt(post_sd^2 + sigma^2) (``sigma_stated`` when QC inflated ``sigma``).
    """
    from bayesda.geo.grid import Grid

    grid = Grid.from_xarray(posterior)
    st = bilinear_stencil(grid, obs["lat"].to_numpy(), obs["lon"].to_numpy())
    st = st._replace(weight=st.weight.astype(np.float64))
    samples = np.asarray(posterior["anomaly"].values, np.float64)
    samples = samples.reshape(-1, *grid.shape)
    at = np.asarray(interpolate(samples, st))  # [s, n]
    out = obs.copy()
    out["post_mean"] = at.mean(0)
    out["post_sd"] = at.std(0, ddof=1)
    out["post_q05"], out["post_q95"] = np.quantile(at, [0.05, 0.95], axis=0)
    out["residual"] = out["value"] - out["post_mean"]
    sig = out["sigma_stated"] if "sigma_stated" in out else out["sigma"]
    out["z"] = out["residual"] / np.sqrt(out["post_sd"] ** 2 + sig**2)
    return out
