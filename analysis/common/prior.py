"""Helpers on a trained prior: reconstructions and a re-estimated representation error."""

from __future__ import annotations

import dataclasses

import numpy as np


def reconstruct(prior, x: np.ndarray) -> np.ndarray:
    """``decode(encode_mean(x))`` in K for anomaly fields ``[n, nlat, nlon]``."""
    import jax.numpy as jnp

    out = [
        np.asarray(prior.decode(prior.encode(jnp.asarray(x[i : i + 256], jnp.float32))[0]))
        for i in range(0, len(x), 256)
    ]
    return np.concatenate(out).astype(np.float64)


def with_repr_error(prior, train, grid, structure: str):
    """``prior`` with its representation error re-estimated from validation residuals.

    The residuals ``decode(encode_mean(x)) - x`` are taken on the training split's
    validation blocks (:func:`bayesda.data.split.validation_split`), the fields the training
    recipe estimated the model's own representation error from.
    """
    from bayesda.data.split import validation_split
    from bayesda.prior.representation import from_residuals, homogeneous

    if prior.encode is None:
        raise ValueError(f"{prior.name} has no encoder: cannot recompute its residuals")
    _, val = validation_split(train["time"].values)
    x = np.asarray(train.values[val], np.float32)
    res = reconstruct(prior, x) - x
    if structure == "homogeneous":  # doubly periodic grids (QG) only
        repr_error = homogeneous(res)
    else:
        repr_error = from_residuals(res, grid, structure)
    print(
        f"representation error {structure!r} from {len(x)} validation residuals "
        f"(RMS {np.sqrt(np.mean(res**2)):.4f}, rank {repr_error.factor.shape[0]})",
        flush=True,
    )
    return dataclasses.replace(prior, repr_error=repr_error)
