"""What a Gaussian misses in the simulated (Held-Suarez) weather.

For each variable of the OSSE store: per-pixel skewness and excess kurtosis of the training
anomalies (maps and zonal means), the variance that PCA-d keeps, and statistics of the
horizontal gradient (fronts) in 30-60 degree bands, each against a Gaussian surrogate with
exactly the training sample covariance (the best Gaussian prior fitted to these fields).

Usage::

    python -m analysis.gaussianity.osse_stats [--store PATH] [--max-snapshots N]

Writes analysis/gaussianity/results/osse_stats.{json,md} and osse_moments.png there.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from analysis.common.io import command, results_dir
from analysis.common.osse import cos_weights, load, store_summary
from bayesda.data.fieldstats import (
    gaussian_surrogate,
    moments,
    pca_variance_kept,
    summarise_gradients,
)

DIMS = (32, 64, 128, 256)
THRESHOLDS = {
    "tas": (1.0, 2.0, 3.0),
    "ps": (1.0, 2.0, 4.0),
    "ua": (1.0, 2.0, 4.0),
    "va": (1.0, 2.0, 4.0),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None)
    p.add_argument("--max-snapshots", type=int, default=None)
    p.add_argument("--variables", default="tas,ps,ua,va")
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("gaussianity"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    out: dict = {
        "command": command(__spec__.name, [])
        + (f" --max-snapshots {args.max_snapshots}" if args.max_snapshots else "")
    }
    maps = {}
    path = args.out_dir / "osse_stats.json"
    if path.exists():  # keep other variables of the same data (one variable per call is fine)
        old = json.loads(path.read_text())
        if old.get("command") == out["command"]:
            out.update({k: v for k, v in old.items() if k in ("tas", "ps", "ua", "va")})
    for var in args.variables.split(","):
        d = load(var, args.store, args.max_snapshots)
        out.setdefault("store", store_summary(d.attrs, len(d.train) + len(d.test)))
        out.setdefault("n_train", len(d.train))
        out.setdefault("n_test", len(d.test))
        skew, kurt = moments(d.train)
        sur = gaussian_surrogate(d.train, min(len(d.train), 1500), seed=1)
        sskew, skurt = moments(sur)
        w = cos_weights(d.lat, len(d.lon))
        grad = summarise_gradients(d.train, d.lat, d.lon, thresholds=THRESHOLDS[var])
        grad_g = summarise_gradients(sur, d.lat, d.lon, thresholds=THRESHOLDS[var])
        band = (np.abs(d.lat) >= 30) & (np.abs(d.lat) <= 60)
        out[var] = {
            "anomaly_sd": float(d.train.std()),
            "skewness": {
                "min": float(skew.min()),
                "max": float(skew.max()),
                "mean_abs": float(np.abs(skew).mean()),
                "mean_abs_30_60": float(np.abs(skew[band]).mean()),
                "gaussian_surrogate_mean_abs": float(np.abs(sskew).mean()),
            },
            "excess_kurtosis": {
                "min": float(kurt.min()),
                "max": float(kurt.max()),
                "mean": float(kurt.mean()),
                "gaussian_surrogate_mean": float(skurt.mean()),
                "gaussian_surrogate_max_abs": float(np.abs(skurt).max()),
            },
            "zonal_mean_skewness": [round(float(v), 3) for v in skew.mean(axis=1)],
            "zonal_mean_kurtosis": [round(float(v), 3) for v in kurt.mean(axis=1)],
            "pca_variance_kept": pca_variance_kept(d.train, DIMS),
            "pca_variance_kept_area_weighted": pca_variance_kept(d.train, DIMS, w),
            "gradient_30_60": grad,
            "gradient_30_60_gaussian": grad_g,
        }
        maps[var] = (skew, kurt)
        print(var, json.dumps({k: v for k, v in out[var].items() if "zonal" not in k}), flush=True)
        out["lat"] = [round(float(v), 3) for v in d.lat]
        out["wall_seconds"] = round(time.perf_counter() - t0, 1)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n")
        (args.out_dir / "osse_stats.md").write_text(markdown(out))
    figure(maps, d.lat, d.lon, args.out_dir / "osse_moments.png")


def markdown(o: dict) -> str:
    lines = [
        "# What a Gaussian misses in the simulated weather (Held-Suarez, dinosaur)",
        "",
        f"Command: `{o['command']}`. Store: {json.dumps(o['store'])}. Training anomalies "
        f"(time-block split): {o['n_train']} fields; test {o['n_test']}. Gaussian = draws "
        "from N(mean, training sample covariance), min(n_train, 1500) of them.",
        "",
        "| variable | anomaly SD | skewness min / max (mean abs; Gaussian) | excess kurtosis "
        "min / max (mean; Gaussian max abs) | PCA variance kept d=32/64/128/256 |",
        "|---|---|---|---|---|",
    ]
    for var in ("tas", "ps", "ua", "va"):
        if var not in o:
            continue
        v = o[var]
        s, k, pv = v["skewness"], v["excess_kurtosis"], v["pca_variance_kept"]
        lines.append(
            f"| {var} | {v['anomaly_sd']:.2f} | {s['min']:.2f} / {s['max']:.2f} "
            f"({s['mean_abs']:.2f}; {s['gaussian_surrogate_mean_abs']:.2f}) | "
            f"{k['min']:.2f} / {k['max']:.2f} ({k['mean']:.2f}; "
            f"{k['gaussian_surrogate_max_abs']:.2f}) | "
            + " / ".join(f"{pv[d]:.3f}" for d in sorted(pv, key=int))
            + " |"
        )
    lines += [
        "",
        "Horizontal gradients, 30-60 degrees N and S (units per 100 km): data vs "
        "Gaussian with the same covariance",
        "",
        "| variable | mean abs | 99th pct | 99.9th pct | d/dx excess kurtosis | "
        "d/dx skewness | fraction above thresholds |",
        "|---|---|---|---|---|---|---|",
    ]
    for var in ("tas", "ps", "ua", "va"):
        if var not in o:
            continue
        a, g = o[var]["gradient_30_60"], o[var]["gradient_30_60_gaussian"]
        fr = ", ".join(
            f">{t}: {a['frac_above'][t]:.4f} vs {g['frac_above'][t]:.4f}" for t in a["frac_above"]
        )
        lines.append(
            f"| {var} | {a['mean_abs_grad']:.3f} vs {g['mean_abs_grad']:.3f} | "
            f"{a['p99_abs_grad']:.3f} vs {g['p99_abs_grad']:.3f} | "
            f"{a['p999_abs_grad']:.3f} vs {g['p999_abs_grad']:.3f} | "
            f"{a['ddx_excess_kurtosis']:.2f} vs {g['ddx_excess_kurtosis']:.2f} | "
            f"{a['ddx_skewness']:.2f} vs {g['ddx_skewness']:.2f} | {fr} |"
        )
    return "\n".join(lines) + "\n"


def figure(maps, lat, lon, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(maps), 2, figsize=(10, 2.4 * len(maps)), squeeze=False)
    for i, (var, (skew, kurt)) in enumerate(maps.items()):
        for j, (name, m, lim) in enumerate((("skewness", skew, 1.5), ("excess kurtosis", kurt, 3))):
            ax = axes[i, j]
            im = ax.pcolormesh(lon, lat, m, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="auto")
            ax.set_title(f"{var}: {name}", fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
