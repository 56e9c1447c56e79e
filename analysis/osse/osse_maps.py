"""Maps of one perfect-model analysis: truth, bayesda mean and SD, OI mean (issue 10).

One held-out Held-Suarez time (the middle one of the 60 that ``osse_assimilate`` scores),
the 50-station network and observation noise of that script when it runs ``station-50``
alone (``--networks station-50``: network index 0, same seeds), assimilated by bayesda NUTS
(4 chains) and by OI with the training sample covariance. The grid is global with periodic
longitude; every panel shows the same longitudes (-180..174.375) and marks the observations.

Usage::

    python -m analysis.osse.osse_maps \\
        --model-dir ~/.cache/bayesda/osse/models/base-d32 --max-snapshots 6000

Writes analysis/osse/results/osse_maps.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

import numpy as np
import xarray as xr

import analysis.common.skill as bs
import bayesda
from analysis.common.io import atomic_write, results_dir
from analysis.common.osse import default_store

__all__ = ["main", "draw"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=pathlib.Path, required=True)
    p.add_argument("--store", default=None)
    p.add_argument("--max-snapshots", type=int, default=6000)
    p.add_argument("--network", default="station-50")
    p.add_argument("--n-times", type=int, default=60, help="as in osse_assimilate.py")
    p.add_argument("--which", type=int, default=30, help="index among the n-times held-out times")
    p.add_argument("--out", type=pathlib.Path, default=results_dir("osse") / "osse_maps.png")
    return p.parse_args(argv)


def draw(truth, panels: dict, obs, out: pathlib.Path, title: str) -> pathlib.Path:
    """Side-by-side maps: ``panels`` name -> ``(lat, lon)`` array; SD panels (name has "SD")
    get their own sequential colour scale, the others share the truth's diverging one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, lon = truth["lat"].values, truth["lon"].values
    fields = {"truth": truth.values, **panels}
    vmax = float(np.nanmax(np.abs(truth.values)))
    ncol = 2 if len(fields) == 4 else len(fields)
    nrow = -(-len(fields) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.0 * nrow + 0.6), squeeze=False)
    for ax, (name, values) in zip(axes.flat, fields.items(), strict=True):
        sd = "SD" in name
        mesh = ax.pcolormesh(
            lon,
            lat,
            values,
            cmap="viridis" if sd else "RdBu_r",
            vmin=0 if sd else -vmax,
            vmax=float(np.nanmax(values)) if sd else vmax,
            shading="nearest",
        )
        ax.scatter(obs["lon"], obs["lat"], s=10, c="k", marker="x", linewidths=0.8)
        ax.set_xlim(lon.min() - 2.8, lon.max() + 2.8)
        ax.set_ylim(-90, 90)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("longitude (deg E)", fontsize=7)
        ax.tick_params(labelsize=7)
        cb = fig.colorbar(mesh, ax=ax, shrink=0.85)
        cb.set_label("K", fontsize=7)
        cb.ax.tick_params(labelsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("latitude (deg N)", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return out


def main(argv=None) -> pathlib.Path:
    args = parse_args(argv)
    from bayesda.data.split import split_dataset
    from bayesda.geo.grid import Grid
    from bayesda.prior.checkpoint import load_model
    from bayesda.verify import baselines, metrics

    ds = xr.open_zarr(args.store or default_store(), consolidated=False)
    if args.max_snapshots:
        ds = ds.isel(time=slice(0, args.max_snapshots))
    prior = load_model(args.model_dir)
    clim = prior.climatology
    train_t, test_t = split_dataset(ds["tas"].load())
    train, test = clim.to_anomaly(train_t), clim.to_anomaly(test_t)
    grid = Grid.from_xarray(train)
    kind, n = args.network.split("-")
    # the same network, time and noise as osse_assimilate.py's single-network run (k = 0)
    cfg = bs.FULL
    lat, lon = bs.network_locations(grid, kind, int(n), seed=cfg.seed)
    tidx = bs.held_out_times(test, args.n_times)
    i = args.which
    truth = test.isel(time=tidx[i])
    t = truth["time"].values
    truth = truth.drop_vars("time")
    obs = bs.observe(truth, lat, lon, cfg.sigma, seed=cfg.seed * 1_000_003 + i)
    bg = baselines.BackgroundCovariance.from_anomalies(train, shrinkage=baselines.DEFAULT_SHRINKAGE)
    methods = bs.make_methods(dataclasses.replace(cfg, methods=("nuts", "oi")), prior, bg, clim)
    post = {m: fn(obs, t, cfg.seed + i) for m, fn in methods.items()}
    scores = {m: metrics.verify(p, truth, obs).sel(region="unobserved") for m, p in post.items()}
    label = ", ".join(
        f"{m}: RMSE {float(s['rmse']):.2f} K, CRPS {float(s['crps']):.2f} K"
        for m, s in scores.items()
    )
    out = draw(
        truth,
        {
            "bayesda mean (NUTS)": post["nuts"]["mean"].values,
            "bayesda SD": post["nuts"]["sd"].values,
            "OI mean (sample covariance)": post["oi"]["mean"].values,
        },
        obs,
        args.out,
        f"Held-Suarez T21 lowest-level temperature anomaly, held-out {str(t)[:13]}h, "
        f"{args.network} observations (x, sigma 0.5 K)\nunobserved points: {label}",
    )
    print(f"wrote {out}; {label}", flush=True)
    return out


if __name__ == "__main__":
    bayesda.set_host_device_count()
    bayesda.enable_compilation_cache()
    main()
