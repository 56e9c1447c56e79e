"""Verification metrics for probabilistic analyses of anomaly fields.

xarray in, xarray out. A *point* field is a DataArray with dims ``(..., lat, lon)``; an
*ensemble* carries an extra member dimension, either ``(chain, draw)`` as a posterior
comes out of NumPyro/ArviZ or the single :data:`SAMPLE_DIM` that :func:`as_ensemble`
stacks them into. Every metric reduces over ``dims`` (default: ``lat`` and ``lon``) with
area weights proportional to cos(latitude), restricted to an optional boolean ``mask``
``(lat, lon)`` (True = include the point), and keeps every other dimension (e.g. ``time``).
Pass ``dims=()`` for pointwise fields.

"Observed" grid points are, by this module's convention, the grid nodes *nearest* to an
observation (:func:`bayesda.obs.operator.nearest_index`); all other points are "unobserved".
:func:`observed_mask` computes it and :func:`verify` uses it.

References:
  Gneiting, T. and Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and
  estimation. JASA 102(477), 359-378.
  Ferro, C. A. T. (2014). Fair scores for ensemble forecasts. QJRMS 140, 1917-1923.
  Fortin, V., Abaza, M., Anctil, F. and Turcotte, R. (2014). Why should ensemble spread
  match the RMSE of the ensemble mean? J. Hydrometeorol. 15, 1708-1713.
  Hamill, T. M. (2001). Interpretation of rank histograms for verifying ensemble
  forecasts. Mon. Wea. Rev. 129, 550-560.
  Rasp, S. et al. (2024). WeatherBench 2. JAMES 16, e2023MS004019 (metric conventions).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special, stats

from bayesda.geo.grid import Grid
from bayesda.obs.operator import nearest_index

SAMPLE_DIM = "sample"
"""Name of the ensemble-member dimension after :func:`as_ensemble`."""

SPATIAL_DIMS = ("lat", "lon")
"""Dimensions a metric averages over by default."""

LEVEL_DIM = "level"
"""Dimension of nominal levels when :func:`coverage` gets several."""

__all__ = [
    "LEVEL_DIM",
    "QUANTILES",
    "SAMPLE_DIM",
    "SPATIAL_DIMS",
    "as_ensemble",
    "bias",
    "coverage",
    "coverage_gaussian",
    "crps_ensemble",
    "crps_gaussian",
    "observed_mask",
    "rank_histogram",
    "rmse",
    "spatial_mean",
    "spread_skill",
    "verify",
]

# The posterior quantiles every output reports: name -> probability.
QUANTILES = {"q05": 0.05, "q50": 0.5, "q95": 0.95}


# --------------------------------------------------------------------------------------
# Plumbing
# --------------------------------------------------------------------------------------


def as_ensemble(obj: xr.Dataset | xr.DataArray, var: str = "anomaly") -> xr.DataArray:
    """Return the ensemble members as a DataArray with a single :data:`SAMPLE_DIM`.

    Args:
      obj: a posterior Dataset (its ``var`` is used) or a DataArray of members with dims
        ``(chain, draw, ...)`` or ``(sample, ...)``.
      var: the variable holding the members when ``obj`` is a Dataset.

    Returns:
      DataArray ``(sample, ...)``; ``(chain, draw)`` are stacked chain-major into
      ``sample`` and their coordinates dropped, so sample ``i`` is member ``i``.

    Raises:
      ValueError: ``obj`` has no member dimension, or lacks ``var``.
    """
    if isinstance(obj, xr.Dataset):
        if var not in obj:
            raise ValueError(
                f"dataset has no variable {var!r}; variables: {sorted(map(str, obj.data_vars))}"
            )
        obj = obj[var]
    if SAMPLE_DIM in obj.dims:
        return obj.transpose(SAMPLE_DIM, ...)
    if "chain" in obj.dims and "draw" in obj.dims:
        stacked = obj.stack({SAMPLE_DIM: ("chain", "draw")}).transpose(SAMPLE_DIM, ...)
        stacked = stacked.drop_vars([SAMPLE_DIM, "chain", "draw"], errors="ignore")
        return stacked
    raise ValueError(
        f"no ensemble dimension: expected {SAMPLE_DIM!r} or ('chain', 'draw'), got dims {obj.dims}"
    )


def _point(forecast: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """A point forecast: a Dataset's ``mean``, an ensemble's mean, or the DataArray itself."""
    if isinstance(forecast, xr.Dataset):
        if "mean" in forecast:
            return forecast["mean"]
        return as_ensemble(forecast).mean(SAMPLE_DIM)
    if SAMPLE_DIM in forecast.dims or {"chain", "draw"} <= set(forecast.dims):
        return as_ensemble(forecast).mean(SAMPLE_DIM)
    return forecast


def _as_mask(mask, like: xr.DataArray) -> xr.DataArray | None:
    if mask is None:
        return None
    if not isinstance(mask, xr.DataArray):
        arr = np.asarray(mask)
        shape = tuple(like.sizes[d] for d in SPATIAL_DIMS)
        if arr.shape != shape:
            raise ValueError(f"mask shape {arr.shape} does not match the (lat, lon) shape {shape}")
        mask = xr.DataArray(
            arr, dims=SPATIAL_DIMS, coords={d: like[d] for d in SPATIAL_DIMS if d in like.coords}
        )
    if mask.dtype != bool:
        raise ValueError(f"mask must be boolean, got dtype {mask.dtype}")
    for d in SPATIAL_DIMS:
        # xarray would silently intersect mismatched coordinates; refuse instead.
        if (
            d in mask.coords
            and d in like.coords
            and not (
                mask.sizes[d] == like.sizes[d]
                and np.allclose(mask[d].values, like[d].values, atol=1e-6)
            )
        ):
            raise ValueError(
                f"mask {d} coordinates differ from the field's "
                f"({mask.sizes[d]} vs {like.sizes[d]} values)"
            )
    if not bool(mask.any()):
        raise ValueError("mask selects no grid points")
    return mask


def _weights(like: xr.DataArray, mask) -> xr.DataArray:
    """cos(lat) area weights (mean 1 over lat), zero outside ``mask``."""
    if "lat" not in like.dims:
        raise ValueError(f"expected a 'lat' dimension, got dims {like.dims}")
    w = np.cos(np.deg2rad(like["lat"].astype(np.float64)))
    w = w / w.mean()
    m = _as_mask(mask, like)
    if m is not None:
        w = w * m
    return w


def spatial_mean(
    field: xr.DataArray, *, mask=None, dims: Sequence[Hashable] = SPATIAL_DIMS
) -> xr.DataArray:
    """Area-weighted mean over ``dims``: ``sum_i w_i f_i / sum_i w_i``, ``w_i = cos(lat_i) mask_i``.

    Args:
      field: DataArray with dims including ``lat`` (and ``dims``).
      mask: optional boolean ``(lat, lon)`` DataArray or array; True = include.
      dims: dimensions to average over; ``()`` returns ``field`` (masked points NaN).

    Returns:
      DataArray without ``dims``.
    """
    dims = tuple(dims)
    if not dims:
        m = _as_mask(mask, field)
        return field if m is None else field.where(m)
    w = _weights(field, mask)
    if "lon" in field.dims and "lon" not in w.dims:
        w = w.broadcast_like(field["lon"])
    return field.weighted(w.fillna(0.0)).mean(dims)


def _stamp(da: xr.DataArray, name: str, units: str, long_name: str) -> xr.DataArray:
    return da.rename(name).assign_attrs(units=units, long_name=long_name)


# --------------------------------------------------------------------------------------
# Deterministic scores of the mean
# --------------------------------------------------------------------------------------


def rmse(forecast, truth: xr.DataArray, *, mask=None, dims=SPATIAL_DIMS) -> xr.DataArray:
    """Root mean squared error of the point forecast.

    ``RMSE = sqrt( sum_i w_i (m_i - y_i)^2 / sum_i w_i )`` with cos-latitude weights
    ``w_i`` over ``dims`` (WeatherBench 2, Rasp et al. 2024). Average MSE over times
    before taking the root if you want a pooled RMSE.

    Args:
      forecast: point field ``(..., lat, lon)``, an ensemble (its mean is used) or a
        posterior Dataset (its ``mean`` is used).
      truth: verifying field, same units (K).
      mask: optional boolean ``(lat, lon)``: points to include.
      dims: dimensions to average over.

    Returns:
      RMSE, K.
    """
    err2 = (_point(forecast) - truth) ** 2
    return _stamp(
        np.sqrt(spatial_mean(err2, mask=mask, dims=dims)),
        "rmse",
        "K",
        "root mean squared error of the mean",
    )


def bias(forecast, truth: xr.DataArray, *, mask=None, dims=SPATIAL_DIMS) -> xr.DataArray:
    """Mean error of the point forecast, ``sum_i w_i (m_i - y_i) / sum_i w_i`` (K).

    Arguments as for :func:`rmse`. Positive means the forecast is too warm.
    """
    err = _point(forecast) - truth
    return _stamp(spatial_mean(err, mask=mask, dims=dims), "bias", "K", "mean error of the mean")


# --------------------------------------------------------------------------------------
# Probabilistic scores
# --------------------------------------------------------------------------------------


def _crps_sorted(x: np.ndarray, y: np.ndarray, fair: bool) -> np.ndarray:
    """CRPS of members ``x [..., m]`` against ``y [...]`` in O(m log m) time, O(m) memory."""
    m = x.shape[-1]
    x = np.sort(x, axis=-1)
    skill = np.mean(np.abs(x - y[..., None]), axis=-1)
    # sum_{i,j} |x_i - x_j| = 2 sum_i (2i - m - 1) x_(i) for sorted x, i = 1..m
    coef = 2.0 * np.arange(1, m + 1) - m - 1
    pair_sum = 2.0 * np.sum(coef * x, axis=-1)
    denom = 2.0 * m * (m - 1) if fair else 2.0 * m * m
    return skill - pair_sum / denom


def crps_ensemble(
    ensemble, truth: xr.DataArray, *, fair: bool = True, mask=None, dims=SPATIAL_DIMS
) -> xr.DataArray:
    """Continuous ranked probability score of an ensemble (Gneiting & Raftery 2007, eq. 21).

    For members ``x_1..x_m`` and verifying value ``y``:

    ``CRPS = 1/m sum_i |x_i - y| - 1/(2 m^2) sum_{i,j} |x_i - x_j|``   (standard), or
    ``CRPS_fair = 1/m sum_i |x_i - y| - 1/(2 m (m-1)) sum_{i,j} |x_i - x_j|``  (fair).

    The fair version (default; Ferro 2014) is an unbiased estimator of the CRPS of the
    distribution the members are drawn from, so ensembles of different sizes compare
    fairly; the standard version is the CRPS of the empirical distribution. The double sum
    is computed from the sorted members, ``sum_{i,j}|x_i - x_j| = 2 sum_i (2i - m - 1)
    x_(i)``, in O(m log m) time and O(m) memory per point. Then averaged over ``dims``.
    Lower is better; for a point forecast it equals the absolute error.

    Args:
      ensemble: members with dims ``(sample, ...)`` or ``(chain, draw, ...)``, or a
        posterior Dataset (its ``anomaly``).
      truth: verifying field ``(..., lat, lon)``.
      fair: fair (unbiased) estimator if True, standard if False.
      mask: optional boolean ``(lat, lon)``: points to include.
      dims: dimensions to average over.

    Returns:
      CRPS, K.

    Raises:
      ValueError: fewer than 2 members with ``fair=True``.
    """
    ens = as_ensemble(ensemble)
    if fair and ens.sizes[SAMPLE_DIM] < 2:
        raise ValueError(f"the fair CRPS needs >= 2 members, got {ens.sizes[SAMPLE_DIM]}")
    ens, truth = xr.broadcast(ens, truth, exclude=[SAMPLE_DIM])
    pointwise = xr.apply_ufunc(
        _crps_sorted,
        ens.astype(np.float64),
        truth.astype(np.float64),
        input_core_dims=[[SAMPLE_DIM], []],
        kwargs={"fair": fair},
    )
    kind = "fair" if fair else "standard"
    return _stamp(
        spatial_mean(pointwise, mask=mask, dims=dims),
        "crps",
        "K",
        f"continuous ranked probability score ({kind} ensemble estimator)",
    )


def crps_gaussian(
    mean: xr.DataArray, sd: xr.DataArray, truth: xr.DataArray, *, mask=None, dims=SPATIAL_DIMS
) -> xr.DataArray:
    """Closed-form CRPS of a Gaussian forecast ``N(mu, sigma^2)`` (Gneiting & Raftery 2007, eq. 5).

    ``CRPS = sigma * ( z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi) )``, ``z = (y - mu)/sigma``,
    with ``Phi``, ``phi`` the standard normal CDF and density; for ``sigma = 0`` it is
    ``|y - mu|``. Then averaged over ``dims``.

    Args:
      mean: forecast mean ``(..., lat, lon)``, K.
      sd: forecast standard deviation (>= 0), K.
      truth: verifying field, K.
      mask: optional boolean ``(lat, lon)``: points to include.
      dims: dimensions to average over.

    Returns:
      CRPS, K.

    Raises:
      ValueError: ``sd`` has negative values.
    """
    if bool((sd < 0).any()):
        raise ValueError(f"sd must be >= 0, got min {float(sd.min())}")
    err = truth - mean
    safe = xr.where(sd > 0, sd, 1.0)
    z = err / safe
    crps = safe * (
        z * (2.0 * special.ndtr(z) - 1.0)
        + 2.0 * np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
        - 1.0 / np.sqrt(np.pi)
    )
    crps = xr.where(sd > 0, crps, np.abs(err))
    return _stamp(
        spatial_mean(crps, mask=mask, dims=dims),
        "crps",
        "K",
        "continuous ranked probability score (Gaussian, closed form)",
    )


def spread_skill(ensemble, truth: xr.DataArray, *, mask=None, dims=SPATIAL_DIMS) -> xr.Dataset:
    """Ensemble spread, RMSE of the ensemble mean, and their finite-ensemble-corrected ratio.

    ``spread = sqrt( mean_w( s^2 ) )`` with ``s^2`` the unbiased (ddof=1) member variance
    at each point (the root of the mean variance, not the mean SD), and ``skill`` the
    RMSE of the ensemble mean over the same points. If the truth is statistically
    indistinguishable from an ``m``-member ensemble, ``E[(xbar - y)^2] = (1 + 1/m) E[s^2]``
    (Fortin et al. 2014), so the ratio is reported as

    ``ratio = sqrt((m + 1) / m) * spread / skill``,

    which is 1 for a calibrated ensemble of any size; < 1 is under-dispersed
    (over-confident), > 1 over-dispersed. For MCMC draws, which are correlated, ``m`` is
    the number of draws; the correction is then negligible (< 0.2% for m >= 300).

    Args:
      ensemble: members ``(sample, ...)`` / ``(chain, draw, ...)``, or a posterior Dataset.
      truth: verifying field.
      mask: optional boolean ``(lat, lon)``: points to include.
      dims: dimensions to average over.

    Returns:
      Dataset with ``spread`` (K), ``skill`` (K) and ``ratio`` (1).
    """
    ens = as_ensemble(ensemble)
    m = ens.sizes[SAMPLE_DIM]
    if m < 2:
        raise ValueError(f"spread needs >= 2 members, got {m}")
    var = ens.var(SAMPLE_DIM, ddof=1).where(truth.notnull())  # the points skill can score
    spread = np.sqrt(spatial_mean(var, mask=mask, dims=dims))
    skill = rmse(ens.mean(SAMPLE_DIM), truth, mask=mask, dims=dims)
    ratio = np.sqrt((m + 1) / m) * spread / skill
    return xr.Dataset(
        {
            "spread": _stamp(spread, "spread", "K", "root mean ensemble variance"),
            "skill": _stamp(skill, "skill", "K", "root mean squared error of the ensemble mean"),
            "ratio": _stamp(ratio, "ratio", "1", "spread/skill ratio, finite-ensemble corrected"),
        },
        attrs={"n_members": m},
    )


def _levels(level) -> tuple[np.ndarray, bool]:
    lv = np.atleast_1d(np.asarray(level, dtype=np.float64))
    if lv.ndim != 1 or np.any((lv <= 0) | (lv >= 1)):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return lv, np.ndim(level) == 0


def coverage(
    ensemble, truth: xr.DataArray, level=0.9, *, mask=None, dims=SPATIAL_DIMS
) -> xr.DataArray:
    """Empirical coverage of central ensemble intervals.

    At each point, the central ``level`` interval is ``[q_(1-level)/2, q_(1+level)/2]``
    of the members (linear-interpolated sample quantiles, ``numpy.quantile``'s default);
    the coverage is the area-weighted fraction of points whose truth lies inside (edges
    included); points where the truth is NaN are skipped, as in :func:`rmse`. A
    calibrated forecast covers ``level`` in expectation; with ``n``
    independent points the binomial standard error is ``sqrt(level (1 - level) / n)``
    (spatially correlated errors make the effective ``n`` smaller). Small ensembles
    under-cover even when calibrated: with ``m`` exchangeable members the truth falls
    between order statistics ``k`` and ``m + 1 - k`` with probability
    ``(m + 1 - 2k) / (m + 1)``, so e.g. 10 members cannot show 90% coverage reliably;
    prefer :func:`rank_histogram` for them.

    Args:
      ensemble: members, or a posterior Dataset.
      truth: verifying field.
      level: nominal level in (0, 1), or a sequence of levels (adds dim ``level``).
      mask: optional boolean ``(lat, lon)``: points to include.
      dims: dimensions to average over.

    Returns:
      Coverage fraction in [0, 1].
    """
    lv, scalar = _levels(level)
    ens = as_ensemble(ensemble)
    q = np.concatenate([(1 - lv) / 2, (1 + lv) / 2])
    bounds = ens.quantile(q, dim=SAMPLE_DIM, skipna=False).drop_vars("quantile")
    lo = bounds.isel(quantile=slice(0, lv.size)).rename(quantile=LEVEL_DIM)
    hi = bounds.isel(quantile=slice(lv.size, None)).rename(quantile=LEVEL_DIM)
    inside = ((truth >= lo) & (truth <= hi)).astype(np.float64).assign_coords({LEVEL_DIM: lv})
    inside = inside.where(truth.notnull())  # unknown truth: skipped, as in rmse and crps
    cov = spatial_mean(inside, mask=mask, dims=dims)
    if scalar:
        cov = cov.squeeze(LEVEL_DIM, drop=True)
    return _stamp(cov, "coverage", "1", "fraction of truth inside the central interval")


def coverage_gaussian(
    mean: xr.DataArray,
    sd: xr.DataArray,
    truth: xr.DataArray,
    level=0.9,
    *,
    mask=None,
    dims=SPATIAL_DIMS,
) -> xr.DataArray:
    """Coverage of central Gaussian intervals ``mu +- Phi^-1((1 + level)/2) sigma``.

    Same conventions as :func:`coverage`, for a forecast given by its mean and SD.
    """
    lv, scalar = _levels(level)
    k = xr.DataArray(stats.norm.ppf((1 + lv) / 2), dims=LEVEL_DIM, coords={LEVEL_DIM: lv})
    inside = (np.abs(truth - mean) <= k * sd).astype(np.float64).where(truth.notnull())
    cov = spatial_mean(inside, mask=mask, dims=dims)
    if scalar:
        cov = cov.squeeze(LEVEL_DIM, drop=True)
    return _stamp(cov, "coverage", "1", "fraction of truth inside the central Gaussian interval")


def rank_histogram(
    ensemble, truth: xr.DataArray, *, n_bins: int | None = None, mask=None, seed: int = 0
) -> xr.DataArray:
    """Area-weighted rank histogram (Talagrand diagram; Hamill 2001).

    The rank of the truth among ``m`` members is ``#{x_i < y}`` plus, for ties, a uniform
    draw from ``0..#{x_i = y}`` (random tie-breaking, so repeated MCMC draws or a point
    forecast equal to the truth do not bias the histogram). Ranks ``0..m`` are pooled over
    all non-member dimensions (points, times), weighted by cos(latitude) within ``mask``,
    optionally grouped into ``n_bins`` equal-width bins of rank/(m+1), and normalised to
    frequencies. A calibrated ensemble gives a flat histogram (each bin ~ 1/n_bins); a
    U shape means under-dispersion, a dome over-dispersion, a slope bias.

    Args:
      ensemble: members, or a posterior Dataset.
      truth: verifying field ``(..., lat, lon)``.
      n_bins: number of bins (default ``m + 1``, one per rank); at most ``m + 1``.
      mask: optional boolean ``(lat, lon)``: points to include.
      seed: seed for tie-breaking.

    Returns:
      DataArray ``(rank,)`` of frequencies summing to 1; coordinate ``rank`` is the bin's
      lower rank.
    """
    ens = as_ensemble(ensemble)
    m = ens.sizes[SAMPLE_DIM]
    n_bins = m + 1 if n_bins is None else int(n_bins)
    if not 1 <= n_bins <= m + 1:
        raise ValueError(f"n_bins must be in [1, {m + 1}], got {n_bins}")
    ens, truth = xr.broadcast(ens, truth, exclude=[SAMPLE_DIM])
    below = (ens < truth).sum(SAMPLE_DIM)
    ties = (ens == truth).sum(SAMPLE_DIM)
    rng = np.random.default_rng(seed)
    rank = below.values + np.floor(rng.random(ties.shape) * (ties.values + 1)).astype(np.int64)
    w = _weights(below, mask).broadcast_like(below).transpose(*below.dims).values
    w = np.where(truth.broadcast_like(below).transpose(*below.dims).notnull().values, w, 0.0)
    bins = (rank * n_bins) // (m + 1)
    freq = np.bincount(bins.ravel(), weights=w.ravel(), minlength=n_bins)
    freq = freq / freq.sum()
    lower = np.ceil(np.arange(n_bins) * (m + 1) / n_bins).astype(np.int64)
    out = xr.DataArray(freq, dims="rank", coords={"rank": lower})
    return _stamp(out, "rank_histogram", "1", "area-weighted frequency of the truth's rank")


# --------------------------------------------------------------------------------------
# Observed / unobserved points and a one-call summary
# --------------------------------------------------------------------------------------


def observed_mask(grid: Grid, obs: pd.DataFrame) -> xr.DataArray:
    """Boolean ``(lat, lon)`` mask of the grid nodes nearest to an observation.

    Convention: an observation "observes" only its nearest grid node (largest bilinear
    weight, :func:`bayesda.obs.operator.nearest_index`), not all four stencil nodes, so that
    "unobserved" means "no observation at this grid point" even for dense networks.

    Args:
      grid: the analysis grid.
      obs: DataFrame with columns ``lat``, ``lon`` (degrees).

    Returns:
      DataArray ``(lat, lon)``, True where a grid node is nearest to >= 1 observation.
    """
    missing = {"lat", "lon"} - set(obs.columns)
    if missing:
        raise ValueError(f"obs is missing columns {sorted(missing)}; has {list(obs.columns)}")
    flat = np.zeros(grid.size, dtype=bool)
    if len(obs):
        flat[nearest_index(grid, obs["lat"].to_numpy(), obs["lon"].to_numpy())] = True
    return xr.DataArray(
        flat.reshape(grid.shape),
        dims=SPATIAL_DIMS,
        coords=grid.coords(),
        name="observed",
        attrs={"long_name": "grid node nearest to an observation"},
    )


def verify(
    posterior: xr.Dataset,
    truth: xr.DataArray,
    obs: pd.DataFrame,
    *,
    levels: Sequence[float] = (0.5, 0.9),
) -> xr.Dataset:
    """All headline scores of one analysis, at unobserved points and at all points.

    RMSE and bias use the posterior's ``mean`` (exact for Gaussian baselines); CRPS (fair),
    spread/skill and interval coverage use the ``anomaly`` members, so every method is
    scored by the same estimators.

    Args:
      posterior: Dataset with ``anomaly`` members ``(chain, draw, lat, lon)`` (or
        ``(sample, lat, lon)``) and optionally ``mean`` ``(lat, lon)``, K.
      truth: verifying anomaly ``(lat, lon)``, K.
      obs: the assimilated observations (``lat``, ``lon`` columns).
      levels: nominal central-interval levels for coverage.

    Returns:
      Dataset over dim ``region`` = ``["unobserved", "all"]`` with ``rmse``, ``bias``,
      ``crps``, ``spread``, ``spread_skill`` and ``coverage_<pct>`` per level (e.g.
      ``coverage_90``).

    Raises:
      ValueError: no grid point is unobserved.
    """
    grid = Grid.from_xarray(truth)
    observed = observed_mask(grid, obs)
    ens = as_ensemble(posterior)
    point = _point(posterior)
    regions = {"unobserved": ~observed, "all": None}
    # Pointwise fields once (the sort and quantiles are the costly part), then one
    # weighted mean per region.
    crps_pt = crps_ensemble(ens, truth, dims=())
    inside = coverage(ens, truth, list(levels), dims=())
    rows = []
    for mask in regions.values():
        ss = spread_skill(ens, truth, mask=mask)
        scores = {
            "rmse": rmse(point, truth, mask=mask),
            "bias": bias(point, truth, mask=mask),
            "crps": spatial_mean(crps_pt, mask=mask).assign_attrs(crps_pt.attrs),
            "spread": ss["spread"],
            "spread_skill": ss["ratio"],
        }
        cov = spatial_mean(inside, mask=mask)
        for lv in levels:
            name = f"coverage_{round(100 * lv):d}"
            scores[name] = (
                cov.sel({LEVEL_DIM: lv})
                .drop_vars(LEVEL_DIM)
                .assign_attrs(units="1", long_name=f"{round(100 * lv)}% central interval coverage")
            )
        rows.append(xr.Dataset(scores))
    out = xr.concat(rows, dim="region").assign_coords(region=np.array(list(regions), dtype=str))
    out.attrs.update(
        n_obs=len(obs), n_members=ens.sizes[SAMPLE_DIM], n_observed_points=int(observed.sum())
    )
    return out
