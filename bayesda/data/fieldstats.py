"""Statistics of global fields that tell a Gaussian prior from the data it was fitted to.

Pure NumPy functions on ``[n, lat, lon]`` arrays (lat in degrees, lon periodic):
marginal moments, the variance a PCA truncation keeps, horizontal gradients on the sphere,
and Gaussian surrogates with exactly the sample covariance of a training set (the best any
Gaussian prior fitted to that set can do), so any statistic can be compared between the
data and "what a Gaussian would give".
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "EARTH_RADIUS_M",
    "gaussian_surrogate",
    "knn_gain",
    "moments",
    "pca_variance_kept",
    "quadratic_gain",
    "sphere_gradient",
    "summarise_gradients",
    "symmetrise",
    "training_eofs",
]

EARTH_RADIUS_M = 6.371e6


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel skewness and excess kurtosis over the first axis of ``x [n, ...]``.

    Both are 0 for a Gaussian; their sampling SDs for ``n`` independent Gaussian draws are
    about ``sqrt(6/n)`` and ``sqrt(24/n)`` (larger for autocorrelated draws).
    """
    a = np.asarray(x, np.float64)
    if a.shape[0] < 3:
        raise ValueError(f"moments need at least 3 samples, got shape {a.shape}")
    d = a - a.mean(axis=0)
    m2 = np.mean(d**2, axis=0)
    if np.any(m2 <= 0):
        raise ValueError("a pixel has zero variance: moments undefined")
    skew = np.mean(d**3, axis=0) / m2**1.5
    kurt = np.mean(d**4, axis=0) / m2**2 - 3.0
    return skew, kurt


def pca_variance_kept(train: np.ndarray, dims, weights: np.ndarray | None = None) -> dict:
    """Fraction of the (optionally weighted) training variance the first ``d`` EOFs keep.

    Args:
      train: ``[n, lat, lon]`` anomalies.
      dims: iterable of ints.
      weights: ``[lat, lon]`` (e.g. cos-latitude) weights; the EOFs are then those of
        ``sqrt(w) x``.

    Returns:
      ``{d: fraction}``.
    """
    a = np.asarray(train, np.float64).reshape(train.shape[0], -1)
    a = a - a.mean(axis=0)
    if weights is not None:
        a = a * np.sqrt(np.asarray(weights, np.float64).reshape(1, -1))
    s = np.linalg.svd(a, compute_uv=False)
    lam = s**2
    cum = np.cumsum(lam) / lam.sum()
    return {int(d): float(cum[min(int(d), cum.size) - 1]) for d in dims}


def sphere_gradient(
    x: np.ndarray, lat: np.ndarray, lon: np.ndarray, radius: float = EARTH_RADIUS_M
) -> tuple[np.ndarray, np.ndarray]:
    """Eastward and northward derivatives of ``x [..., lat, lon]`` per metre.

    Centred differences: periodic in longitude, ``np.gradient`` (one-sided at the ends) over
    the (possibly uneven, e.g. Gaussian) latitudes.

    Args:
      x: fields with the last two axes ``(lat, lon)``.
      lat: ``[lat]`` degrees.
      lon: ``[lon]`` degrees, evenly spaced, covering the globe.

    Returns:
      ``(d/dx, d/dy)``, each shaped like ``x``.
    """
    x = np.asarray(x, np.float64)
    lat_r = np.radians(np.asarray(lat, np.float64))
    dlon = np.radians(float(np.mean(np.diff(lon))))
    dxdl = (np.roll(x, -1, axis=-1) - np.roll(x, 1, axis=-1)) / (2 * dlon)
    ddx = dxdl / (radius * np.cos(lat_r)[:, None])
    ddy = np.gradient(x, lat_r, axis=-2) / radius
    return ddx, ddy


def gaussian_surrogate(
    train: np.ndarray,
    n: int,
    seed: int = 0,
    eofs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``n`` draws from ``N(mean, sample covariance)`` of ``train [m, lat, lon]``.

    ``x = mean + A^T z / sqrt(m - 1)`` with ``A`` the centred training fields and
    ``z ~ N(0, I_m)``: its covariance is exactly the sample covariance (all ranks). With
    ``eofs`` (:func:`training_eofs` of ``train``) the draws go through them instead,
    ``x = mean + (z * s / sqrt(m - 1)) Vt`` with ``z ~ N(0, I_r)``: the same law, cheaper
    when there are more fields than pixels (other random numbers for the same seed).
    """
    a = np.asarray(train, np.float64)
    flat = a.reshape(a.shape[0], -1)
    rng = np.random.default_rng(seed)
    if eofs is not None:
        mu, sv, vt = eofs
        z = rng.standard_normal((n, len(sv)))
        out = mu + (z * (sv / np.sqrt(flat.shape[0] - 1))) @ vt
    else:
        mu = flat.mean(axis=0)
        z = rng.standard_normal((n, flat.shape[0]))
        out = mu + z @ (flat - mu) / np.sqrt(flat.shape[0] - 1)
    return out.reshape((n,) + a.shape[1:])


def summarise_gradients(
    x: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    lat_band: tuple[float, float] = (30.0, 60.0),
    thresholds=(1.0, 2.0, 3.0),
) -> dict:
    """Statistics of the horizontal gradient of ``x`` in a midlatitude band (both hemispheres).

    Gradients are in units of ``x`` per 100 km. Returns the mean and 99th / 99.9th
    percentiles of ``|grad x|``, the excess kurtosis and skewness of the eastward
    derivative, and the fraction of pixels above each threshold (fronts).
    """
    ddx, ddy = sphere_gradient(x, lat, lon)
    band = (np.abs(np.asarray(lat)) >= lat_band[0]) & (np.abs(np.asarray(lat)) <= lat_band[1])
    gx = ddx[..., band, :].ravel() * 1e5
    gy = ddy[..., band, :].ravel() * 1e5
    mag = np.hypot(gx, gy)
    gxc = gx - gx.mean()
    m2 = np.mean(gxc**2)
    return {
        "mean_abs_grad": float(mag.mean()),
        "p99_abs_grad": float(np.quantile(mag, 0.99)),
        "p999_abs_grad": float(np.quantile(mag, 0.999)),
        "ddx_excess_kurtosis": float(np.mean(gxc**4) / m2**2 - 3.0),
        "ddx_skewness": float(np.mean(gxc**3) / m2**1.5),
        "frac_above": {f"{t:g}": float(np.mean(mag > t)) for t in thresholds},
    }


def quadratic_gain(
    train: np.ndarray,
    test: np.ndarray,
    d: int,
    ridges=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
    validation_fraction: float = 0.2,
    eofs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """How much a quadratic decoder of the first ``d`` PC scores beats PCA-d on ``test``.

    The question a nonlinear prior has to answer "yes" to: is the part of a field that
    PCA-d misses predictable from its ``d`` leading scores? For Gaussian fields the PC
    scores are independent of the residual, so no function of them helps; any gain
    measures low-dimensional nonlinear structure, the thing a VAE decoder of latent size
    ``d`` could exploit (with the PC scores as an oracle encoder).

    EOFs and the regression are fitted on ``train``: scores ``s_k`` standardised,
    features the ``d (d + 1) / 2`` products ``s_i s_j`` (``i <= j``) centred, residual
    ``x - PCA_d(x)`` regressed on them by ridge with penalty ``r`` x the mean feature
    variance x n. ``r`` is chosen among ``ridges`` on the last ``validation_fraction`` of
    ``train`` (a contiguous block: time-correlated fields would make a random split
    optimistic), then the regression is refitted on all of ``train`` and scored on
    ``test``. With no structure the best ridge is the largest and the ratio tends to 1.

    Args:
      train: ``[n, ...]`` fields in time order (anomalies or not; centred here).
      test: ``[m, ...]`` held-out fields.
      d: number of leading EOFs.
      ridges: relative ridge penalties to choose from.
      validation_fraction: share of ``train`` (its end) used to choose the ridge.
      eofs: ``(mean, singular values, components)`` of ``train`` as
        :func:`training_eofs` returns them, to share one decomposition between calls.

    Returns:
      ``pca_rmse`` (test RMSE of PCA-d), ``quadratic_rmse`` (after adding the quadratic
      prediction of the residual), their ``ratio`` (< 1: a quadratic decoder gains) and
      the chosen ``ridge``.
    """
    a = np.asarray(train, np.float64).reshape(len(train), -1)
    b = np.asarray(test, np.float64).reshape(len(test), -1)
    n_feat = d * (d + 1) // 2
    if not 1 <= d < min(a.shape) or a.shape[0] <= n_feat:
        raise ValueError(
            f"d={d} needs 1 <= d < min(n, npix) = {min(a.shape)} and more than "
            f"d(d+1)/2 = {n_feat} training fields (got {a.shape[0]})"
        )
    mu, sv, vt = eofs if eofs is not None else training_eofs(a)
    scale = sv[:d] / np.sqrt(len(a))
    iu = np.triu_indices(d)

    def split(x):
        c = x - mu
        scores = c @ vt[:d].T
        resid = c - scores @ vt[:d]
        z = scores / scale
        return np.einsum("ni,nj->nij", z, z)[:, iu[0], iu[1]], resid

    f_train, r_train = split(a)
    f_test, r_test = split(b)
    f_mean = f_train.mean(axis=0)
    f_train, f_test = f_train - f_mean, f_test - f_mean

    def solve(f, r, ridge):
        gram = f.T @ f
        lam = ridge * np.trace(gram) / n_feat
        return np.linalg.solve(gram + lam * np.eye(n_feat), f.T @ r)

    n_fit = int(round(len(a) * (1 - validation_fraction)))
    ridges = sorted(ridges)
    if len(ridges) > 1 and n_fit > n_feat and n_fit < len(a):
        errs = [
            np.mean(
                (r_train[n_fit:] - f_train[n_fit:] @ solve(f_train[:n_fit], r_train[:n_fit], r))
                ** 2
            )
            for r in ridges
        ]
        ridge = ridges[int(np.argmin(errs))]
    else:
        ridge = ridges[-1]
    w = solve(f_train, r_train, ridge)
    pca = float(np.sqrt(np.mean(r_test**2)))
    quad = float(np.sqrt(np.mean((r_test - f_test @ w) ** 2)))
    return {"pca_rmse": pca, "quadratic_rmse": quad, "ratio": quad / pca, "ridge": ridge}


def training_eofs(train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, singular values, components)`` of the centred ``train [n, ...]`` (flattened).

    The thin SVD ``a - mean = U diag(s) Vt``, computed from the eigendecomposition of the
    smaller of the two Gram matrices (several times faster than LAPACK's SVD for the tall or
    wide matrices of field statistics, and the same to rounding for the leading modes).
    Components are the rows of ``Vt``, sorted by decreasing singular value.
    """
    a = np.asarray(train, np.float64).reshape(len(train), -1)
    mu = a.mean(axis=0)
    c = a - mu
    if c.shape[0] >= c.shape[1]:
        lam, v = np.linalg.eigh(c.T @ c)
        lam, v = lam[::-1], v[:, ::-1]
        sv = np.sqrt(np.clip(lam, 0.0, None))
        return mu, sv, v.T
    lam, u = np.linalg.eigh(c @ c.T)
    lam, u = lam[::-1], u[:, ::-1]
    sv = np.sqrt(np.clip(lam, 0.0, None))
    keep = sv > sv[0] * 1e-10
    vt = np.zeros((len(sv), c.shape[1]))
    vt[keep] = (u[:, keep].T @ c) / sv[keep, None]
    return mu, sv, vt


def symmetrise(
    mean: np.ndarray, cov: np.ndarray, nlat: int, nlon: int, roll_lon: bool, flip_lat: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[nlat*nlon]`` and covariance ``[npix, npix]`` averaged over symmetries.

    ``roll_lon``: all cyclic longitude shifts; ``flip_lat``: the mirror in latitude. These
    are the moments of the data augmented by those symmetries (exact for a climate that
    has them, e.g. Held-Suarez), hence the PCA an augmented VAE is compared with and
    started from: exactly the mean and covariance of the data with every rolled and/or
    flipped copy added (second moments averaged over the group, re-centred on the
    averaged mean).
    """
    mu = np.asarray(mean, np.float64).ravel()
    m = mu.reshape(nlat, nlon)
    # second moments are averaged over the group, then re-centred on the averaged mean
    c = (np.asarray(cov, np.float64) + np.outer(mu, mu)).reshape(nlat, nlon, nlat, nlon)
    if roll_lon:
        m = np.repeat(m.mean(axis=1, keepdims=True), nlon, axis=1)
        c = sum(np.roll(np.roll(c, s, axis=1), s, axis=3) for s in range(nlon)) / nlon
    if flip_lat:
        m = 0.5 * (m + m[::-1])
        c = 0.5 * (c + c[::-1, :, ::-1, :])
    m = m.ravel()
    return m, c.reshape(nlat * nlon, nlat * nlon) - np.outer(m, m)


def knn_gain(
    train: np.ndarray,
    test: np.ndarray,
    d: int,
    ks=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    validation_fraction: float = 0.2,
    chunk: int = 64,
) -> dict[str, float]:
    """How much a nonparametric decoder of the first ``d`` PC scores beats PCA-d on ``test``.

    Like :func:`quadratic_gain`, but the PCA-d residual of a field is predicted by the mean
    residual of its ``k`` nearest training fields in the space of the ``d`` leading PC
    scores (Euclidean, i.e. distance between the PCA-d projections). It sees any smooth
    dependence of the residual on the scores, not only quadratic ones, where the fields
    are dense enough (a low-dimensional manifold: e.g. a feature that moves, whose higher
    harmonics are functions of its phase). For Gaussian fields the residual is independent
    of the scores and the best ``k`` is the largest (ratio ``sqrt(1 + 1/k)`` >= 1).

    ``k`` is chosen among ``ks`` on the last ``validation_fraction`` of ``train``
    (neighbours from the rest), then the test fields use all of ``train``.

    Returns:
      ``pca_rmse``, ``knn_rmse``, their ``ratio`` (< 1: nonlinear structure) and ``k``.
    """
    a = np.asarray(train, np.float64).reshape(len(train), -1)
    b = np.asarray(test, np.float64).reshape(len(test), -1)
    ks = sorted(int(k) for k in ks)
    if not 1 <= d < min(a.shape):
        raise ValueError(f"d={d} needs 1 <= d < min(n, npix) = {min(a.shape)}")
    mu = a.mean(axis=0)
    _, _, vt = np.linalg.svd(a - mu, full_matrices=False)

    def split(x):
        c = x - mu
        s = c @ vt[:d].T
        return s, c - s @ vt[:d]

    s_train, r_train = split(a)
    s_test, r_test = split(b)

    def errors(s_q, r_q, s_ref, r_ref, k_list):
        """Sum of squared errors of each k over the query fields."""
        kmax = min(k_list[-1], len(s_ref))
        out = np.zeros(len(k_list))
        for i in range(0, len(s_q), chunk):
            dist = (
                np.sum(s_q[i : i + chunk] ** 2, 1)[:, None]
                - 2 * s_q[i : i + chunk] @ s_ref.T
                + np.sum(s_ref**2, 1)[None, :]
            )
            idx = np.argpartition(dist, kmax - 1, axis=1)[:, :kmax]
            order = np.take_along_axis(dist, idx, 1).argsort(axis=1)
            idx = np.take_along_axis(idx, order, 1)
            csum = np.cumsum(r_ref[idx], axis=1)  # [q, kmax, npix]
            for j, k in enumerate(k_list):
                kk = min(k, kmax)
                pred = csum[:, kk - 1] / kk
                out[j] += np.sum((r_q[i : i + chunk] - pred) ** 2)
        return out

    n_fit = int(round(len(a) * (1 - validation_fraction)))
    if len(ks) > 1 and 0 < n_fit < len(a):
        k = ks[
            int(
                np.argmin(
                    errors(s_train[n_fit:], r_train[n_fit:], s_train[:n_fit], r_train[:n_fit], ks)
                )
            )
        ]
    else:
        k = ks[-1]
    sse = errors(s_test, r_test, s_train, r_train, [k])[0]
    pca = float(np.sqrt(np.mean(r_test**2)))
    knn = float(np.sqrt(sse / r_test.size))
    return {"pca_rmse": pca, "knn_rmse": knn, "ratio": knn / pca, "k": k}
