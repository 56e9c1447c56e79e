"""Representation error: what the decoder cannot represent, as a Gaussian field.

The truth ``x`` is modelled as ``x = g(z) + r`` with ``r ~ N(0, C)`` independent of ``z``
and ``C = F^T F + diag(d)`` over the raveled ``(lat, lon)`` pixels: a low-rank part ``F``
(``[rank, nlat, nlon]``) for the large-scale, spatially correlated error and a diagonal
``d`` for the rest. Both are in K (K^2 for ``d``). They are estimated from the decoder's
residuals on held-out fields and stored with the model.

Two ways to build ``C``:

* :func:`estimate`: the top principal directions of the residuals themselves (empirical;
  ``rank=0`` keeps only the per-pixel variance).
* :func:`stationary`: a parametric ``C = S K S``, ``S = diag(sd)`` the per-pixel residual SD
  and ``K`` an isotropic correlation in chordal distance on the sphere
  (:func:`bayesda.geo.kernels.correlation`) with one length scale, fitted to the residuals'
  empirical correlation-vs-distance or by maximum likelihood (:func:`fit_length_scale`).
  Its top eigenvectors form ``F`` and the rest of each pixel's variance goes on the
  diagonal, so the marginal variance is ``sd^2`` exactly and only correlation carried by the
  dropped eigenvectors is lost. The parameters are kept in ``spec`` so a model stores them
  instead of the factor (:mod:`bayesda.prior.checkpoint`) and rebuilds it at load (one ``eigh``
  of ``[npix, npix]``: about 1 s for the 1325-pixel NCEP grid).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.optimize

from bayesda.obs.operator import Stencil, as_sparse, interpolate
from bayesda.runtime.threads import single_blas

__all__ = [
    "RepresentationError",
    "StationarySpec",
    "captured_fraction",
    "empirical_correlogram",
    "estimate",
    "fit_length_scale",
    "from_residuals",
    "homogeneous",
    "from_power",
    "HomogeneousSpec",
    "stationary",
    "stationary_cached",
    "stationary_loglik",
    "zero_error",
]


class StationarySpec(NamedTuple):
    """Parameters that rebuild a :func:`stationary` representation error on a grid.

    Attributes:
      sd: ``[nlat, nlon]`` marginal SD, K.
      length_scale_km: correlation length scale, km.
      kind: correlation family (``"matern32"`` or ``"sqexp"``).
      rank: number of eigenvectors in the factor.
      distance: ``"chordal"`` or ``"great_circle"``.
    """

    sd: np.ndarray
    length_scale_km: float
    kind: str
    rank: int
    distance: str = "chordal"


class HomogeneousSpec(NamedTuple):
    """Parameters that rebuild a :func:`homogeneous` representation error.

    Attributes:
      power: ``[ny, nx]`` eigenvalues of the circulant ``C`` (the residuals' power
        spectrum over the number of pixels), K^2.
      rank: number of rows in the factor.
    """

    power: np.ndarray
    rank: int


class RepresentationError(NamedTuple):
    """Covariance ``C = F^T F + diag(d)`` of the representation error.

    Attributes:
      factor: ``[rank, nlat, nlon]`` low-rank factor ``F``, K (rank may be 0).
      diag_var: ``[nlat, nlon]`` diagonal ``d``, K^2.
      spec: the parameters when built by :func:`stationary` or :func:`homogeneous` (else
        None).
    """

    factor: np.ndarray
    diag_var: np.ndarray
    spec: StationarySpec | HomogeneousSpec | None = None

    @property
    def variance(self) -> np.ndarray:
        """``[nlat, nlon]`` marginal variance, K^2."""
        return self.diag_var + np.sum(np.square(self.factor), axis=0)

    @property
    def sd(self) -> np.ndarray:
        """``[nlat, nlon]`` marginal standard deviation, K."""
        return np.sqrt(self.variance)

    @property
    def rank(self) -> int:
        return int(self.factor.shape[0])

    def at_obs(self, stencil: Stencil) -> tuple[np.ndarray, np.ndarray]:
        """Covariance of ``H r`` as ``(factor [n, rank], diag [n])``: ``H C H^T = A A^T + D``.

        The diagonal part is exact for the marginal variances of each observation; the
        covariance it induces between two observations that share a grid node is dropped
        (it is at most a few percent of ``D`` for typical stencils). When the rank exceeds
        the number of observations, the factor is replaced by an ``[n, n]`` one with the same
        ``A A^T`` (so a likelihood costs ``O(n^3)``, not ``O(rank^3)``).
        """
        if self.rank == 0:
            factor = np.zeros((stencil.n, 0))
        else:
            factor = np.asarray(interpolate(self.factor, stencil)).T.reshape(stencil.n, self.rank)
            if self.rank > stencil.n:
                factor = factor.astype(np.float64)
                w, v = np.linalg.eigh(factor @ factor.T)
                factor = v * np.sqrt(np.clip(w, 0.0, None))
        return factor.astype(np.float32), self.diag_at_obs(stencil)

    def diag_at_obs(self, stencil: Stencil) -> np.ndarray:
        """The diagonal ``D`` of :meth:`at_obs` alone, ``[n]``, K^2 (float32; cheap)."""
        d = self.diag_var.reshape(-1)[stencil.idx]
        return np.sum(np.square(stencil.weight) * d, axis=-1).astype(np.float32)

    def covariance_at_obs(self, stencil: Stencil) -> np.ndarray:
        """``H C H^T`` exactly, ``[n, n]``, K^2 (float64).

        Includes the covariance that the diagonal part induces between observations sharing
        a grid node, which :meth:`at_obs` drops.
        """
        npix = int(np.prod(self.diag_var.shape))
        F = np.asarray(self.factor, np.float64).reshape(self.rank, npix)
        d = np.asarray(self.diag_var, np.float64).reshape(npix)
        H = as_sparse(stencil, npix)
        A = np.asarray(H @ F.T)
        return A @ A.T + (H.multiply(d[None, :]) @ H.T).toarray()

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``[n, nlat, nlon]`` draws of ``r``."""
        shape = self.diag_var.shape
        low = np.einsum("nk,kij->nij", rng.standard_normal((n, self.rank)), self.factor)
        return low + np.sqrt(self.diag_var) * rng.standard_normal((n, *shape))


def zero_error(shape: tuple[int, int]) -> RepresentationError:
    """No representation error (a decoder that can represent every field exactly)."""
    return RepresentationError(np.zeros((0, *shape), np.float32), np.zeros(shape, np.float32))


def estimate(residuals: np.ndarray, rank: int = 16) -> RepresentationError:
    """Estimate ``C`` from residuals ``x - g(z*)`` of held-out fields.

    Uses the raw (uncentred) second moment, so a systematic bias counts as error. The top
    ``rank`` principal directions form ``F``; the diagonal takes the rest of each pixel's
    second moment, so the marginal variances equal the residuals' mean squares exactly.

    Args:
      residuals: ``[n, nlat, nlon]`` residual fields, K.
      rank: number of low-rank components (clipped to ``n``).

    Returns:
      The estimated :class:`RepresentationError`.
    """
    r = np.asarray(residuals, dtype=np.float64)
    if r.ndim != 3 or r.shape[0] < 2:
        raise ValueError(f"residuals must be [n>=2, nlat, nlon], got {r.shape}")
    n, nlat, nlon = r.shape
    flat = r.reshape(n, -1) / np.sqrt(n)
    rank = int(min(rank, n))
    _, s, vt = np.linalg.svd(flat, full_matrices=False)
    factor = (s[:rank, None] * vt[:rank]).reshape(rank, nlat, nlon)
    msq = np.sum(flat**2, axis=0).reshape(nlat, nlon)
    diag = np.maximum(msq - np.sum(factor**2, axis=0), 0.0)
    return RepresentationError(factor.astype(np.float32), diag.astype(np.float32))


def homogeneous(
    residuals: np.ndarray,
    *,
    var_fraction: float = 0.99,
    max_rank: int = 400,
    rank: int | None = None,
) -> RepresentationError:
    """A homogeneous ``C`` on a doubly periodic grid, from the residuals' power spectrum.

    For fields that are statistically homogeneous on a domain periodic in both directions
    (a doubly periodic simulation such as :mod:`bayesda.sim.qg`), ``C`` is circulant: its
    eigenvectors are the Fourier modes and its eigenvalues the power spectrum
    ``P(k) = mean |FFT(r)(k)|^2 / npix``, averaged over fields *and* translations. So it is
    estimated from ``n * npix`` numbers, not ``n`` fields, without the spurious long-range
    correlations of a sample covariance (:func:`estimate`) and without assuming isotropy or
    a distance on the sphere (:func:`stationary`): an anisotropic spectrum is kept as it is.

    The factor holds the real (cos, sin) Fourier modes of the largest ``P(k)``, conjugate
    pairs kept together, up to ``var_fraction`` of the trace or ``max_rank`` rows; the
    diagonal takes the rest of the (uniform) marginal variance. Not for regional grids or
    grids periodic in longitude only: the circulant form would wrap correlation across the
    edges.

    Args:
      residuals: ``[n, ny, nx]`` residual fields on a doubly periodic grid.
      var_fraction, max_rank: truncation, as in :func:`stationary`.
      rank: keep the modes of the first ``rank`` factor rows instead (overrides both).

    Returns:
      The :class:`RepresentationError`, with ``spec`` (a :class:`HomogeneousSpec`) set to
      rebuild it (:func:`from_power`).
    """
    r = np.asarray(residuals, np.float64)
    if r.ndim != 3 or r.shape[0] < 1:
        raise ValueError(f"residuals must be [n>=1, ny, nx], got {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("residuals contain NaN or inf")
    power = np.mean(np.abs(np.fft.fft2(r)) ** 2, axis=0) / (r.shape[1] * r.shape[2])
    power = power.astype(np.float32)  # as stored, so that a reload picks the same modes
    return from_power(power, var_fraction=var_fraction, max_rank=max_rank, rank=rank)


def from_power(
    power: np.ndarray,
    *,
    var_fraction: float = 0.99,
    max_rank: int = 400,
    rank: int | None = None,
) -> RepresentationError:
    """The circulant ``C`` with eigenvalues ``power`` (``[ny, nx]``, K^2), truncated as in
    :func:`homogeneous` (which estimates ``power``)."""
    power = np.asarray(power, np.float64)
    if power.ndim != 2 or not np.all(np.isfinite(power)) or np.any(power < 0):
        raise ValueError(f"power must be a finite [ny, nx] array >= 0, got shape {power.shape}")
    if not 0.0 < var_fraction <= 1.0:
        raise ValueError(f"{var_fraction=} must be in (0, 1]")
    ny, nx = power.shape
    npix = ny * nx
    ky, kx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    # one representative per conjugate pair {k, -k}; self-conjugate modes have one real mode
    partner = ((-ky) % ny) * nx + (-kx) % nx
    flat = ky * nx + kx
    keep = flat <= partner
    self_conj = (flat == partner)[keep]
    lam, kyk, kxk = power[keep], ky[keep], kx[keep]
    order = np.argsort(-lam, kind="stable")
    dims = np.where(self_conj[order], 1, 2)
    if rank is None:
        frac = np.cumsum(lam[order] * dims) / max(float(np.sum(power)), np.finfo(float).tiny)
        n_modes = min(
            int(np.searchsorted(frac, var_fraction)) + 1,  # fewest modes reaching var_fraction
            int(np.searchsorted(np.cumsum(dims), max_rank, side="right")),  # <= max_rank rows
        )
    else:
        n_modes = int(np.searchsorted(np.cumsum(dims), max(rank, 0), side="right"))
    y, x = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    rows = []
    for j in order[:n_modes]:
        phase = 2.0 * np.pi * (kyk[j] * y / ny + kxk[j] * x / nx)
        if self_conj[j]:
            rows.append(np.sqrt(lam[j] / npix) * np.cos(phase))
        else:
            rows += [np.sqrt(2.0 * lam[j] / npix) * f(phase) for f in (np.cos, np.sin)]
    factor = np.asarray(rows).reshape(len(rows), ny, nx) if rows else np.zeros((0, ny, nx))
    variance = float(np.sum(power)) / npix  # = mean square of the residuals
    diag = np.maximum(variance - np.sum(factor**2, axis=0), 0.0)
    spec = HomogeneousSpec(power.astype(np.float32), len(rows))
    return RepresentationError(factor.astype(np.float32), diag.astype(np.float32), spec)


def _correlation_matrix(grid, length_scale_km: float, kind: str, distance: str) -> np.ndarray:
    """``[npix, npix]`` isotropic correlation between the grid's nodes (float64)."""
    from bayesda.geo.kernels import correlation, pairwise_distance_km

    return correlation(pairwise_distance_km(grid, distance), length_scale_km, kind)


@single_blas  # eigh of [npix, npix]: 0.47 s idle either way, 23 s vs 1.7 s under load
def stationary(
    sd: np.ndarray,
    grid,
    length_scale_km: float,
    kind: str = "matern32",
    *,
    var_fraction: float = 0.99,
    max_rank: int = 400,
    rank: int | None = None,
    distance: str = "chordal",
) -> RepresentationError:
    """A stationary-correlation representation error ``C = S K S`` in low-rank-plus-diagonal form.

    ``K_ij = rho(|p_i - p_j|)`` with ``rho`` :func:`bayesda.geo.kernels.correlation` at the
    chordal distance (positive definite on the sphere), ``S = diag(sd)``. The factor ``F``
    holds the top eigenvectors of ``S K S`` (scaled by the square roots of their
    eigenvalues); the diagonal is ``sd^2`` minus the factor's share of each pixel, so
    ``variance == sd^2`` (to float32 rounding) and the truncation only drops correlation.

    Args:
      sd: ``[nlat, nlon]`` marginal SD, K, >= 0.
      grid: the :class:`bayesda.geo.grid.Grid` of ``sd``.
      length_scale_km: correlation length scale, km, > 0.
      kind: ``"matern32"`` or ``"sqexp"``.
      var_fraction: keep the fewest eigenvectors whose eigenvalues sum to at least this
        fraction of ``trace(C)``, ...
      max_rank: ... but at most this many.
      rank: use exactly this many eigenvectors instead (overrides the two above).
      distance: ``"chordal"`` (default) or ``"great_circle"``.

    Returns:
      The :class:`RepresentationError`, with ``spec`` set to rebuild it.
    """
    sd = np.asarray(sd, np.float64)
    if sd.shape != grid.shape or not np.all(np.isfinite(sd)) or np.any(sd < 0):
        raise ValueError(f"sd must be finite, >= 0, with shape {grid.shape}; got {sd.shape}")
    if not 0.0 < var_fraction <= 1.0:
        raise ValueError(f"{var_fraction=} must be in (0, 1]")
    s = sd.reshape(-1)
    cov = _correlation_matrix(grid, length_scale_km, kind, distance) * np.outer(s, s)
    w, v = scipy.linalg.eigh(cov)
    w, v = np.clip(w[::-1], 0.0, None), v[:, ::-1]
    if rank is None:
        frac = np.cumsum(w) / max(float(np.sum(s**2)), np.finfo(float).tiny)
        rank = int(min(np.searchsorted(frac, var_fraction) + 1, max_rank))
    rank = int(min(max(rank, 0), s.size))
    factor = (np.sqrt(w[:rank]) * v[:, :rank]).T.reshape(rank, *grid.shape)
    diag = np.maximum(s**2 - np.sum(factor.reshape(rank, -1) ** 2, axis=0), 0.0)
    spec = StationarySpec(sd.astype(np.float32), float(length_scale_km), kind, rank, distance)
    return RepresentationError(
        factor.astype(np.float32), diag.reshape(grid.shape).astype(np.float32), spec
    )


def stationary_cached(
    sd: np.ndarray,
    grid,
    length_scale_km: float,
    kind: str = "matern32",
    *,
    rank: int,
    distance: str = "chordal",
) -> RepresentationError:
    """:func:`stationary` with a given rank, its result kept in bayesda's disk cache.

    A model's ``repr_error.npz`` stores the parameters of ``C``, not its factor, so every
    model load rebuilt the factor: for the shipped NCEP model an ``eigh`` of 1325 x 1325,
    0.5 s of each new process. The result is a fixed function of the inputs, so it is
    cached (:func:`bayesda.runtime.diskcache.cached_arrays`) under a key of the SD field, the grid,
    the parameters, the numpy and scipy versions and the source of this module and
    :mod:`bayesda.geo.kernels` (any change of the algorithm recomputes). Same arrays as
    :func:`stationary`, bit for bit.
    """
    import hashlib
    from pathlib import Path

    import bayesda.geo.kernels as kernels
    from bayesda.runtime.diskcache import cached_arrays

    sd64 = np.asarray(sd, np.float64)
    rank = int(min(max(int(rank), 0), sd64.size))
    h = hashlib.sha256()
    for a in (sd64, np.asarray(grid.lat, np.float64), np.asarray(grid.lon, np.float64)):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    for module_file in (__file__, kernels.__file__):
        h.update(Path(module_file).read_bytes())
    key = {
        "inputs": h.hexdigest(),
        "length_scale_km": float(length_scale_km),
        "kind": str(kind),
        "rank": rank,
        "distance": str(distance),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }

    def compute() -> dict:
        rep = stationary(sd64, grid, length_scale_km, kind, rank=rank, distance=distance)
        return {"factor": rep.factor, "diag_var": rep.diag_var}

    arrays = cached_arrays("stationary_repr_error", key, compute)
    factor, diag = arrays["factor"], arrays["diag_var"]
    if factor.shape != (rank, *grid.shape) or diag.shape != grid.shape:  # not what was stored
        return stationary(sd64, grid, length_scale_km, kind, rank=rank, distance=distance)
    spec = StationarySpec(sd64.astype(np.float32), float(length_scale_km), kind, rank, distance)
    return RepresentationError(factor, diag, spec)


def captured_fraction(rep: RepresentationError) -> float:
    """Share of ``trace(C)`` held by the low-rank factor (0 for a diagonal-only ``C``)."""
    total = float(np.sum(rep.variance, dtype=np.float64))
    return float(np.sum(np.square(rep.factor, dtype=np.float64)) / total) if total > 0 else 0.0


def stationary_loglik(
    residuals: np.ndarray,
    grid,
    length_scale_km: float,
    kind: str = "matern32",
    *,
    sd: np.ndarray | None = None,
    distance: str = "chordal",
) -> float:
    """Gaussian log-likelihood per field of residuals under ``C = S K S`` (full rank).

    Args:
      residuals: ``[n, nlat, nlon]`` residual fields, K (treated as independent draws).
      sd: ``[nlat, nlon]`` marginal SD, K (default: the residuals' root mean square).

    Returns:
      ``mean_t log N(r_t; 0, C)`` in nats per field.
    """
    r = np.asarray(residuals, np.float64).reshape(len(residuals), -1)
    s = np.sqrt(np.mean(r**2, axis=0)) if sd is None else np.asarray(sd, np.float64).reshape(-1)
    corr = _correlation_matrix(grid, length_scale_km, kind, distance)
    corr[np.diag_indices_from(corr)] += 1e-8
    chol = scipy.linalg.cholesky(corr, lower=True)
    u = scipy.linalg.solve_triangular(chol, (r / s).T, lower=True)  # [npix, n]
    logdet = 2.0 * np.sum(np.log(np.diag(chol))) + 2.0 * np.sum(np.log(s))
    return float(-0.5 * (np.mean(np.sum(u**2, axis=0)) + logdet + s.size * np.log(2 * np.pi)))


def empirical_correlogram(
    residuals: np.ndarray,
    grid,
    *,
    max_km: float = 1500.0,
    bin_km: float = 100.0,
    distance: str = "chordal",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean empirical correlation of residuals by distance bin.

    Correlations are uncentred (``E[r_i r_j] / (s_i s_j)`` with ``s`` the root mean square,
    as in :func:`estimate`), averaged over all pixel pairs in each bin ``(a, a + bin_km]``.

    Returns:
      ``(edges [b + 1] km, corr [b], pairs [b], pair_bin [npix, npix])``; ``pair_bin`` is
      the bin of each pair (``-1`` outside), for averaging a model over the same pairs.
    """
    from bayesda.geo.kernels import pairwise_distance_km

    r = np.asarray(residuals, np.float64).reshape(len(residuals), -1)
    u = r / np.sqrt(np.mean(r**2, axis=0))
    corr = u.T @ u / len(u)
    dist = pairwise_distance_km(grid, distance)
    edges = np.arange(0.0, max_km + bin_km, bin_km)
    pair_bin = np.digitize(dist, edges, right=True) - 1
    pair_bin[dist > edges[-1]] = -1
    np.fill_diagonal(pair_bin, -1)  # a pixel with itself (distance 0 up to rounding)
    nb = len(edges) - 1
    pairs = np.bincount(pair_bin[pair_bin >= 0], minlength=nb)
    sums = np.bincount(pair_bin[pair_bin >= 0], weights=corr[pair_bin >= 0], minlength=nb)
    return edges, sums / np.maximum(pairs, 1), pairs, pair_bin


def fit_length_scale(
    residuals: np.ndarray,
    grid,
    kind: str = "matern32",
    *,
    method: str = "correlogram",
    bounds_km: tuple[float, float] = (50.0, 5000.0),
    n_grid: int = 25,
    max_km: float = 1500.0,
    distance: str = "chordal",
) -> tuple[float, dict]:
    """Fit the length scale of ``C = S K S`` to residual fields.

    ``S`` is fixed at the residuals' per-pixel root mean square (uncentred, as in
    :func:`estimate`), so only the correlation's length scale is fitted, by one of:

    * ``"correlogram"`` (default): least squares between the empirical and the model mean
      correlation in 100 km distance bins up to ``max_km`` (bins weighted equally; the model
      averaged over the same pixel pairs). This targets the correlation at the distances
      between neighbouring observations, which is what assimilation uses.
    * ``"likelihood"``: maximum Gaussian likelihood of the fields
      (:func:`stationary_loglik`). With a misspecified family the likelihood is dominated
      by the fields' smoothness at the grid scale, and on the NCEP decoder residuals it
      gives a length scale about twice the correlogram's (correlation 0.72 where the
      residuals have 0.38 at 300 km).

    Either way the objective is evaluated on a log-spaced grid over ``bounds_km`` and the
    best cell refined by a bounded 1-D search in ``log L``. Fields are treated as
    independent draws (serial correlation does not bias the estimate, it only makes it less
    precise than it looks).

    Returns:
      ``(length_scale_km, info)``; ``info`` has ``method``, ``grid_km`` and ``objective``
      (log-likelihood per field, or minus the sum of squared correlation errors) on the grid,
      ``objective_best``, and for the correlogram ``edges_km``, ``empirical`` and ``model``.
    """
    from bayesda.geo.kernels import correlation

    r = np.asarray(residuals, np.float64)
    if r.ndim != 3 or r.shape[1:] != grid.shape or r.shape[0] < 2:
        raise ValueError(f"residuals must be [n>=2, *{grid.shape}], got {r.shape}")
    sd = np.sqrt(np.mean(r**2, axis=0))
    if np.any(sd <= 0):
        raise ValueError("a pixel has zero residual; its SD cannot be 0")
    info: dict = {"method": method}
    if method == "likelihood":

        def objective(log_l):
            return stationary_loglik(r, grid, float(np.exp(log_l)), kind, sd=sd, distance=distance)
    elif method == "correlogram":
        edges, emp, pairs, pair_bin = empirical_correlogram(
            r, grid, max_km=max_km, distance=distance
        )
        from bayesda.geo.kernels import pairwise_distance_km

        dist = pairwise_distance_km(grid, distance)
        sel = pair_bin >= 0
        d_sel, b_sel = dist[sel], pair_bin[sel]
        used = pairs > 0

        def model_bins(length):
            sums = np.bincount(
                b_sel, weights=correlation(d_sel, length, kind), minlength=len(pairs)
            )
            return sums / np.maximum(pairs, 1)

        def objective(log_l):
            return -float(np.sum((model_bins(float(np.exp(log_l))) - emp)[used] ** 2))
    else:
        raise ValueError(f"method={method!r}; expected 'correlogram' or 'likelihood'")

    logs = np.linspace(np.log(bounds_km[0]), np.log(bounds_km[1]), n_grid)
    vals = np.array([objective(x) for x in logs])
    i = int(np.argmax(vals))
    lo, hi = logs[max(i - 1, 0)], logs[min(i + 1, n_grid - 1)]
    opt = scipy.optimize.minimize_scalar(
        lambda x: -objective(x), bounds=(lo, hi), method="bounded", options={"xatol": 1e-3}
    )
    best, best_val = (float(opt.x), -float(opt.fun)) if -opt.fun >= vals[i] else (logs[i], vals[i])
    length = float(np.exp(best))
    info.update(
        grid_km=[round(float(np.exp(x)), 1) for x in logs],
        objective=[float(v) for v in vals],
        objective_best=float(best_val),
    )
    if method == "correlogram":
        info.update(
            edges_km=edges.tolist(), empirical=emp.tolist(), model=model_bins(length).tolist()
        )
    return length, info


def check_structure(structure: str) -> str:
    """Check a :func:`from_residuals` structure name without estimating anything.

    Returns:
      The stripped name.

    Raises:
      ValueError: an unknown structure or a bad ``@LENGTH_KM``.
    """
    structure = str(structure).strip()
    if structure.isdigit():
        return structure
    kind, at, fixed = structure.partition("@")
    ok = kind in ("matern32", "sqexp")
    if ok and at:
        try:
            ok = np.isfinite(float(fixed)) and float(fixed) > 0
        except ValueError:
            ok = False
    if not ok:
        raise ValueError(
            f"unknown representation-error structure {structure!r}; expected a rank "
            "('0', '16'), 'matern32', 'sqexp' or 'KIND@LENGTH_KM' with LENGTH_KM > 0"
        )
    return structure


def from_residuals(
    residuals: np.ndarray,
    grid,
    structure: str = "matern32",
    *,
    var_fraction: float = 0.99,
    max_rank: int = 400,
) -> RepresentationError:
    """Estimate a representation error of the named structure from residual fields.

    Args:
      residuals: ``[n, nlat, nlon]`` residuals ``x - g(z*)`` of held-out fields, K.
      grid: their :class:`bayesda.geo.grid.Grid`.
      structure: ``"K"`` (digits): :func:`estimate` with rank ``K`` (``"0"``: per-pixel
        variance only); ``"matern32"`` or ``"sqexp"``: :func:`stationary` with the per-pixel
        RMS as SD and the length scale fitted to the residuals' correlogram
        (:func:`fit_length_scale`); ``"KIND@L"``: that kind with a fixed length ``L`` km.
      var_fraction, max_rank: truncation of :func:`stationary`.

    Raises:
      ValueError: an unknown structure.
    """
    structure = check_structure(structure)
    if structure.isdigit():
        return estimate(residuals, rank=int(structure))
    kind, _, fixed = structure.partition("@")
    if fixed:
        length = float(fixed)
    else:
        length, _ = fit_length_scale(residuals, grid, kind, method="correlogram")
    sd = np.sqrt(np.mean(np.square(np.asarray(residuals, np.float64)), axis=0))
    return stationary(sd, grid, length, kind, var_fraction=var_fraction, max_rank=max_rank)
