"""The posterior at sites: residuals at the observations used, and the predictive
distribution of an observation anywhere a user asks (:func:`predictive_at`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayesda.obs.operator import bilinear_stencil, interpolate

__all__ = ["predictive_at", "read_sites", "site_table"]


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


def predictive_at(
    samples: np.ndarray,
    grid,
    lat,
    lon,
    *,
    error_sd: np.ndarray,
    rng: np.random.Generator,
    height_difference=None,
    lapse=None,
    draws: bool = False,
) -> xr.Dataset:
    """The predictive distribution of an observation at each site, from field draws.

    ``y = (H x)_site + e``, ``e ~ N(0, error_sd^2)`` for each draw ``x``; where the site's
    height differs from the model surface by ``dz`` the lapse-rate adjustment of
    :mod:`bayesda.obs.elevation` is undone (``- rate dz``) and its uncertainty added
    (``N(0, (rate_sd dz)^2)``), so ``y`` is what a station there would report (as an
    anomaly from the model's climatology, K).

    Args:
      samples: ``[s, nlat, nlon]`` field draws (anomalies, K).
      grid: their :class:`bayesda.geo.grid.Grid`.
      lat, lon: ``[n]`` site coordinates.
      error_sd: ``[s, n]`` (or broadcastable) SD of an observation's own error per draw, K.
      rng: the random generator.
      height_difference: ``[n]`` site height minus model surface height, m (NaN or None:
        no adjustment).
      lapse: the :class:`bayesda.obs.elevation.LapseRate` (default 6.5 +- 2 K/km).
      draws: also return the predictive draws (``draws``, dims ``draw, site``).

    Returns:
      A Dataset on dim ``site``: ``mean``, ``sd``, ``q05``, ``q50``, ``q95`` (anomaly, K).
    """
    from bayesda.obs.elevation import LapseRate
    from bayesda.verify.metrics import QUANTILES

    st = bilinear_stencil(grid, np.asarray(lat, np.float64), np.asarray(lon, np.float64))
    st = st._replace(weight=st.weight.astype(np.float64))
    at = np.asarray(interpolate(np.asarray(samples, np.float64), st))  # [s, n]
    y = at + np.broadcast_to(error_sd, at.shape) * rng.standard_normal(at.shape)
    if height_difference is not None:
        lapse = lapse or LapseRate()
        dz = np.nan_to_num(np.asarray(height_difference, np.float64)) / 1000.0
        y = y - lapse.rate * dz + lapse.rate_sd * np.abs(dz) * rng.standard_normal(at.shape)
    qs = np.quantile(y, list(QUANTILES.values()), axis=0)
    data = {
        "mean": ("site", y.mean(0)),
        "sd": ("site", y.std(0, ddof=1)),
        **{name: ("site", qs[i]) for i, name in enumerate(QUANTILES)},
    }
    coords = {"lat": ("site", _as_1d(lat)), "lon": ("site", _as_1d(lon))}
    ds = xr.Dataset(data, coords=coords)
    for name in ds.data_vars:
        ds[name].attrs = {"units": "K", "long_name": f"predictive {name} of an observation"}
    if draws:
        ds["draws"] = (("draw", "site"), y)
        ds["draws"].attrs = {"units": "K", "long_name": "predictive draws of an observation"}
    return ds


def _as_1d(x) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, np.float64))


def read_sites(path) -> pd.DataFrame:
    """A sites file: CSV with columns ``lat``, ``lon`` and optionally ``id`` and ``elevation``
    (m); errors name the file and the row."""
    from pathlib import Path

    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read sites file {path}: {err}") from err
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in ("lat", "lon") if c not in df.columns]
    if missing:
        raise ValueError(f"sites file {path} lacks column(s) {missing}; it has {list(df.columns)}")
    for col in ("lat", "lon", "elevation"):
        if col not in df.columns:
            continue
        x = pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(x) if col != "elevation" else (~np.isfinite(x) & df[col].notna())
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: row {k + 2}: {col}={df[col].iloc[k]!r} is not a number")
        df[col] = x
    if "id" not in df.columns:
        df["id"] = [f"site{i}" for i in range(len(df))]
    df["id"] = df["id"].astype(str)
    return df
