"""Timing the decoder's value-and-gradient w.r.t. ``z``: alone and inside ``lax.fori_loop``.

One leapfrog step of NUTS costs one such evaluation, and NUTS runs it inside a JAX loop.
:func:`bench_model` times a saved model's decoder with :func:`bayesda.prior.vae.conv_valid`
(the custom-VJP convolution the library uses) and with plain ``lax.conv_general_dilated``
gradients (:func:`plain_conv_valid`), for comparison.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np


def plain_conv_valid(x, kernel):
    """The stride-1 ``VALID`` convolution of :func:`bayesda.prior.vae.conv_valid`
    (``[b, h, w, cin] x [kh, kw, cin, cout]``) with JAX's own gradients (no custom VJP)."""
    import jax

    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def bench(decode, latent_dim: int, *, n_calls: int = 300, n_loop: int = 300, seed: int = 0) -> dict:
    """Milliseconds per value-and-grad of ``0.5 * sum(decode(z)**2)`` for one ``z``.

    Returns:
      ``{"ms_alone": ..., "ms_in_fori_loop": ...}``: median of 5 repeats, each of
      ``n_calls`` jitted calls (alone) or one jitted ``fori_loop`` of ``n_loop`` steps.
    """
    import jax
    import jax.numpy as jnp

    def energy(z):
        return 0.5 * jnp.sum(jnp.square(decode(z)))

    vg = jax.jit(jax.value_and_grad(energy))
    z0 = jax.random.normal(jax.random.key(seed), (latent_dim,))
    jax.block_until_ready(vg(z0))
    alone = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n_calls):
            out = vg(z0)
        jax.block_until_ready(out)
        alone.append((time.perf_counter() - t) / n_calls * 1e3)

    @jax.jit
    def loop(z):
        def body(_, z):
            v, g = jax.value_and_grad(energy)(z)
            return z - 1e-6 * g + 0.0 * v

        return jax.lax.fori_loop(0, n_loop, body, z)

    jax.block_until_ready(loop(z0))
    looped = []
    for _ in range(5):
        t = time.perf_counter()
        jax.block_until_ready(loop(z0))
        looped.append((time.perf_counter() - t) / n_loop * 1e3)
    return {
        "ms_alone": round(float(np.median(alone)), 3),
        "ms_in_fori_loop": round(float(np.median(looped)), 3),
    }


def bench_model(model_dir: str | pathlib.Path) -> dict:
    """Benchmark a saved model's decoder with and without the custom-VJP convolution."""
    import jax

    from bayesda.prior import vae
    from bayesda.prior.checkpoint import load_model

    prior = load_model(model_dir)
    result = {"custom_vjp_conv": bench(prior.decode, prior.latent_dim)}
    fast = vae.conv_valid
    try:
        vae.conv_valid = plain_conv_valid  # plain lax gradients, for comparison only
        plain = load_model(model_dir)
        result["plain_lax_conv"] = bench(plain.decode, plain.latent_dim)
    finally:
        vae.conv_valid = fast
    n_dec = sum(
        int(np.prod(v.shape))
        for k, v in np.load(pathlib.Path(model_dir) / "params.npz", allow_pickle=False).items()
        if k.startswith("decoder/")
    )
    result["decoder_params"] = n_dec
    result["latent_dim"] = prior.latent_dim
    result["grid"] = list(prior.grid.shape)
    result["device"] = str(jax.devices()[0])
    return result
