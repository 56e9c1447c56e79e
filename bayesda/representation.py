"""Representation error: what the decoder cannot represent, as a Gaussian field.

The truth ``x`` is modelled as ``x = g(z) + r`` with ``r ~ N(0, C)`` independent of ``z``
and ``C = F^T F + diag(d)`` over the raveled ``(lat, lon)`` pixels: a low-rank part ``F``
(``[rank, nlat, nlon]``) for the large-scale, spatially correlated error and a diagonal
``d`` for the rest. Both are in K (K^2 for ``d``). They are estimated from the decoder's
residuals on held-out fields and stored with the model.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bayesda.operators import Stencil, interpolate


class RepresentationError(NamedTuple):
    """Covariance ``C = F^T F + diag(d)`` of the representation error.

    Attributes:
      factor: ``[rank, nlat, nlon]`` low-rank factor ``F``, K (rank may be 0).
      diag_var: ``[nlat, nlon]`` diagonal ``d``, K^2.
    """

    factor: np.ndarray
    diag_var: np.ndarray

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
        (it is at most a few percent of ``D`` for typical stencils).
        """
        if self.rank == 0:
            factor = np.zeros((stencil.n, 0))
        else:
            factor = np.asarray(interpolate(self.factor, stencil)).T.reshape(stencil.n, self.rank)
        d = self.diag_var.reshape(-1)[stencil.idx]
        diag = np.sum(np.square(stencil.weight) * d, axis=-1)
        return factor.astype(np.float32), diag.astype(np.float32)

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
