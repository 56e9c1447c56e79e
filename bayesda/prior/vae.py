"""A small convolutional VAE over ``(lat, lon)`` fields of normalised anomalies.

The decoder ``g(z)`` is what assimilation runs once per leapfrog step (value and
gradient with respect to ``z``), so it is kept small and built only from ops with fast
input-gradients on CPU: a dense layer to a coarse grid, a few
``[nearest upsample x2 -> 3x3 conv -> activation]`` stages, a final 3x3 conv to one
channel, cropped to ``(nlat, nlon)``, plus an optional linear path ``Dense(z -> nlat*nlon)``
(PCA-like). No transposed convolutions: their input-gradient took a slow XLA path inside
``lax.fori_loop`` (see ../shared/FINDINGS.md, jax-ml/jax#12868).

Padding is explicit: longitude wraps around on a periodic (global) grid and repeats the
edge value otherwise; latitude always repeats the edge value. Convolutions then run with
``VALID`` padding, so the wrap is exact. (On a periodic grid whose ``nlon`` is not a
multiple of ``2**len(channels)``, the crop after each upsampling drops up to one column at
the seam, so the decoder's coarse stages are not exactly periodic; choose ``channels`` so
that it divides, e.g. 2 stages for 144 longitudes.)

Everything here works on *normalised* fields (anomaly / per-pixel training SD); the
de-normalisation to K lives in :mod:`bayesda.prior.checkpoint`, which binds it into ``decode``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "VAE",
    "Decoder",
    "Encoder",
    "VAEConfig",
    "MAX_LATENT_DIM",
    "NCEP_AIR",
    "conv_valid",
    "kl_divergence",
    "pad_field",
    "stage_shapes",
]


#: Largest latent dimension accepted. It was 100 while the only data were 1856 NCEP fields;
#: the simulated-weather experiments (analysis/osse/osse_train.py) use up to 256.
MAX_LATENT_DIM = 1024


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of the VAE.

    Attributes:
      nlat: number of latitudes of the fields.
      nlon: number of longitudes of the fields.
      latent_dim: dimension of ``z`` (1..``MAX_LATENT_DIM``). Default 64: on NCEP, 64-mode PCA
        reconstructs held-out fields with 1.24 K RMSE against 1.70 K for 32 modes, and prior
        samples keep 87% of the per-pixel SD (77% at 32), while the decoder's gradient costs
        the same (analysis/ncep_prior/train_ncep.py).
      channels: channels of the decoder's conv stages, coarse to fine; the coarse grid is
        ``ceil(n / 2**len(channels))`` per axis. The encoder mirrors them (fine to coarse).
      periodic: wrap longitude in the padding (global grids).
      linear_path: add ``Dense(z -> nlat*nlon)`` to the decoder output and
        ``Dense(x -> 2*latent_dim)`` to the encoder output.
      activation: name of a ``jax.nn`` activation.
      res_blocks: residual blocks ``h + conv(act(conv(h)))`` after each decoder stage
        (0: none, the architecture of the models trained before they existed).
    """

    nlat: int
    nlon: int
    latent_dim: int = 64
    channels: tuple[int, ...] = (16, 16)
    periodic: bool = False
    linear_path: bool = True
    activation: str = "gelu"
    res_blocks: int = 0

    def __post_init__(self):
        if self.nlat < 2 or self.nlon < 2:
            raise ValueError(f"grid too small: nlat={self.nlat}, nlon={self.nlon}")
        if not 1 <= self.latent_dim <= MAX_LATENT_DIM:
            raise ValueError(f"latent_dim={self.latent_dim} outside [1, {MAX_LATENT_DIM}]")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels={self.channels} must be a non-empty tuple of positive ints")
        if int(self.res_blocks) != self.res_blocks or self.res_blocks < 0:
            raise ValueError(f"res_blocks={self.res_blocks} must be a non-negative integer")
        object.__setattr__(self, "res_blocks", int(self.res_blocks))
        if not hasattr(jax.nn, self.activation):
            raise ValueError(f"activation={self.activation!r} is not in jax.nn")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**d)


#: Preset for the NCEP air-temperature grid (25 x 53, regional).
NCEP_AIR = VAEConfig(nlat=25, nlon=53, latent_dim=64, channels=(16, 16), periodic=False)


def stage_shapes(nlat: int, nlon: int, n_stages: int) -> list[tuple[int, int]]:
    """Grid shapes from the coarsest (index 0) to the full grid (index ``n_stages``).

    Each stage's shape is ``ceil(n / 2**(n_stages - i))``, so an x2 upsample of one stage
    covers the next, which then crops at most one row/column.
    """
    return [
        (math.ceil(nlat / 2 ** (n_stages - i)), math.ceil(nlon / 2 ** (n_stages - i)))
        for i in range(n_stages + 1)
    ]


def pad_field(x: jax.Array, width: int = 1, periodic: bool = False) -> jax.Array:
    """Pad ``[batch, lat, lon, channel]`` by ``width`` on both spatial axes.

    Latitude repeats the edge row; longitude wraps when ``periodic`` (so column ``-1``
    sits left of column ``0``) and repeats the edge column otherwise.
    """
    x = jnp.pad(x, ((0, 0), (width, width), (0, 0), (0, 0)), mode="edge")
    return jnp.pad(x, ((0, 0), (0, 0), (width, width), (0, 0)), mode="wrap" if periodic else "edge")


def _upsample2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 upsampling of ``[batch, lat, lon, channel]``."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=_DIMENSION_NUMBERS
    )


@jax.custom_vjp
def conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 ``VALID`` convolution, ``[b, h, w, cin] x [kh, kw, cin, cout]``.

    Same values and gradients as :func:`jax.lax.conv_general_dilated`, but the
    input-gradient is written out as a plain convolution with the flipped, transposed
    kernel held behind :func:`jax.lax.optimization_barrier`. Without this, XLA on CPU
    computed the input-gradient inside ``lax.fori_loop`` (where NUTS runs) through a slow
    convolution path: 6.6 ms instead of 0.7 ms for the NCEP decoder
    (analysis/decoder/bench_decoder.py;
    same symptom as jax-ml/jax#12868).

    Being a custom VJP, it supports reverse mode (``grad``, ``jacrev``) and forward over
    reverse (``jax.hessian``), but not pure forward mode (``jvp``, ``jacfwd``): use
    ``jacrev`` for decoder Jacobians.
    """
    return _conv_valid(x, kernel)


def _conv_valid_fwd(x, kernel):
    return _conv_valid(x, kernel), (x, kernel)


def _conv_valid_bwd(res, g):
    x, kernel = res
    kh, kw = kernel.shape[:2]
    flipped = jax.lax.optimization_barrier(jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
    g_pad = jnp.pad(g, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    gx = _conv_valid(g_pad, flipped)
    gk = jax.vjp(lambda k: _conv_valid(x, k), kernel)[1](g)[0]
    return gx, gk


conv_valid.defvjp(_conv_valid_fwd, _conv_valid_bwd)


class PaddedConv(nn.Module):
    """3x3 convolution after explicit (edge / periodic) padding; stride 1 keeps the shape.

    Stride 1 uses :func:`conv_valid` (fast input-gradient in loops); stride 2 (encoder
    only, never differentiated inside a sampler) uses ``flax.linen.Conv``.
    """

    features: int
    periodic: bool
    strides: int = 1

    @nn.compact
    def __call__(self, x):  # [batch, lat, lon, cin] -> [batch, lat', lon', features]
        x = pad_field(x, 1, self.periodic)
        if self.strides != 1:
            return nn.Conv(self.features, (3, 3), strides=self.strides, padding="VALID")(x)
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return conv_valid(x, kernel) + bias


class Decoder(nn.Module):
    """``z [..., latent_dim] -> normalised field [..., nlat, nlon]``."""

    config: VAEConfig

    @nn.compact
    def __call__(self, z):
        c = self.config
        act = getattr(jax.nn, c.activation)
        batch_shape = z.shape[:-1]
        z2 = z.reshape(-1, c.latent_dim)
        shapes = stage_shapes(c.nlat, c.nlon, len(c.channels))
        h0, w0 = shapes[0]
        h = nn.Dense(h0 * w0 * c.channels[0], name="dense_in")(z2)
        h = act(h.reshape(-1, h0, w0, c.channels[0]))  # [b, h0, w0, c0]
        for i, ch in enumerate(c.channels):
            hi, wi = shapes[i + 1]
            h = _upsample2(h)[:, :hi, :wi]
            h = act(PaddedConv(ch, c.periodic, name=f"conv{i}")(h))
            for j in range(c.res_blocks):
                r = act(PaddedConv(ch, c.periodic, name=f"res{i}_{j}a")(h))
                h = act(h + PaddedConv(ch, c.periodic, name=f"res{i}_{j}b")(r))
        out = PaddedConv(1, c.periodic, name="conv_out")(h)[..., 0]  # [b, nlat, nlon]
        if c.linear_path:
            out = out + nn.Dense(c.nlat * c.nlon, name="linear")(z2).reshape(-1, c.nlat, c.nlon)
        return out.reshape(*batch_shape, c.nlat, c.nlon)


class Encoder(nn.Module):
    """``field [..., nlat, nlon] -> (mean, logvar)``, each ``[..., latent_dim]``."""

    config: VAEConfig

    @nn.compact
    def __call__(self, x):
        c = self.config
        act = getattr(jax.nn, c.activation)
        batch_shape = x.shape[:-2]
        x2 = x.reshape(-1, c.nlat, c.nlon)
        h = x2[..., None]
        # Strided convs only: the encoder is needed for training and for representation
        # error, never inside a sampler, and full-resolution convs dominate training cost.
        for i, ch in enumerate(reversed(c.channels)):
            h = act(PaddedConv(ch, c.periodic, strides=2, name=f"down{i}")(h))
        h = h.reshape(h.shape[0], -1)
        out = nn.Dense(2 * c.latent_dim, name="dense_out")(h)
        if c.linear_path:
            out = out + nn.Dense(2 * c.latent_dim, name="linear")(x2.reshape(x2.shape[0], -1))
        mean, logvar = jnp.split(out, 2, axis=-1)
        return (
            mean.reshape(*batch_shape, c.latent_dim),
            logvar.reshape(*batch_shape, c.latent_dim),
        )


class VAE(nn.Module):
    """Encoder, decoder and a learned scalar log-variance of the decoder noise.

    ``__call__(x, rng)`` returns ``(recon, mean, logvar, log_noise_var)`` for a
    reparameterised draw of ``z``; use ``method="decode"`` / ``method="encode"`` for the
    halves.
    """

    config: VAEConfig

    def setup(self):
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        # Decoder noise variance in normalised units; learning it keeps the KL weight
        # meaningful (a fixed unit variance would over-smooth).
        self.log_noise_var = self.param("log_noise_var", nn.initializers.zeros, ())

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def __call__(self, x, rng):
        mean, logvar = self.encoder(x)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
        return self.decoder(z), mean, logvar, self.log_noise_var


def kl_divergence(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` summed over the last axis, nats."""
    return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=-1)
