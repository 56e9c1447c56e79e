"""Skill of bayesda against baselines on held-out NCEP fields (issue 5).

For held-out times of the shared block split (:func:`bayesda.data.split.block_split`), spread
evenly over the test weeks (so over all seasons of both years), each observation network
(fixed locations, fresh N(0, sigma^2) noise per time) is assimilated by every method, and
the posterior is scored with :func:`bayesda.verify.metrics.verify` at unobserved grid points (not
nearest to any observation) and at all points.

Methods:
  nuts         bayesda, NUTS over the latent (:func:`bayesda.inference.assimilate.assimilate`)
  laplace      bayesda, MAP + Laplace in the latent
  oi           optimal interpolation, train covariance shrunk 2% to its diagonal
  restarts     the original method: Adam on the obs misfit, 10 random restarts
  climatology  anomaly 0, seasonal climatological SD

Networks, methods and scores are in :mod:`analysis.common.skill`.

Outputs: ``analysis/skill/results/skill.{md,csv}`` and ``calibration_*.png`` there
(``skill_quick.*`` and ``calibration_quick_*.png`` with ``--quick``).

Usage (from the repository root):
  python -m analysis.skill.benchmark_skill --quick
  python -m analysis.skill.benchmark_skill              # full: 60 times, 6 networks, ~1 h
  python -m analysis.skill.benchmark_skill --prior pca  # linear PCA stand-in prior
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import pathlib
import platform
import time as _time

import numpy as np
import pandas as pd
import xarray as xr

import bayesda
from analysis.common.io import ROOT, atomic_write, command, results_dir
from analysis.common.skill import (
    FULL,
    METHODS,
    NETWORK_KINDS,
    QUICK,
    BenchConfig,
    assimilate_network,
    figures,
    held_out_times,
    make_methods,
    markdown,
    summarise,
)
from bayesda.geo.grid import Grid
from bayesda.verify import baselines

RESULTS = results_dir("skill")


def load_split(prior) -> tuple[xr.DataArray, xr.DataArray, object]:
    """Train/test anomalies ``(time, lat, lon)`` and the climatology used to make them."""
    from bayesda.data.climatology import Climatology
    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import split_dataset

    tas = load_dataset("ncep-air")["tas"]
    train, test = split_dataset(tas)
    clim = getattr(prior, "climatology", None) if prior is not None else None
    if clim is None:
        clim = Climatology.fit(train)
    return clim.to_anomaly(train), clim.to_anomaly(test), clim


def pca_prior(train: xr.DataArray, latent_dim: int = 32):
    """A linear-Gaussian stand-in prior: the leading EOFs of the training anomalies.

    ``g(z) = sum_k s_k v_k z_k / sqrt(n)`` (so ``z ~ N(0, I)`` reproduces the EOF variances),
    representation error estimated from the truncation residuals of 500 training fields.
    """
    from bayesda.prior.generative import linear_prior
    from bayesda.prior.representation import estimate

    grid = Grid.from_xarray(train)
    x = train.values.reshape(train.sizes["time"], -1).astype(np.float64)
    _, s, vt = np.linalg.svd(x / np.sqrt(x.shape[0]), full_matrices=False)
    weight = (s[:latent_dim, None] * vt[:latent_dim]).T.reshape(*grid.shape, latent_dim)
    sub = x[:: max(1, x.shape[0] // 500)]
    resid = sub - (sub @ vt[:latent_dim].T) @ vt[:latent_dim]
    repr_error = estimate(resid.reshape(-1, *grid.shape), rank=16)
    return linear_prior(
        weight, np.zeros(grid.shape), grid, repr_error=repr_error, name=f"pca{latent_dim}"
    )


def load_prior(kind: str, model_dir: pathlib.Path, train: xr.DataArray | None):
    if kind == "model":
        from bayesda.prior.checkpoint import load_model

        return load_model(model_dir)
    return pca_prior(train)


def run(
    cfg: BenchConfig,
    prior_kind: str,
    model_dir: pathlib.Path,
    out_dir: pathlib.Path,
    fig_dir: pathlib.Path,
    quick: bool,
    command: str,
) -> pd.DataFrame:
    """The whole benchmark; writes the table, CSV and figures and returns the summary."""
    t_total = _time.perf_counter()
    prior = load_prior("model", model_dir, None) if prior_kind == "model" else None
    train, test, clim = load_split(prior)
    if prior is None:
        prior = load_prior(prior_kind, model_dir, train)
    grid = Grid.from_xarray(train)
    if prior.grid != grid:
        raise ValueError(f"prior grid {prior.grid.shape} differs from the NCEP grid {grid.shape}")
    t0 = _time.perf_counter()
    bg = baselines.BackgroundCovariance.from_anomalies(train, shrinkage=baselines.DEFAULT_SHRINKAGE)
    print(
        f"background covariance ({train.sizes['time']} train times): "
        f"{_time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    methods = make_methods(cfg, prior, bg, clim)
    tidx = held_out_times(test, cfg.n_times)

    rows, curves, points, walls = [], {}, {}, {}
    for k, (kind, n) in enumerate(cfg.networks):
        r, c, p, w = assimilate_network(cfg, methods, test, tidx, k, grid)
        rows += r
        curves.update(c)
        points.update(p)
        for method, times in w.items():
            walls[(method, f"{kind}-{n}")] = times
            steady = times[1:] if len(times) > 1 else times
            print(
                f"{kind}-{n:<8d} {method:12s} first {times[0]:7.2f} s, "
                f"then mean {np.mean(steady):7.2f} s / time ({len(times)} times)",
                flush=True,
            )
    summary = summarise(rows, walls, cfg)

    total = _time.perf_counter() - t_total
    times = test["time"].values[tidx]
    meta = dict(
        command=command,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, bayesda {bayesda.__version__}",
        total_s=total,
        prior=getattr(prior, "name", prior_kind),
        n_times=len(tidx),
        time_range=f"{str(times[0])[:10]} .. {str(times[-1])[:10]}",
    )
    suffix = "_quick" if quick else ""
    csv = out_dir / f"skill{suffix}.csv"
    md = out_dir / f"skill{suffix}.md"
    atomic_write(csv, lambda tmp: summary.to_csv(tmp, index=False, float_format="%.5g"))
    atomic_write(md, lambda tmp: pathlib.Path(tmp).write_text(markdown(summary, cfg, meta)))
    figs = figures(curves, points, cfg, fig_dir, prefix=f"calibration{suffix}_")
    print(f"wrote {csv}, {md}, {', '.join(map(str, figs))}; total {total:.0f} s", flush=True)
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="6 times, one network (uniform-50): a few minutes"
    )
    p.add_argument(
        "--prior",
        choices=("model", "pca"),
        default="model",
        help="shipped VAE or a linear PCA stand-in",
    )
    p.add_argument("--model-dir", type=pathlib.Path, default=ROOT / "models" / "ncep-air")
    p.add_argument("--methods", nargs="+", choices=METHODS, help="subset of methods")
    p.add_argument("--n-times", type=int, help="override the number of held-out times")
    p.add_argument("--networks", nargs="+", help="override networks, e.g. uniform-50 station-200")
    p.add_argument("--warmup", type=int)
    p.add_argument("--draws", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--stride", type=int, help="run nuts and restarts at every k-th time only")
    p.add_argument("--out-dir", type=pathlib.Path, default=RESULTS)
    p.add_argument("--fig-dir", type=pathlib.Path, default=RESULTS)
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    cfg = QUICK if args.quick else FULL
    changes = {}
    if args.methods:
        changes["methods"] = tuple(args.methods)
    if args.n_times:
        changes["n_times"] = args.n_times
    if args.networks:
        nets = []
        for item in args.networks:
            kind, _, n = item.partition("-")
            if kind not in NETWORK_KINDS or not n.isdigit():
                raise SystemExit(f"bad network {item!r}; expected e.g. uniform-50 or station-200")
            nets.append((kind, int(n)))
        changes["networks"] = tuple(nets)
    for name in ("warmup", "draws", "seed"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.stride is not None:
        if args.stride < 1:
            raise SystemExit(f"--stride {args.stride} must be >= 1")
        changes["expensive_stride"] = args.stride
    return dataclasses.replace(cfg, **changes)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args)
    cmd = command(__spec__.name, argv)
    run(cfg, args.prior, args.model_dir, args.out_dir, args.fig_dir, args.quick, cmd)
    return 0


if __name__ == "__main__":
    bayesda.set_host_device_count()  # one CPU device per chain, before any JAX computation
    bayesda.enable_compilation_cache()
    raise SystemExit(main())
