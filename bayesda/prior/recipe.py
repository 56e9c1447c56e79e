"""The training recipe of a VAE prior: from a dataset's fields to a saved model directory.

Pipeline (:func:`train_prior`): block split (every 4th week held out for testing) ->
climatology fitted on the training split -> anomalies -> blockwise validation split of the
training times -> per-pixel normalisation (fit part) -> :func:`bayesda.prior.train.fit` with early
stopping -> representation error from the validation residuals ->
:func:`bayesda.prior.checkpoint.save_model`. The test split is never touched here; it is kept for
honest verification. ``bayesda train`` (:mod:`bayesda.cli.train`) and
``analysis/ncep_prior/train_ncep.py`` only parse arguments and call it.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["SHIPPED_LATENT_DIM", "train_prior"]

SHIPPED_LATENT_DIM = 100
"""Latent dimension of the shipped model (``models/ncep-air``), the default here."""


def _recon_residuals(params, config, x_norm: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``decode(encode_mean(x)) - x`` in K for normalised fields ``[n, nlat, nlon]``."""
    import jax
    import jax.numpy as jnp

    from bayesda.prior.vae import VAE

    model = VAE(config)

    @jax.jit
    def recon(x):
        mean, _ = model.apply({"params": params}, x, method="encode")
        return model.apply({"params": params}, mean, method="decode")

    out = np.concatenate(
        [np.asarray(recon(jnp.asarray(x_norm[i : i + 256]))) for i in range(0, len(x_norm), 256)]
    )
    return (out - x_norm) * sd


def train_prior(
    tas: xr.DataArray,
    out: str | pathlib.Path,
    *,
    latent_dim: int = SHIPPED_LATENT_DIM,
    channels: tuple[int, ...] = (16, 16),
    linear_path: bool = True,
    train_config=None,
    dataset: str = "",
    repr_error: str = "matern32",
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    extra_card: dict[str, Any] | None = None,
    n_harmonics: int = 3,
) -> tuple[pathlib.Path, dict[str, Any]]:
    """Train a VAE prior on the training split of ``tas`` and save it to ``out``.

    Args:
      tas: ``(time, lat, lon)`` temperature in K on the bayesda grid convention.
      out: the model directory.
      latent_dim: dimension of ``z``.
      channels: decoder conv channels, coarse to fine.
      linear_path: include the linear (PCA-like) paths.
      train_config: a :class:`bayesda.prior.train.TrainConfig` (default settings if None).
      dataset: the dataset's name, recorded in the card.
      repr_error: structure of the representation error
        (:func:`bayesda.prior.representation.from_residuals`).
      overwrite: replace an existing model directory.
      progress: show the training progress bar.
      command: the command line, recorded in the card.
      extra_card: more JSON-able entries for model.json.
      n_harmonics: annual harmonics of the climatology (0 for a climate without seasons,
        e.g. the Held-Suarez simulations of :mod:`bayesda.sim.heldsuarez`).

    Returns:
      ``(path, summary)`` with ``summary`` holding ``epochs_run``, ``best_epoch``,
      ``wall_time_s``, ``val_recon_rmse_K`` and the training history.
    """
    from bayesda.data.climatology import Climatology
    from bayesda.data.split import (
        BLOCK_DAYS,
        EVERY,
        block_split,
        leak_message,
        pattern_correlation,
        validation_split,
    )
    from bayesda.geo.grid import Grid
    from bayesda.prior.checkpoint import check_target, save_model
    from bayesda.prior.representation import from_residuals
    from bayesda.prior.train import TrainConfig, fit, normalisation
    from bayesda.prior.vae import VAEConfig

    tc = train_config or TrainConfig()
    out = pathlib.Path(out)
    check_target(out, overwrite)  # before hours of training: a model, never another directory
    grid = Grid.from_xarray(tas)
    config = VAEConfig(
        nlat=grid.shape[0],
        nlon=grid.shape[1],
        latent_dim=latent_dim,
        channels=tuple(channels),
        periodic=grid.periodic,
        linear_path=linear_path,
    )
    times = tas["time"].values
    train_mask, test_mask = block_split(times)
    tas_train = tas.isel(time=np.flatnonzero(train_mask))
    climatology = Climatology.fit(tas_train, n_harmonics=n_harmonics)
    anomaly = np.asarray(climatology.to_anomaly(tas_train).values, np.float32)
    half_block_corr = pattern_correlation(anomaly, tas_train["time"].values, BLOCK_DAYS / 2)
    leak = leak_message(half_block_corr, BLOCK_DAYS)
    if leak:
        warnings.warn(f"{out.name}: {leak}", stacklevel=2)
    fit_mask, val_mask = validation_split(tas_train["time"].values)
    mean, sd = normalisation(anomaly[fit_mask])
    x_fit = (anomaly[fit_mask] - mean) / sd
    x_val = (anomaly[val_mask] - mean) / sd

    result = fit(x_fit, x_val, config, tc, progress=progress)

    residuals = _recon_residuals(result.params, config, x_val, sd)
    structure = repr_error
    repr_error = from_residuals(residuals, grid, structure)
    val_rmse = float(np.sqrt(np.mean(residuals**2)))
    h = result.history
    summary = {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "wall_time_s": round(result.wall_time_s, 1),
        "val_recon_rmse_K": round(val_rmse, 4),
        "best": {k: round(v[result.best_epoch], 5) for k, v in h.items()},
        "history": {k: [round(x, 5) for x in v] for k, v in h.items()},
    }
    card = {
        "dataset": dataset,
        "split": {
            "method": f"bayesda.data.split.block_split: {BLOCK_DAYS}-day blocks, every {EVERY}th "
            "held out for testing; validation = bayesda.data.split.validation_split of the "
            "training times (whole blocks)",
            "n_train_fit": int(fit_mask.sum()),
            "n_validation": int(val_mask.sum()),
            "n_test": int(test_mask.sum()),
            "period": [str(times.min())[:19], str(times.max())[:19]],
            "pattern_correlation_half_block": (
                None if half_block_corr is None else round(half_block_corr, 3)
            ),
            "leakage_warning": leak,
        },
        "normalisation_sd": "one domain-wide SD (RMS of the per-pixel SDs of the fit "
        "fields), stored as a constant field; see bayesda.prior.train.normalisation",
        "climatology": "bayesda.data.climatology.Climatology.fit on the training split (fit + "
        "validation times), stored as climatology.nc",
        "training": {
            "train_config": tc.to_dict(),
            "command": command,
            **{k: v for k, v in summary.items() if k != "history"},
        },
        "repr_error": {
            "estimated_from": "decode(encode_mean(x)) - x on the validation fields, K",
            "structure": structure,
            "rank": repr_error.rank,
            "mean_sd_K": round(float(np.mean(repr_error.sd)), 4),
        },
        **dict(extra_card or {}),
    }
    model_card = (
        f"# {out.name}\n\nVAE prior trained on `{dataset}` (training split). "
        "Metrics: see model.json; run the evaluation script to fill in this card.\n"
    )
    path = save_model(
        out,
        params=result.params,
        config=config,
        grid=grid,
        norm_mean=mean,
        norm_sd=sd,
        repr_error=repr_error,
        climatology=climatology,
        card=card,
        model_card=model_card,
        overwrite=overwrite,
    )
    return path, summary
