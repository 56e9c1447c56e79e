"""Training the VAE: an optax loop over mini-batches with early stopping.

Works on plain arrays of *normalised* anomalies (``[n, nlat, nlon]``, float32); loading,
splitting and normalising live at the edges (:mod:`bayesda.prior.recipe`).

The loss is the negative ELBO per pixel,

    L = (E_q[-log N(x | g(z), s2 I)] + beta * KL(q(z|x) || N(0, I))) / (nlat * nlon),

with one reparameterised draw of ``z`` per field and the decoder noise variance ``s2``
learned (a scalar in normalised units). ``beta = 1`` is the ELBO; ``beta < 1`` trades prior
fidelity for reconstruction.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from bayesda.prior.vae import VAE, VAEConfig, kl_divergence

__all__ = ["TrainConfig", "TrainResult", "fit", "loss_terms", "normalisation", "pca_init"]

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (defaults: those of the shipped ``models/ncep-air``).

    Attributes:
      epochs: maximum number of passes over the training fields.
      batch_size: fields per step (clipped to the number of training fields).
      learning_rate: peak Adam learning rate (after a linear warm-up, then cosine decay
        to 5% of it over ``epochs``).
      warmup_epochs: length of the linear warm-up.
      beta: KL weight (1 = ELBO).
      patience: stop when the validation loss has not improved for this many epochs.
      grad_clip: global-norm gradient clipping.
      seed: seeds initialisation, shuffling and the reparameterisation noise.
      freeze_linear: keep the linear paths fixed (at their PPCA start when ``pca_init``)
        and train only the conv paths and the noise variance.
      pca_init: start the linear paths at the probabilistic-PCA solution of the training
        fields and the conv paths at zero output (see :func:`pca_init`); needs
        ``VAEConfig.linear_path``.
      roll_lon: augment each training field by a random cyclic shift in longitude (exact
        only for a statistically zonally symmetric climate on a periodic grid, e.g. the
        Held-Suarez simulations of :mod:`bayesda.sim.heldsuarez`).
      flip_lat: augment by mirroring latitudes with probability 1/2 (exact only for a
        hemispherically symmetric climate and a scalar field on a symmetric grid).
      free_bits: "free bits" (Kingma et al. 2016): each latent dimension's KL, averaged
        over the batch, counts only above this many nats, so the optimiser gains nothing
        by squeezing a dimension below it (0 = the plain beta-weighted KL).
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-4
    warmup_epochs: int = 5
    beta: float = 0.1
    patience: int = 8
    grad_clip: float = 10.0
    seed: int = 0
    pca_init: bool = True
    freeze_linear: bool = False
    roll_lon: bool = False
    flip_lat: bool = False
    free_bits: float = 0.0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate} must be > 0")
        if not self.beta >= 0:
            raise ValueError(f"beta={self.beta} must be >= 0")
        if not self.free_bits >= 0:
            raise ValueError(f"free_bits={self.free_bits} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrainResult(NamedTuple):
    """Outcome of :func:`fit`.

    Attributes:
      params: the VAE parameter tree at the best validation loss.
      history: per-epoch lists ``loss``, ``recon``, ``kl`` (training, per pixel / per field
        for ``kl``), ``val_loss``, ``val_recon``, ``val_kl``, ``noise_sd``, and ``time_s``
        (wall-clock seconds since the start of :func:`fit` at the end of the epoch).
      best_epoch: 0-based epoch of ``params``.
      epochs_run: number of epochs run (early stopping may end before ``epochs``).
      wall_time_s: wall-clock seconds, including compilation.
      stop_reason: why training ended: ``"epochs"`` (all run), ``"patience"`` (early
        stopping) or ``"time"`` (``max_seconds`` reached).
    """

    params: Any
    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int
    wall_time_s: float
    stop_reason: str = "epochs"


def normalisation(anomalies: np.ndarray, per_pixel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and the SD (K) to normalise training anomalies ``[n, nlat, nlon]`` by.

    By default the SD is one number over the domain (returned as a constant
    ``[nlat, nlon]`` field): a squared-error loss on the normalised fields is then a
    squared error in K. Per-pixel SDs (``per_pixel=True``) weight every pixel equally
    instead, and cost accuracy in K where the variance is large: on NCEP (per-pixel SD
    0.5-7.3 K), 32-mode PCA of per-pixel-normalised training anomalies reconstructed
    held-out fields with RMSE 2.04 K, against 1.70 K for PCA in K.

    Raises:
      ValueError: fewer than 2 fields, or a pixel with zero or non-finite SD.
    """
    a = np.asarray(anomalies, np.float64)
    if a.ndim != 3 or a.shape[0] < 2:
        raise ValueError(f"anomalies must be [n>=2, nlat, nlon], got shape {a.shape}")
    mean, sd = a.mean(axis=0), a.std(axis=0)
    bad = ~np.isfinite(sd) | (sd <= 0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"training SD is {sd[i, j]} at pixel (lat={i}, lon={j}); cannot normalise")
    if not per_pixel:
        sd = np.full_like(sd, np.sqrt(np.mean(np.square(sd))))
    return mean.astype(np.float32), sd.astype(np.float32)


def pca_init(
    params,
    x: np.ndarray,
    config: VAEConfig,
    beta: float = 1.0,
    roll_lon: bool = False,
    flip_lat: bool = False,
):
    """Set the linear paths to probabilistic PCA (Tipping & Bishop 1999) of ``x``.

    With ``x`` ``[n, nlat, nlon]`` normalised fields, eigen-decomposition of their sample
    covariance gives eigenvalues ``l_k`` and patterns ``v_k``; PPCA with ``d`` latents has
    noise variance ``s2 = mean(l_k, k > d)``. Maximising the ELBO with KL weight ``beta``
    gives (as for PPCA, with ``s2`` replaced by ``b = beta * s2``) the decoder
    ``x = mu + sum_k sqrt(l_k - b) v_k z_k`` and posterior
    ``z_k | x ~ N(sqrt(l_k - b) v_k.(x - mu) / l_k, b / l_k)``. The
    decoder's conv output layer and the encoder's dense output start at zero, so the
    initial VAE *is* that PPCA and training only has to learn what is nonlinear.

    With ``roll_lon`` / ``flip_lat`` (the augmentation of :class:`TrainConfig`) the mean
    and covariance are first averaged over those symmetries
    (:func:`bayesda.data.fieldstats.symmetrise`): the PPCA of the augmented data, which the
    augmented training would otherwise have to find from the unsymmetrised start.

    Returns:
      A new parameter tree (the input is not modified).

    Raises:
      ValueError: ``config.linear_path`` is False or ``n <= latent_dim``.
    """
    if not config.linear_path:
        raise ValueError("pca_init needs VAEConfig.linear_path=True")
    d = config.latent_dim
    flat = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    if flat.shape[0] <= d:
        raise ValueError(f"pca_init needs more fields than latent_dim={d}, got {flat.shape[0]}")
    mu = flat.mean(axis=0)
    if roll_lon or flip_lat:
        from bayesda.data.fieldstats import symmetrise

        c = flat - mu
        mu, cov = symmetrise(
            mu, c.T @ c / flat.shape[0], config.nlat, config.nlon, roll_lon, flip_lat
        )
        lam, vecs = np.linalg.eigh(cov)
        lam, vt = np.maximum(lam[::-1], 0.0), vecs[:, ::-1].T
    else:
        _, s, vt = np.linalg.svd(flat - mu, full_matrices=False)
        lam = s**2 / flat.shape[0]
    s2 = float(max(lam[d:].mean() if lam.size > d else 0.0, 1e-6))
    b = beta * s2
    lam_d = np.maximum(lam[:d], b * (1 + 1e-6) + 1e-12)
    scale = np.sqrt(lam_d - b)
    params = jax.tree_util.tree_map(np.array, jax.device_get(params))
    dec, enc = params["decoder"], params["encoder"]
    dec["linear"]["kernel"] = (scale[:, None] * vt[:d]).astype(np.float32)
    dec["linear"]["bias"] = mu.astype(np.float32)
    dec["conv_out"]["kernel"] = np.zeros_like(dec["conv_out"]["kernel"])
    dec["conv_out"]["bias"] = np.zeros_like(dec["conv_out"]["bias"])
    k_mean = vt[:d].T * (scale / lam_d)[None, :]  # [npix, d]
    enc["linear"]["kernel"] = np.concatenate([k_mean, np.zeros_like(k_mean)], 1).astype(np.float32)
    enc["linear"]["bias"] = np.concatenate(
        [-(mu @ k_mean), np.log(np.maximum(b, 1e-12) / lam_d)]
    ).astype(np.float32)
    enc["dense_out"]["kernel"] = np.zeros_like(enc["dense_out"]["kernel"])
    enc["dense_out"]["bias"] = np.zeros_like(enc["dense_out"]["bias"])
    params["log_noise_var"] = np.asarray(np.log(s2), np.float32)
    return jax.tree_util.tree_map(jnp.asarray, params)


def loss_terms(
    params, model: VAE, x: jax.Array, rng: jax.Array, beta: float, free_bits: float = 0.0
):
    """Negative ELBO per pixel and its parts for a batch ``x [b, nlat, nlon]``.

    With ``free_bits > 0`` the KL term is ``sum_k max(mean_batch KL_k, free_bits)``
    (``TrainConfig.free_bits``); the reported ``kl`` stays the plain KL.

    Returns:
      ``(loss, (recon, kl))``: ``loss`` and ``recon`` in nats per pixel (batch mean),
      ``kl`` in nats per field (batch mean).
    """
    recon_x, mean, logvar, log_s2 = model.apply({"params": params}, x, rng)
    npix = x.shape[-1] * x.shape[-2]
    sq = jnp.sum(jnp.square(x - recon_x), axis=(-2, -1))
    nll = 0.5 * (sq * jnp.exp(-log_s2) + npix * (log_s2 + _LOG_2PI))
    kl = kl_divergence(mean, logvar)
    if free_bits > 0:
        kl_dim = 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=0)
        loss = (jnp.mean(nll) + beta * jnp.sum(jnp.maximum(kl_dim, free_bits))) / npix
    else:
        loss = jnp.mean(nll + beta * kl) / npix
    return loss, (jnp.mean(nll) / npix, jnp.mean(kl))


def _check_fields(name: str, x: np.ndarray, config: VAEConfig) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 3 or x.shape[1:] != (config.nlat, config.nlon):
        raise ValueError(f"{name} must be [n, {config.nlat}, {config.nlon}], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(x)))} non-finite values")
    return x


def fit(  # noqa: C901
    x_train: np.ndarray,
    x_val: np.ndarray,
    config: VAEConfig,
    train_config: TrainConfig = TrainConfig(),
    *,
    progress: bool = True,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train a :class:`bayesda.prior.vae.VAE` on normalised fields with early stopping.

    Each epoch shuffles the training fields (dropping the last partial batch) and runs
    one jitted step per batch; the validation loss uses a fixed noise key
    so that epochs are comparable. The same inputs and seed give the same parameters.

    Args:
      x_train: ``[n_train, nlat, nlon]`` normalised training fields.
      x_val: ``[n_val, nlat, nlon]`` normalised validation fields (early stopping).
      config: the architecture.
      train_config: the optimisation settings.
      progress: show a tqdm bar with the loss terms.
      max_seconds: stop after the first epoch that ends more than this many wall-clock
        seconds after the start (compilation included); None for no limit. Used to keep
        a sweep of runs within a time budget.

    Returns:
      A :class:`TrainResult` holding the parameters at the best validation loss.
    """
    tc = train_config
    x_train = _check_fields("x_train", x_train, config)
    x_val = _check_fields("x_val", x_val, config)
    if x_val.shape[0] < 1:
        raise ValueError("x_val is empty")
    batch = min(tc.batch_size, x_train.shape[0])
    steps = x_train.shape[0] // batch

    model = VAE(config)
    key = jax.random.key(tc.seed)
    key, init_key, noise_key = jax.random.split(key, 3)
    params = model.init(init_key, jnp.asarray(x_train[:2]), noise_key)["params"]
    if tc.pca_init:
        params = pca_init(params, x_train, config, tc.beta, tc.roll_lon, tc.flip_lat)
    warmup = max(1, min(tc.warmup_epochs, tc.epochs - 1) * steps)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        tc.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(warmup + 1, tc.epochs * steps),
        end_value=0.05 * tc.learning_rate,
    )
    optimiser = optax.chain(optax.clip_by_global_norm(tc.grad_clip), optax.adam(schedule))
    if tc.freeze_linear:
        labels = jax.tree_util.tree_map_with_path(
            lambda path, _: "frozen" if "linear" in jax.tree_util.keystr(path) else "trained",
            params,
        )
        optimiser = optax.multi_transform(
            {"trained": optimiser, "frozen": optax.set_to_zero()}, labels
        )
    opt_state = optimiser.init(params)
    grad_fn = jax.value_and_grad(loss_terms, has_aux=True)
    data = jnp.asarray(x_train)
    val = jnp.asarray(x_val)

    # One jitted step driven from Python, not a lax.scan over the epoch: inside a scan,
    # XLA on CPU took a slow path for the conv gradients (5.5 s vs 0.7 s per step, measured
    # on the NCEP grid; same family as jax-ml/jax#12868).
    def augment(x, key):
        k_roll, k_flip = jax.random.split(key)
        if tc.roll_lon:
            shifts = jax.random.randint(k_roll, (x.shape[0],), 0, x.shape[-1])
            x = jax.vmap(lambda f, s: jnp.roll(f, s, axis=-1))(x, shifts)
        if tc.flip_lat:
            flip = jax.random.bernoulli(k_flip, 0.5, (x.shape[0], 1, 1))
            x = jnp.where(flip, x[:, ::-1, :], x)
        return x

    @jax.jit
    def train_step(params, opt_state, idx, key):
        x = data[idx]
        if tc.roll_lon or tc.flip_lat:
            key, aug_key = jax.random.split(key)
            x = augment(x, aug_key)
        (loss, (recon, kl)), grads = grad_fn(params, model, x, key, tc.beta, tc.free_bits)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, jnp.stack([loss, recon, kl])

    def run_epoch(params, opt_state, key):
        perm_key, step_key = jax.random.split(key)
        order = jax.random.permutation(perm_key, data.shape[0])[: steps * batch]
        batches = order.reshape(steps, batch)
        keys = jax.random.split(step_key, steps)
        terms = []
        for i in range(steps):
            params, opt_state, t = train_step(params, opt_state, batches[i], keys[i])
            terms.append(t)
        return params, opt_state, jnp.mean(jnp.stack(terms), axis=0)

    val_key = jax.random.key(tc.seed + 1)

    @jax.jit
    def evaluate(params):
        loss, (recon, kl) = loss_terms(params, model, val, val_key, tc.beta, tc.free_bits)
        return jnp.stack([loss, recon, kl, jnp.exp(0.5 * params["log_noise_var"])])

    names = ("loss", "recon", "kl", "val_loss", "val_recon", "val_kl", "noise_sd")
    history: dict[str, list[float]] = {k: [] for k in (*names, "time_s")}
    stop_reason = "epochs"
    best = (np.inf, params, -1)
    start = time.perf_counter()
    bar = tqdm(range(tc.epochs), desc="train VAE", disable=not progress, unit="epoch")
    epoch = -1
    for epoch in bar:
        key, epoch_key = jax.random.split(key)
        params, opt_state, terms = run_epoch(params, opt_state, epoch_key)
        values = [
            float(v) for v in np.concatenate([np.asarray(terms), np.asarray(evaluate(params))])
        ]
        for name, v in zip(names, values, strict=True):
            history[name].append(v)
        history["time_s"].append(time.perf_counter() - start)
        if not np.isfinite(values[0]):
            raise FloatingPointError(f"training loss became {values[0]} at epoch {epoch}")
        if values[3] < best[0]:
            best = (values[3], params, epoch)
        bar.set_postfix(
            recon=f"{values[1]:.3f}", kl=f"{values[2]:.1f}", val=f"{values[3]:.3f}", best=best[2]
        )
        if epoch - best[2] >= tc.patience:
            stop_reason = "patience"
            break
        if max_seconds is not None and history["time_s"][-1] > max_seconds:
            stop_reason = "time" if epoch + 1 < tc.epochs else "epochs"
            break
    bar.close()
    return TrainResult(
        params=jax.device_get(best[1]),
        history=history,
        best_epoch=int(best[2]),
        epochs_run=epoch + 1,
        wall_time_s=time.perf_counter() - start,
        stop_reason=stop_reason,
    )
