"""Observations prepared for the model: checked, located on the grid, padded to a fixed length.

:func:`prepare_obs` turns a table into an :class:`ObsData`: the stations used (the table),
and the :class:`~bayesda.inference.model.ModelObs` the NumPyro model takes. With stated
errors a row is a station; with learned errors (the default) a row is a grid cell, the mean
of the stations nearest its node (:func:`bayesda.inference.errors.cells_of`), and the
likelihood's per-time constants are computed here (:func:`bayesda.inference.errors.learned_errors`).

Rows are padded to a power of two (>= 32, :func:`bayesda.inference.model.pad_length`) with a
mask, so that days with similar numbers of observations share one compiled program.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from bayesda.inference.errors import Cells, LearnedErrors, cells_of, learned_errors
from bayesda.inference.model import ModelObs, pad_length
from bayesda.obs.operator import Stencil, bilinear_stencil
from bayesda.settings import ModelOptions

__all__ = ["REQUIRED_COLUMNS", "ObsData", "pad_rows", "prepare_obs", "repad"]

REQUIRED_COLUMNS = ("lat", "lon", "value", "sigma")


class ObsData(NamedTuple):
    """One time's observations, from the table to what the model sees.

    Attributes:
      frame: the ``n`` observations used (columns lat, lon, value, sigma, ...), one row per
        station.
      stencil: the stencil of the model's rows (stations, or cells), unpadded.
      arrays: the :class:`~bayesda.inference.model.ModelObs` (padded host arrays).
      cells: with learned errors, the stations grouped by cell
        (:class:`~bayesda.inference.errors.Cells`); else None.
    """

    frame: pd.DataFrame
    stencil: Stencil
    arrays: ModelObs
    cells: Cells | None = None

    @property
    def n(self) -> int:
        """The number of observations (stations) used."""
        return len(self.frame)

    @property
    def rows(self) -> int:
        """The number of real rows of the model (stations, or cells)."""
        return int(self.arrays.mask.sum())

    @property
    def padded(self) -> int:
        """The padded number of rows."""
        return int(self.arrays.mask.size)


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


def _checked(obs: pd.DataFrame, grid) -> pd.DataFrame:
    """The table checked by the one validator (:func:`bayesda.obs.table.validate_obs`),
    with any other columns (QC flags, heights, ...) kept."""
    from bayesda.obs.table import validate_obs

    missing = [c for c in REQUIRED_COLUMNS if c not in obs.columns]
    if missing:
        raise ValueError(f"observation table lacks column(s) {missing}; it has {list(obs.columns)}")
    clean = validate_obs(obs, grid=grid, duplicates="keep")
    for col in obs.columns:
        if col not in clean.columns:
            clean[col] = obs[col].to_numpy()
    return clean


def prepare_obs(
    prior,
    obs: pd.DataFrame,
    *,
    time=None,
    pad: bool = True,
    covariance: bool = True,
    options: ModelOptions | None = None,
) -> ObsData:
    """Check observations against the prior's grid and prepare them for the model.

    Args:
      prior: the :class:`bayesda.prior.generative.GenerativePrior`.
      obs: table with columns lat (deg N), lon (deg E), value (anomaly, K), sigma (K), and
        optionally time (rows at other times are dropped when ``time`` is given).
      time: analysis time.
      pad: pad to :func:`bayesda.inference.model.pad_length` (False: no padding).
      covariance: stated errors: compute the representation error's low-rank factor at the
        observations and ``scale_tril`` here (False: zeros and None, for a caller that builds
        the exact covariance itself, as :func:`bayesda.inference.batch.innovation_cholesky`
        does for a batch of times on the device).
      options: the :class:`bayesda.settings.ModelOptions` (default: learned errors).

    Raises:
      ValueError: missing columns, no rows, non-finite values, sigma <= 0, or points
        outside the grid (:func:`bayesda.obs.table.validate_obs`).
      bayesda.obs.capacity.ObservationSizeError: too many observations for the memory
        available (see :func:`bayesda.obs.capacity.check_obs_size`).
    """
    from bayesda.obs.capacity import check_obs_size

    options = options or ModelOptions()
    if not isinstance(obs, pd.DataFrame):
        raise TypeError(f"observations must be a pandas DataFrame, got {type(obs).__name__}")
    obs = _select_time(obs, time).reset_index(drop=True)
    if len(obs) == 0:
        raise ValueError("the observation table has no rows")
    obs = _checked(obs, prior.grid)
    if options.errors == "learned":
        return _prepare_learned(prior, obs, pad, options)
    check_obs_size(len(obs), pad_length(len(obs)) if pad else None, n_cells=prior.grid.size)
    sigma = obs["sigma"].to_numpy(np.float64)
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
        cov = prior.repr_error.covariance_at_obs(stencil) + np.diag(sigma**2)
        scale_tril = _pad_identity(np.linalg.cholesky(cov).astype(np.float32), m)

    arrays = ModelObs(
        idx=pad_rows(stencil.idx, m, 0),
        weight=pad_rows(stencil.weight, m, 0.0),
        y=pad_rows(obs["value"].to_numpy(np.float32), m, 0.0),
        sigma=pad_rows(sigma, m, 1.0),
        mask=np.arange(m) < n,
        repr_factor=pad_rows(A, m, 0.0),
        repr_diag=pad_rows(D, m, 0.0),
        scale_tril=scale_tril,
    )
    return ObsData(frame=obs, stencil=stencil, arrays=arrays)


def _prepare_learned(prior, obs: pd.DataFrame, pad: bool, options: ModelOptions) -> ObsData:
    """Group the stations by cell and compute the learned-error constants."""
    from bayesda.obs.capacity import check_obs_size

    cells = cells_of(prior.grid, obs)
    f = cells.frame
    m_real = len(f)
    m = pad_length(m_real) if pad else m_real
    check_obs_size(m_real, m, n_cells=prior.grid.size)
    errors = learned_errors(
        cells,
        prior.repr_error,
        pad_to=m,
        site_sd_scale=options.site_sd_scale,
        scatter=options.scatter,
    )
    arrays = ModelObs(
        idx=pad_rows(cells.stencil.idx, m, 0),
        weight=pad_rows(cells.stencil.weight, m, 0.0),
        y=pad_rows(f["value"].to_numpy(np.float32), m, 0.0),
        sigma=pad_rows(np.sqrt(f["sigma2"].to_numpy() / f["count"].to_numpy()), m, 1.0),
        mask=np.arange(m) < m_real,
        repr_factor=np.zeros((m, 0), np.float32),
        repr_diag=np.zeros(m, np.float32),
        errors=errors,
    )
    return ObsData(frame=obs, stencil=cells.stencil, arrays=arrays, cells=cells)


def pad_rows(x: np.ndarray, m: int, fill) -> np.ndarray:
    """``x`` with rows ``fill`` appended up to length ``m`` (floats as float32)."""
    x = np.asarray(x)
    out = np.full((m, *x.shape[1:]), fill, dtype=np.float32 if x.dtype.kind == "f" else x.dtype)
    out[: x.shape[0]] = x
    return out


def _pad_errors(e: LearnedErrors, m: int) -> LearnedErrors:
    k, old, _ = e.q.shape
    q = np.zeros((k, m, m), e.q.dtype)
    q[:, :old, :old] = e.q
    q[:, old:, old:] = np.eye(m - old, dtype=e.q.dtype)
    return e._replace(q=q, w=np.pad(e.w, ((0, 0), (0, m - old))))


def repad(obs: ObsData, m: int) -> ObsData:
    """The same observations padded to length ``m`` (>= the current padded length)."""
    a = obs.arrays
    k = a.mask.size
    if m == k:
        return obs
    if m < k:
        raise ValueError(f"cannot pad {k} entries down to {m}")
    arrays = a._replace(
        idx=pad_rows(a.idx, m, 0),
        weight=pad_rows(a.weight, m, 0.0),
        y=pad_rows(a.y, m, 0.0),
        sigma=pad_rows(a.sigma, m, 1.0),
        mask=np.arange(m) < obs.rows,
        repr_factor=pad_rows(a.repr_factor, m, 0.0),
        repr_diag=pad_rows(a.repr_diag, m, 0.0),
        scale_tril=None if a.scale_tril is None else _pad_identity(a.scale_tril, m),
        errors=None if a.errors is None else _pad_errors(a.errors, m),
    )
    return obs._replace(arrays=arrays)


def _pad_identity(a: np.ndarray, m: int) -> np.ndarray:
    out = np.eye(m, dtype=a.dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out
