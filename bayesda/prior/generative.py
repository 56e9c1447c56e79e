"""The generative prior that assimilation consumes: a frozen decoder and what goes with it.

Assimilation needs only a pure, jit-able ``decode(z) -> anomaly field`` with trained
parameters already bound (a closure, never a trainable module), the grid it lives on, and
the decoder's representation error. :func:`bayesda.prior.checkpoint.load_model` returns a
:class:`GenerativePrior` for a trained VAE; :func:`linear_prior` builds the
linear-Gaussian case ``g(z) = W z + b`` whose posterior is known in closed form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import numpy as np

from bayesda.geo.grid import Grid
from bayesda.prior.representation import RepresentationError, zero_error

__all__ = ["GenerativePrior", "linear_prior"]


@dataclass(frozen=True, eq=False)
class GenerativePrior:
    """A latent-variable prior over anomaly fields, ``x = decode(z) + r``, ``z ~ N(0, I)``.

    Attributes:
      decode: pure function ``z [..., latent_dim] -> anomaly [..., nlat, nlon]`` in K.
      latent_dim: dimension of ``z``.
      grid: the grid of the decoded fields.
      repr_error: covariance of ``r`` (the decoder's representation error).
      climatology: the climatology the anomalies are relative to (a
        :class:`bayesda.data.climatology.Climatology`), or None for synthetic priors.
      encode: optional ``anomaly [..., nlat, nlon] -> (mean, logvar) [..., latent_dim]``.
      surface_height: ``[nlat, nlon]`` model surface height, m (NaN where unknown), for the
        lapse-rate adjustment (:mod:`bayesda.obs.elevation`), or None.
      card: the model card (provenance, metrics), a JSON-able dict.
      name: a short name for logs and file attributes.
      dynamics: the latent transition between consecutive times
        (:class:`bayesda.prior.dynamics.LatentDynamics`), or None; windows of several
        analysis times need it (:mod:`bayesda.inference.window`).
    """

    decode: Callable
    latent_dim: int
    grid: Grid
    repr_error: RepresentationError
    climatology: Any = None
    encode: Callable | None = None
    surface_height: Any = None
    card: dict = field(default_factory=dict)
    name: str = "prior"
    dynamics: Any = None


def linear_prior(
    weight: np.ndarray,
    bias: np.ndarray,
    grid: Grid,
    repr_error: RepresentationError | None = None,
    name: str = "linear",
) -> GenerativePrior:
    """The linear-Gaussian prior ``decode(z) = W z + b``.

    Args:
      weight: ``[nlat, nlon, latent_dim]`` matrix ``W``.
      bias: ``[nlat, nlon]`` offset ``b``.
      grid: the grid.
      repr_error: representation error (default: none).
      name: a short name.
    """
    weight = np.asarray(weight, np.float32)
    bias = np.asarray(bias, np.float32)
    if weight.shape[:2] != grid.shape or bias.shape != grid.shape:
        raise ValueError(
            f"weight {weight.shape} / bias {bias.shape} do not match grid {grid.shape}"
        )
    W, b = jnp.asarray(weight), jnp.asarray(bias)

    def decode(z):
        return jnp.einsum("ijk,...k->...ij", W, z) + b

    return GenerativePrior(
        decode=decode,
        latent_dim=weight.shape[-1],
        grid=grid,
        repr_error=repr_error if repr_error is not None else zero_error(grid.shape),
        name=name,
    )
