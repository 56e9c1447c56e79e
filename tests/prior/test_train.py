"""Tests for VAE training (bayesda.prior.train) on tiny synthetic fields."""

import numpy as np
import pytest

from bayesda.prior.train import TrainConfig, fit, normalisation
from bayesda.prior.vae import VAEConfig

CONFIG = VAEConfig(nlat=6, nlon=8, latent_dim=3, channels=(4,))


def low_rank_fields(*, n, seed, rank=3, noise=0.05):
    """Smooth fields spanned by ``rank`` fixed patterns plus a little noise."""
    rng = np.random.default_rng(seed)
    lat, lon = np.meshgrid(
        np.linspace(0, 1, CONFIG.nlat), np.linspace(0, 1, CONFIG.nlon), indexing="ij"
    )
    patterns = np.stack(
        [np.sin(np.pi * (k + 1) * lat) * np.cos(np.pi * k * lon) for k in range(rank)]
    )
    coef = rng.normal(size=(n, rank))
    return (
        np.einsum("nk,kij->nij", coef, patterns)
        + noise * rng.normal(size=(n, *(CONFIG.nlat, CONFIG.nlon)))
    ).astype(np.float32)


def test_short_training_reduces_loss_and_is_reproducible():
    x = low_rank_fields(n=96, seed=0)
    mean, sd = normalisation(x)
    xn = (x - mean) / sd
    tc = TrainConfig(
        epochs=12,
        batch_size=32,
        learning_rate=1e-2,
        warmup_epochs=1,
        patience=50,
        seed=3,
        pca_init=False,
    )
    result = fit(xn[:64], xn[64:], CONFIG, tc, progress=False)
    h = result.history
    assert result.epochs_run == 12 and len(h["val_loss"]) == 12
    assert h["val_loss"][result.best_epoch] == min(h["val_loss"])
    # the negative ELBO per pixel starts near 0.5 * log(2 pi e) = 1.42 for unit-variance data
    assert h["loss"][-1] < h["loss"][0] - 0.3, h["loss"]
    assert h["val_recon"][-1] < h["val_recon"][0] - 0.3, h["val_recon"]
    again = fit(xn[:64], xn[64:], CONFIG, tc, progress=False)
    np.testing.assert_array_equal(
        again.params["decoder"]["linear"]["kernel"], result.params["decoder"]["linear"]["kernel"]
    )


def test_early_stopping_stops_patience_epochs_after_the_best():
    # Validation fields unlike the training ones (white noise, SD 3): as the learned noise
    # variance shrinks on the training data, the validation loss must get worse.
    x = low_rank_fields(n=40, seed=1)
    val = 3.0 * np.random.default_rng(5).normal(size=x.shape).astype(np.float32)
    tc = TrainConfig(epochs=200, batch_size=20, learning_rate=1e-2, warmup_epochs=1, patience=3)
    result = fit(x, val, CONFIG, tc, progress=False)
    assert result.epochs_run == result.best_epoch + 3 + 1 < 200
    assert result.stop_reason == "patience"


def test_max_seconds_stops_after_the_epoch_that_crosses_it():
    x = low_rank_fields(n=40, seed=4)
    tc = TrainConfig(epochs=50, batch_size=20, warmup_epochs=1, patience=50, pca_init=False)
    result = fit(x[:32], x[32:], CONFIG, tc, progress=False, max_seconds=0.0)
    assert result.epochs_run == 1 and result.stop_reason == "time"
    assert len(result.history["time_s"]) == 1 and result.history["time_s"][0] > 0
    full = fit(x[:32], x[32:], CONFIG, TrainConfig(epochs=2, batch_size=20), progress=False)
    assert full.stop_reason == "epochs" and full.epochs_run == 2


def test_free_bits_floor_each_latent_dimension_kl():
    import jax
    import jax.numpy as jnp

    from bayesda.prior.train import loss_terms
    from bayesda.prior.vae import VAE, kl_divergence

    x = jnp.asarray(low_rank_fields(n=8, seed=6))
    model = VAE(CONFIG)
    params = model.init(jax.random.key(0), x[:2], jax.random.key(1))["params"]
    rng = jax.random.key(2)
    plain, (recon, kl) = loss_terms(params, model, x, rng, 0.5)
    npix = CONFIG.nlat * CONFIG.nlon
    # a floor above every dimension's KL: the KL term is latent_dim * floor exactly
    mean, logvar = model.apply({"params": params}, x, method="encode")
    kl_dim = 0.5 * np.mean(np.square(mean) + np.exp(logvar) - 1 - logvar, axis=0)
    floor = float(kl_dim.max()) + 1.0
    high, (recon_h, kl_h) = loss_terms(params, model, x, rng, 0.5, free_bits=floor)
    np.testing.assert_allclose(kl_h, kl, rtol=1e-6)
    np.testing.assert_allclose(
        high, (recon * npix + 0.5 * CONFIG.latent_dim * floor) / npix, rtol=1e-5
    )
    # a floor of zero is the plain KL
    np.testing.assert_allclose(float(jnp.mean(kl_divergence(mean, logvar))), kl, rtol=1e-5)
    zero, _ = loss_terms(params, model, x, rng, 0.5, free_bits=1e-12)
    np.testing.assert_allclose(zero, plain, rtol=1e-5)
    with pytest.raises(ValueError, match="free_bits=-1"):
        TrainConfig(free_bits=-1)


def test_normalisation_and_input_checks():
    x = low_rank_fields(n=10, seed=2)
    mean, sd = normalisation(x, per_pixel=True)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sd, x.std(0), rtol=1e-5)
    _, sd_domain = normalisation(x)
    np.testing.assert_allclose(sd_domain, np.sqrt(np.mean(x.var(0))), rtol=1e-5)
    x[:, 2, 3] = 1.0
    with pytest.raises(ValueError, match=r"pixel \(lat=2, lon=3\)"):
        normalisation(x)
    with pytest.raises(ValueError, match=r"x_train must be \[n, 6, 8\]"):
        fit(np.zeros((4, 5, 8)), np.zeros((4, 6, 8)), CONFIG, progress=False)
    bad = np.zeros((4, 6, 8), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        fit(bad, bad, CONFIG, progress=False)
    with pytest.raises(ValueError, match="beta=-1"):
        TrainConfig(beta=-1)


def test_pca_init_matches_ppca_reconstruction():
    import jax
    import jax.numpy as jnp

    from bayesda.prior.train import pca_init
    from bayesda.prior.vae import VAE

    x = low_rank_fields(n=200, seed=4, noise=0.1)
    model = VAE(CONFIG)
    params = model.init(jax.random.key(0), jnp.asarray(x[:2]), jax.random.key(1))["params"]
    params = pca_init(params, x, CONFIG)
    mean, _ = model.apply({"params": params}, jnp.asarray(x), method="encode")
    recon = np.asarray(model.apply({"params": params}, mean, method="decode"))
    flat = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    pca = (flat @ vt[:3].T @ vt[:3]).reshape(x.shape) + x.mean(0)
    rmse_pca = np.sqrt(np.mean((pca - x) ** 2))
    rmse_vae = np.sqrt(np.mean((recon - x) ** 2))
    # PPCA shrinks each component by (1 - s2 / l_k): slightly worse than PCA, not better
    assert rmse_pca <= rmse_vae < 1.05 * rmse_pca
    np.testing.assert_allclose(np.asarray(mean).std(0), 1.0, atol=0.05)  # z ~ N(0, 1) marginally


def test_cli_train_writes_loadable_model(tmp_path):
    import pandas as pd
    import xarray as xr

    from bayesda.cli.main import main
    from bayesda.prior.checkpoint import load_model

    times = pd.date_range("2013-01-01", periods=4 * 100, freq="6h")
    rng = np.random.default_rng(0)
    lat, lon = np.linspace(30.0, 45.0, 6), np.linspace(-100.0, -86.0, 8)
    fields = low_rank_fields(n=times.size, seed=6) + 280.0 + rng.normal(0, 0.1, (times.size, 6, 8))
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), fields.astype(np.float32), {"units": "K"})},
        coords={"time": times, "lat": lat, "lon": lon},
    )
    ds.to_netcdf(tmp_path / "tiny.nc")
    out = tmp_path / "model"
    argv = [
        "train",
        "--data",
        str(tmp_path / "tiny.nc"),
        "--out",
        str(out),
        "--latent-dim",
        "3",
        "--channels",
        "4",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--repr-error",
        "4",
        "--quiet",
    ]
    assert main(argv) == 0
    prior = load_model(out)
    assert prior.latent_dim == 3 and prior.grid.shape == (6, 8)
    assert prior.climatology is not None
    assert prior.card["split"]["n_test"] > 0 and prior.card["training"]["epochs_run"] == 2
    # options not given take TrainConfig's defaults (the parser leaves them None)
    from bayesda.prior.train import TrainConfig

    used, default = prior.card["training"]["train_config"], TrainConfig()
    assert used["learning_rate"] == default.learning_rate and used["seed"] == default.seed
    assert used["epochs"] == 2 and used["batch_size"] == 32
    # independent fields: the leakage check ran and stayed quiet
    assert abs(prior.card["split"]["pattern_correlation_half_block"]) < 0.5
    assert prior.card["split"]["leakage_warning"] is None
    assert prior.repr_error.rank == 4 and np.all(prior.repr_error.variance > 0)
    assert prior.decode(np.zeros(3, np.float32)).shape == (6, 8)
    assert main(argv) == 1  # refuses to overwrite without --overwrite
    stationary_argv = [*argv, "--overwrite"]
    stationary_argv[stationary_argv.index("--repr-error") + 1] = "matern32@500"
    assert main(stationary_argv) == 0
    rep = load_model(out).repr_error
    assert rep.spec is not None and rep.spec.length_scale_km == 500.0
    np.testing.assert_allclose(rep.variance, rep.spec.sd.astype(np.float64) ** 2, rtol=1e-4)


def test_freeze_linear_keeps_the_ppca_start():
    import jax
    import jax.numpy as jnp

    from bayesda.prior.train import pca_init
    from bayesda.prior.vae import VAE

    x = low_rank_fields(n=64, seed=7)
    tc = TrainConfig(
        epochs=4, batch_size=16, learning_rate=1e-2, warmup_epochs=1, freeze_linear=True
    )
    # validate on the training fields so that the best epoch is a trained one
    result = fit(x[:48], x[:48], CONFIG, tc, progress=False)
    # the same start fit() builds: init from the seed's first split, then PPCA
    key = jax.random.split(jax.random.key(tc.seed), 3)
    start = VAE(CONFIG).init(key[1], jnp.asarray(x[:2]), key[2])["params"]
    start = pca_init(start, x[:48], CONFIG, tc.beta)
    for part in ("decoder", "encoder"):
        np.testing.assert_array_equal(
            result.params[part]["linear"]["kernel"], start[part]["linear"]["kernel"]
        )
    assert not np.array_equal(
        result.params["decoder"]["conv_out"]["kernel"], start["decoder"]["conv_out"]["kernel"]
    )


@pytest.mark.slow
def test_roll_and_flip_augmentation_train_on_a_periodic_grid():
    """Augmented training runs and is deterministic; the PPCA start is zonally unbiased."""
    config = VAEConfig(nlat=6, nlon=8, latent_dim=3, channels=(4,), periodic=True)
    x = low_rank_fields(n=64, seed=2)
    tc = TrainConfig(epochs=3, batch_size=16, warmup_epochs=1, roll_lon=True, flip_lat=True)
    a = fit(x[:48], x[48:], config, tc, progress=False)
    b = fit(x[:48], x[48:], config, tc, progress=False)
    assert np.all(np.isfinite(a.history["loss"]))
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])


def test_pca_init_with_augmentation_starts_at_the_symmetrised_ppca():
    import jax
    import jax.numpy as jnp

    from bayesda.data.fieldstats import symmetrise
    from bayesda.prior.train import pca_init
    from bayesda.prior.vae import VAE

    config = VAEConfig(nlat=6, nlon=8, latent_dim=3, channels=(4,), periodic=True)
    x = low_rank_fields(n=64, seed=7)
    start = VAE(config).init(jax.random.key(0), jnp.asarray(x[:2]), jax.random.key(1))["params"]
    p = pca_init(start, x, config, beta=0.1, roll_lon=True, flip_lat=True)
    bias = np.asarray(p["decoder"]["linear"]["bias"]).reshape(6, 8)
    np.testing.assert_allclose(bias, np.roll(bias, 3, axis=1), atol=1e-6)  # zonal
    np.testing.assert_allclose(bias, bias[::-1], atol=1e-6)  # hemispheric
    flat = x.reshape(64, -1).astype(np.float64)
    mu = flat.mean(0)
    _, cov = symmetrise(mu, np.cov(flat.T, bias=True), 6, 8, True, True)
    kernel = np.asarray(p["decoder"]["linear"]["kernel"], np.float64)  # [d, npix]
    lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
    for k in range(3):  # rows: sqrt(l_k - b) v_k with v_k eigenvectors of the symmetrised cov
        v = kernel[k] / np.linalg.norm(kernel[k])
        np.testing.assert_allclose(cov @ v, lam[k] * v, atol=1e-4 * lam[0])
    plain = pca_init(start, x, config, beta=0.1)
    assert not np.allclose(plain["decoder"]["linear"]["bias"], p["decoder"]["linear"]["bias"])
