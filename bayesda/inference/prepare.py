"""Observations prepared for the model: checked, located on the grid, padded to a fixed length.

Observations are padded to a power of two (>= 32, :func:`bayesda.inference.model.pad_length`) with a
mask, so that days with similar numbers of observations share one compiled program.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from bayesda.inference.fields import repr_covariance_at_obs
from bayesda.inference.model import pad_length
from bayesda.obs.operator import Stencil, bilinear_stencil
from bayesda.runtime.arrays import to_device

__all__ = ["REQUIRED_COLUMNS", "ObsData", "pad_rows", "prepare_obs", "repad"]

REQUIRED_COLUMNS = ("lat", "lon", "value", "sigma")


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
        kw = {"mask": to_device(self.mask)}
        if dense and self.scale_tril is not None:
            kw["scale_tril"] = to_device(self.scale_tril)
        return kw


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


def prepare_obs(
    prior, obs: pd.DataFrame, *, time=None, pad: bool = True, covariance: bool = True
) -> ObsData:
    """Check observations against the prior's grid and pad them for the model.

    Args:
      prior: the :class:`bayesda.prior.generative.GenerativePrior`.
      obs: table with columns lat (deg N), lon (deg E), value (anomaly, K), sigma (K), and
        optionally time (rows at other times are dropped when ``time`` is given).
      time: analysis time.
      pad: pad to :func:`bayesda.inference.model.pad_length` (False: no padding).
      covariance: compute the representation error's low-rank factor at the observations
        and ``scale_tril`` here (False: zeros and None, for a caller that builds the exact
        covariance itself, as :func:`bayesda.inference.batch.innovation_cholesky` does for a batch
        of times on the device).

    Raises:
      ValueError: missing columns, no rows, non-finite values, sigma <= 0, or points
        outside the grid.
      bayesda.obs.capacity.ObservationSizeError: too many observations for the memory
        available (see :func:`bayesda.obs.capacity.check_obs_size`).
    """
    from bayesda.obs.capacity import check_obs_size

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
    check_obs_size(len(obs), pad_length(len(obs)) if pad else None, n_cells=prior.grid.size)
    stencil = bilinear_stencil(prior.grid, obs["lat"].to_numpy(), obs["lon"].to_numpy())
    n = len(obs)
    m = pad_length(n) if pad else n
    if covariance:
        A, D = prior.repr_error.at_obs(stencil)
    else:
        D = prior.repr_error.diag_at_obs(stencil)
        A = np.zeros((n, min(prior.repr_error.rank, n)), np.float32)
    # at_obs compresses a factor of rank > n to [n, n]; zero columns up to min(rank, m) keep
    # A A^T and give every day with the same padded length the same shapes (one compile).
    A = np.pad(A, ((0, 0), (0, max(0, min(prior.repr_error.rank, m) - A.shape[1]))))

    scale_tril = None
    if prior.repr_error.rank > 0 and covariance:
        cov = repr_covariance_at_obs(stencil, prior.repr_error) + np.diag(sigma**2)
        scale_tril = _pad_identity(np.linalg.cholesky(cov).astype(np.float32), m)

    return ObsData(
        frame=obs,
        stencil=stencil,
        idx=pad_rows(stencil.idx, m, 0),
        weight=pad_rows(stencil.weight, m, 0.0),
        y=pad_rows(obs["value"].to_numpy(np.float32), m, 0.0),
        sigma=pad_rows(sigma, m, 1.0),
        repr_factor=pad_rows(A, m, 0.0),
        repr_diag=pad_rows(D, m, 0.0),
        mask=np.arange(m) < n,
        scale_tril=scale_tril,
    )


def pad_rows(x: np.ndarray, m: int, fill) -> np.ndarray:
    """``x`` with rows ``fill`` appended up to length ``m`` (floats as float32)."""
    x = np.asarray(x)
    out = np.full((m, *x.shape[1:]), fill, dtype=np.float32 if x.dtype.kind == "f" else x.dtype)
    out[: x.shape[0]] = x
    return out


def repad(obs: ObsData, m: int) -> ObsData:
    """The same observations padded to length ``m`` (>= the current padded length)."""
    k = obs.mask.size
    if m == k:
        return obs
    if m < k:
        raise ValueError(f"cannot pad {k} entries down to {m}")

    return obs._replace(
        idx=pad_rows(obs.idx, m, 0),
        weight=pad_rows(obs.weight, m, 0.0),
        y=pad_rows(obs.y, m, 0.0),
        sigma=pad_rows(obs.sigma, m, 1.0),
        repr_factor=pad_rows(obs.repr_factor, m, 0.0),
        repr_diag=pad_rows(obs.repr_diag, m, 0.0),
        mask=np.arange(m) < obs.n,
        scale_tril=None if obs.scale_tril is None else _pad_identity(obs.scale_tril, m),
    )


def _pad_identity(a: np.ndarray, m: int) -> np.ndarray:
    out = np.eye(m, dtype=a.dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out
