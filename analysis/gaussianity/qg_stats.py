"""What a Gaussian misses in the quasi-geostrophic (QG) turbulence of bayesda.sim.qg.

For each variable of the QG store, on the training anomalies of the 7-day block split:
marginal moments (per-pixel skewness and excess kurtosis, share beyond 4 SD), the variance
PCA-d keeps, the distribution of the x-gradient (fronts and vortex edges), and the test of
low-dimensional nonlinear structure that decides whether a VAE of latent size ``d`` can beat
PCA-d at all (:func:`bayesda.data.fieldstats.quadratic_gain`: a quadratic decoder of the ``d``
leading PC scores, fitted on training fields, scored on held-out ones). Each statistic is
also computed on a Gaussian surrogate with exactly the training sample covariance and the
same sizes (the null: what the best Gaussian prior would give).

Usage::

    python -m analysis.gaussianity.qg_stats [--store PATH] [--max-snapshots N]

Writes analysis/gaussianity/results/qg_stats.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np

from analysis.common.io import command, results_dir
from analysis.common.osse import QG_UNITS, open_field, store_summary
from bayesda.data.fieldstats import (
    gaussian_surrogate,
    moments,
    quadratic_gain,
    training_eofs,
)
from bayesda.data.split import block_split

DIMS = (32, 64, 128, 256)
QUAD_DIMS = (8, 16, 32)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None, help="QG zarr store (default: the full preset)")
    p.add_argument("--max-snapshots", type=int, default=None)
    p.add_argument("--variables", default=",".join(QG_UNITS))
    p.add_argument("--null-dims", default="32", help="d at which the Gaussian null is run")
    p.add_argument(
        "--quad-dims", default=",".join(map(str, QUAD_DIMS)), help="d of the quadratic probe"
    )
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("gaussianity"))
    return p.parse_args(argv)


def gradient_stats(f: np.ndarray) -> dict:
    """Statistics of the centred x-difference (periodic) over all pixels and times."""
    g = 0.5 * (np.roll(f, -1, axis=-1) - np.roll(f, 1, axis=-1))
    g = g.ravel().astype(np.float64)
    sd = g.std()
    z = g / sd
    return {
        "sd": float(sd),
        "excess_kurtosis": float(np.mean(z**4) - 3.0),
        "p999_abs_over_sd": float(np.quantile(np.abs(z), 0.999)),
        "beyond_5sd": float(np.mean(np.abs(z) > 5)),
    }


def variable_stats(var: str, store, max_snapshots, null_dims, quad_dims=QUAD_DIMS) -> dict:
    da = open_field(var, store, max_snapshots)
    times = da["time"].values
    train_mask, test_mask = block_split(times)
    x = np.asarray(da.values, np.float64)
    mean = x[train_mask].mean(axis=0)
    train, test = x[train_mask] - mean, x[test_mask] - mean
    eofs = training_eofs(train)
    gauss = gaussian_surrogate(train, len(train) + len(test), seed=1, eofs=eofs)
    g_train, g_test = gauss[: len(train)], gauss[len(train) :]
    g_eofs = training_eofs(g_train) if null_dims else None
    sk, ku = moments(train)
    sk_g, ku_g = moments(g_train)
    sd = train.std(axis=0)
    out = {
        "variable": var,
        "units": da.attrs.get("units", ""),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "anomaly_sd": float(np.sqrt(np.mean(sd**2))),
        "mean_abs_skew": float(np.mean(np.abs(sk))),
        "mean_abs_skew_gaussian": float(np.mean(np.abs(sk_g))),
        "excess_kurtosis_mean": float(np.mean(ku)),
        "excess_kurtosis_max": float(np.max(ku)),
        "excess_kurtosis_max_gaussian": float(np.max(np.abs(ku_g))),
        "beyond_4sd": float(np.mean(np.abs(train) > 4 * sd)),
        "beyond_4sd_gaussian": float(np.mean(np.abs(g_train) > 4 * sd)),
        "pca_variance_kept": {
            str(d): float(np.sum(eofs[1][:d] ** 2) / np.sum(eofs[1] ** 2)) for d in DIMS
        },
        "gradient": gradient_stats(train),
        "gradient_gaussian": gradient_stats(g_train),
        "quadratic": {},
        "quadratic_gaussian": {},
    }
    for d in quad_dims:
        out["quadratic"][str(d)] = quadratic_gain(train, test, d, eofs=eofs)
        if d in null_dims:
            out["quadratic_gaussian"][str(d)] = quadratic_gain(g_train, g_test, d, eofs=g_eofs)
        print(f"{var} d={d}: quadratic / PCA {out['quadratic'][str(d)]['ratio']:.4f}", flush=True)
    return out


def markdown(o: dict) -> str:
    quad_dims = [int(d) for d in o["variables"][0]["quadratic"]]
    lines = [
        "# What a Gaussian misses in the QG turbulence (two-layer model, pyqg-jax)",
        "",
        f"Command: `{o['command']}` ({o['wall_s']:.0f} s at load {o['load']:.1f}). Store: "
        f"{json.dumps(o['store'])}. Training anomalies of the 7-day block split "
        "(every 4th block held out). 'Gaussian' = the same statistic on draws from "
        "N(mean, training sample covariance) of the same size. Quadratic ratio: held-out RMSE "
        "of PCA-d plus a ridge regression of its residual on the products of the d leading "
        "standardised PC scores, over the PCA-d RMSE (1 = no low-dimensional nonlinear "
        "structure; bayesda.data.fieldstats.quadratic_gain).",
        "",
        "| variable | units | anomaly SD | mean abs skew (Gaussian) | excess kurtosis mean / max "
        "(Gaussian max) | beyond 4 SD (Gaussian) | PCA variance kept d=32/64/128/256 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in o["variables"]:
        pv = " / ".join(f"{r['pca_variance_kept'][str(d)]:.3f}" for d in DIMS)
        lines.append(
            f"| {r['variable']} | {r['units']} | {r['anomaly_sd']:.3g} | "
            f"{r['mean_abs_skew']:.3f} ({r['mean_abs_skew_gaussian']:.3f}) | "
            f"{r['excess_kurtosis_mean']:.2f} / {r['excess_kurtosis_max']:.2f} "
            f"({r['excess_kurtosis_max_gaussian']:.2f}) | {r['beyond_4sd']:.1e} "
            f"({r['beyond_4sd_gaussian']:.1e}) | {pv} |"
        )
    lines += [
        "",
        "x-gradient (centred difference, all pixels and times) and the quadratic probe:",
        "",
        "| variable | gradient excess kurtosis (Gaussian) | 99.9th pct abs / SD (Gaussian) | "
        "beyond 5 SD (Gaussian) | "
        + " | ".join(f"quadratic / PCA d={d} (Gaussian)" for d in quad_dims)
        + " |",
        "|---|---|---|---|" + "---|" * len(quad_dims),
    ]
    for r in o["variables"]:
        g, gg = r["gradient"], r["gradient_gaussian"]
        quad = []
        for d in quad_dims:
            q = f"{r['quadratic'][str(d)]['ratio']:.4f}"
            if str(d) in r["quadratic_gaussian"]:
                q += f" ({r['quadratic_gaussian'][str(d)]['ratio']:.4f})"
            quad.append(q)
        lines.append(
            f"| {r['variable']} | {g['excess_kurtosis']:.2f} ({gg['excess_kurtosis']:.2f}) | "
            f"{g['p999_abs_over_sd']:.2f} ({gg['p999_abs_over_sd']:.2f}) | "
            f"{g['beyond_5sd']:.1e} ({gg['beyond_5sd']:.1e}) | " + " | ".join(quad) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    null_dims = {int(d) for d in args.null_dims.split(",") if d}
    quad_dims = tuple(int(d) for d in args.quad_dims.split(",") if d)
    rows = [
        variable_stats(v, args.store, args.max_snapshots, null_dims, quad_dims)
        for v in args.variables.split(",")
    ]
    first = open_field(args.variables.split(",")[0], args.store, args.max_snapshots)
    out = {
        "command": command(__spec__.name, argv),
        "store": store_summary(first.attrs, first.sizes["time"]),
        "wall_s": time.perf_counter() - t0,
        "load": os.getloadavg()[0],
        "variables": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "qg_stats.json").write_text(json.dumps(out, indent=1) + "\n")
    (args.out_dir / "qg_stats.md").write_text(markdown(out))
    print(markdown(out))


if __name__ == "__main__":
    main()
