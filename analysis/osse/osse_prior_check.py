"""Prior samples against the simulated data: SD, zonal spectra, marginals, gradients.

Draws ``z ~ N(0, I)`` from a model trained by :mod:`analysis.osse.osse_train` and compares
``decode(z)`` (and ``decode(z) + r`` with the model's representation error) with held-out
test fields and with a Gaussian surrogate of the training fields.

Usage::

    python -m analysis.osse.osse_prior_check --model-dir ~/.cache/bayesda/osse/models/base-d64

Appends to analysis/osse/results/osse_prior_check.json (keyed by model name).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

import bayesda
from analysis.common.io import command, results_dir
from analysis.common.osse import load
from bayesda.data.fieldstats import gaussian_surrogate, moments, summarise_gradients


def zonal_spectrum(x: np.ndarray, lat: np.ndarray, band=(30.0, 60.0), kmax: int = 21):
    """Mean power per zonal wavenumber 0..kmax of ``x [n, lat, lon]`` in a latitude band."""
    sel = (np.abs(lat) >= band[0]) & (np.abs(lat) <= band[1])
    f = np.fft.rfft(x[:, sel, :], axis=-1)
    p = np.mean(np.abs(f) ** 2, axis=(0, 1)) / x.shape[-1] ** 2
    return p[: kmax + 1]


def describe(x, lat, lon):
    skew, kurt = moments(x)
    return {
        "sd_mean": float(x.std(axis=0).mean()),
        "mean_abs_skew": float(np.abs(skew).mean()),
        "mean_excess_kurtosis": float(kurt.mean()),
        "gradient_30_60": summarise_gradients(x, lat, lon),
        "zonal_spectrum_30_60": [float(v) for v in zonal_spectrum(x, lat)],
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=pathlib.Path, required=True)
    p.add_argument("--store", default=None)
    p.add_argument("--max-snapshots", type=int, default=None)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("osse"))
    args = p.parse_args(argv)
    import jax

    from bayesda.prior.checkpoint import load_model

    prior = load_model(args.model_dir)
    d = load(store=args.store, max_snapshots=args.max_snapshots)
    z = jax.random.normal(jax.random.key(7), (args.n, prior.latent_dim))
    samples = np.concatenate(
        [np.asarray(prior.decode(z[i : i + 500])) for i in range(0, args.n, 500)]
    )
    r = prior.repr_error.sample(np.random.default_rng(8), args.n)
    out = {
        "command": command(__spec__.name, argv),
        "test": describe(d.test, d.lat, d.lon),
        "gaussian": describe(gaussian_surrogate(d.train, args.n, seed=3), d.lat, d.lon),
        "prior_decode": describe(samples, d.lat, d.lon),
    }
    if r is not None:
        out["prior_decode_plus_repr"] = describe(samples + np.asarray(r), d.lat, d.lon)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "osse_prior_check.json"
    allres = json.loads(path.read_text()) if path.exists() else {}
    allres[args.model_dir.name] = out
    path.write_text(json.dumps(allres, indent=1) + "\n")
    for k, v in out.items():
        if k != "command":
            g = v["gradient_30_60"]
            print(
                f"{k:24s} sd {v['sd_mean']:.3f} |skew| {v['mean_abs_skew']:.3f} "
                f"kurt {v['mean_excess_kurtosis']:.3f} grad p99 {g['p99_abs_grad']:.3f} "
                f"ddx kurt {g['ddx_excess_kurtosis']:.3f} spectrum k=1..8 "
                + " ".join(f"{s:.3f}" for s in v["zonal_spectrum_30_60"][1:9])
            )


if __name__ == "__main__":
    bayesda.set_host_device_count()  # one CPU device per chain, before any JAX computation
    bayesda.enable_compilation_cache()
    main()
