"""Time the decoder's value-and-gradient w.r.t. z: alone and inside ``lax.fori_loop``.

One leapfrog step of NUTS costs one such evaluation, and NUTS runs it inside a JAX loop,
where XLA on CPU once took a slow path for convolution input-gradients (FINDINGS.md,
jax-ml/jax#12868). ``bayesda.prior.vae.conv_valid`` works around it with a custom VJP; this
script measures the shipped decoder both with that workaround and with plain
``lax.conv_general_dilated`` gradients, for comparison (:mod:`analysis.common.decoder`).

Usage::

    BAYESDA_DATA_DIR=../shared/data python -m analysis.decoder.bench_decoder \\
        --model models/ncep-air --out analysis/decoder/results/vae_bench_decoder.json
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

import bayesda
from analysis.common.decoder import bench_model
from analysis.common.io import results_dir
from analysis.common.settings import STATED


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
    from bayesda.settings import SamplerSettings

    prior = load_model(model_dir)
    tas = load_dataset("ncep-air")["tas"]
    _, test = block_split(tas["time"].values)
    truth = prior.climatology.to_anomaly(tas.isel(time=int(np.flatnonzero(test)[0])))
    obs = pseudo_obs(truth, n_obs, sigma=0.5, seed=seed)
    mass = {} if dense_mass is None else {"mass": "dense" if dense_mass else "diag"}
    sampler = SamplerSettings(num_chains=2, num_warmup=200, num_samples=200, **mass)
    run = assimilate(prior, obs, sampler=sampler, options=STATED, seed=seed, progress_bar=False)
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
    parser.add_argument("--out", default=str(results_dir("decoder") / "vae_bench_decoder.json"))
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
