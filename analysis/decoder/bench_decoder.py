"""Time the decoder's value-and-gradient w.r.t. z: alone and inside ``lax.fori_loop``.

One leapfrog step of NUTS costs one such evaluation, and NUTS runs it inside a JAX loop,
where XLA on CPU once took a slow path for convolution input-gradients (FINDINGS.md,
jax-ml/jax#12868). ``bayesda.prior.vae.conv_valid`` works around it with a custom VJP; this
script measures the shipped decoder both with that workaround and with plain
``lax.conv_general_dilated`` gradients, for comparison.

Usage::

    BAYESDA_DATA_DIR=../shared/data .venv/bin/python analysis/bench_decoder.py \\
        --model models/ncep-air --out analysis/results/vae_bench_decoder.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import bayesda


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
        vae.conv_valid = vae._conv_valid  # plain lax gradients, for comparison only
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


def bench_nuts(
    model_dir: str | pathlib.Path, *, n_obs: int = 50, seed: int = 0, dense_mass: bool | None = None
) -> dict:
    """NUTS gradients per second with the saved prior (2 chains, 200 + 200 draws).

    Observations: ``n_obs`` uniform pseudo-observations (sigma 0.5 K) of the first test
    field's anomaly (bayesda.obs.table.pseudo_obs). Uses bayesda.inference.assimilate.assimilate
    with its
    defaults, except ``dense_mass`` when given.
    """
    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import block_split
    from bayesda.inference.assimilate import assimilate
    from bayesda.obs.table import pseudo_obs
    from bayesda.prior.checkpoint import load_model

    prior = load_model(model_dir)
    tas = load_dataset("ncep-air")["tas"]
    _, test = block_split(tas["time"].values)
    truth = prior.climatology.to_anomaly(tas.isel(time=int(np.flatnonzero(test)[0])))
    obs = pseudo_obs(truth, n_obs, sigma=0.5, seed=seed)
    kwargs = {} if dense_mass is None else {"dense_mass": dense_mass}
    run = assimilate(
        prior,
        obs,
        num_chains=2,
        num_warmup=200,
        num_samples=200,
        seed=seed,
        progress_bar=False,
        **kwargs,
    )
    grads = run.grad_evals["sampling"]
    return {
        "n_obs": n_obs,
        "chains": 2,
        "dense_mass": "infer default" if dense_mass is None else dense_mass,
        "grad_evals": {k: int(v) for k, v in run.grad_evals.items()},
        "grad_evals_sampling": int(grads),
        "sampling_s": round(float(run.timings["sampling"]), 2),
        "gradients_per_s": round(float(grads / run.timings["sampling"]), 1),
        "timings_s": {k: round(float(v), 2) for k, v in run.timings.items() if k != "cache_hit"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/ncep-air")
    parser.add_argument("--out", default="analysis/results/vae_bench_decoder.json")
    parser.add_argument(
        "--nuts", action="store_true", help="also time NUTS (bayesda.inference.assimilate)"
    )
    parser.add_argument(
        "--dense-mass",
        choices=("default", "yes", "no"),
        default="default",
        help="NUTS mass matrix (default: bayesda.inference.assimilate's default)",
    )
    args = parser.parse_args()
    result = bench_model(args.model)
    if args.nuts:
        dense = {"default": None, "yes": True, "no": False}[args.dense_mass]
        result["nuts"] = bench_nuts(args.model, dense_mass=dense)
    print(json.dumps(result, indent=2))
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    bayesda.set_host_device_count()  # one CPU device per chain, before any JAX computation
    bayesda.enable_compilation_cache()
    main()
