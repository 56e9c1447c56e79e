"""Assimilation skill on the simulated weather: bayesda vs OI vs climatology (perfect model).

The truth is a held-out Held-Suarez field (test blocks of the time-block split); observations
are that field's anomaly at fixed network locations plus N(0, sigma^2) noise. Methods and
scoring are those of :mod:`analysis.skill.benchmark_skill` (scores at unobserved grid points with
:func:`bayesda.verify.metrics.verify`): bayesda NUTS and MAP + Laplace with a model trained by
:mod:`analysis.osse.osse_train`, OI with the (2%-shrunk) sample covariance of the same training
fields, climatology, and optionally the original optimise-and-restart method.

Usage::

    python -m analysis.osse.osse_assimilate \\
        --model-dir ~/.cache/bayesda/osse/models/base-d64 --n-times 60 --stride 6 \\
        --networks uniform-20 uniform-50 uniform-200 station-20 \\
        station-50 station-200

Writes analysis/osse/results/osse_skill{SUFFIX}.{md,csv} and
osse_calibration{SUFFIX}_*.png there.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import pathlib
import platform
import time as _time

import analysis.common.skill as bs
import bayesda
from analysis.common.io import atomic_write, command, results_dir
from analysis.common.osse import open_field
from analysis.common.prior import with_repr_error
from bayesda.geo.grid import Grid
from bayesda.verify import baselines


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model-dir",
        type=pathlib.Path,
        default=None,
        help="bayesda model; without it only oi and climatology run",
    )
    p.add_argument("--store", default=None)
    p.add_argument(
        "--var",
        default="tas",
        help="tas (Held-Suarez) or a QG variable (bayesda.sim.qg): q, psi, ...",
    )
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="observation error SD (default 0.5), var's units",
    )
    p.add_argument("--max-snapshots", type=int, default=None)
    p.add_argument("--n-times", type=int, default=60)
    p.add_argument(
        "--networks",
        nargs="+",
        default=[
            "uniform-20",
            "uniform-50",
            "uniform-200",
            "station-20",
            "station-50",
            "station-200",
        ],
    )
    p.add_argument(
        "--methods", nargs="+", default=["nuts", "laplace", "oi", "climatology"], choices=bs.METHODS
    )
    p.add_argument("--stride", type=int, default=6, help="NUTS/restarts at every k-th time")
    p.add_argument(
        "--restarts-stride", type=int, default=None, help="restarts at every k-th time (--stride)"
    )
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--repr-error",
        default=None,
        metavar="STRUCTURE",
        help="re-estimate the model's representation error with this structure "
        "(bayesda.prior.representation.from_residuals: e.g. 400 = empirical rank 400, "
        "matern32; or homogeneous: bayesda.prior.representation.homogeneous, for the doubly "
        "periodic QG grid) from its residuals on the validation fields; default: the model's own",
    )
    p.add_argument(
        "--far",
        default=None,
        metavar="START:STOP",
        help="score on snapshots START:STOP of the store (a later period, disjoint from the "
        "training span of --max-snapshots) instead of the block-split test fields",
    )
    p.add_argument(
        "--oi-covariance",
        choices=("sample", "homogeneous"),
        default="sample",
        help="OI's background covariance: the (2%%-shrunk) training sample covariance, or "
        "its translation average on a doubly periodic grid (QG; "
        "bayesda.prior.representation.homogeneous at full rank)",
    )
    p.add_argument("--suffix", default="")
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("osse"))
    return p.parse_args(argv)


def load_fields(args):
    """Training and test fields of ``--var`` (the block split, or ``--far`` test fields),
    the prior (or none: baselines only) and the climatology they are anomalies of."""
    from bayesda.data.split import split_dataset
    from bayesda.prior.checkpoint import load_model

    if args.far is None:
        tas = open_field(args.var, args.store, args.max_snapshots)
        train_t, test_t = split_dataset(tas)
    else:
        start, stop = (int(v) for v in args.far.split(":"))
        if args.max_snapshots is None or start < args.max_snapshots:
            raise SystemExit(f"--far {args.far} must start after --max-snapshots (training span)")
        tas = open_field(args.var, args.store, stop)
        train_t, _ = split_dataset(tas.isel(time=slice(0, args.max_snapshots)))
        test_t = tas.isel(time=slice(start, stop))
    if args.model_dir is not None:
        prior = load_model(args.model_dir)
        clim = prior.climatology
    else:
        from bayesda.data.climatology import Climatology

        prior, clim = None, Climatology.fit(train_t, n_harmonics=0)
        args.methods = [m for m in args.methods if m in ("oi", "climatology")]
    return tas, clim.to_anomaly(train_t), clim.to_anomaly(test_t), prior, clim


def bench_config(args):
    """The skill benchmark's settings for these arguments."""
    networks = tuple((s.split("-")[0], int(s.split("-")[1])) for s in args.networks)
    return dataclasses.replace(
        bs.FULL,
        n_times=args.n_times,
        networks=networks,
        methods=tuple(args.methods),
        chains=args.chains,
        warmup=args.warmup,
        draws=args.draws,
        expensive_stride=args.stride,
        method_strides=(("restarts", args.restarts_stride),) if args.restarts_stride else (),
        seed=args.seed,
        **({"sigma": args.sigma} if args.sigma is not None else {}),
    )


def background(train, grid, oi_covariance: str):
    """OI's background covariance: the shrunk sample covariance, or its translation average
    (``homogeneous``, doubly periodic grids)."""
    if oi_covariance == "homogeneous":
        import numpy as np

        from bayesda.prior.representation import homogeneous

        full = homogeneous(train.values, var_fraction=1.0, max_rank=grid.size)
        f = full.factor.reshape(full.rank, -1).astype(np.float64)
        cov = f.T @ f + np.diag(full.diag_var.reshape(-1).astype(np.float64))
        return baselines.BackgroundCovariance.from_matrix(cov, grid)
    return baselines.BackgroundCovariance.from_anomalies(
        train, shrinkage=baselines.DEFAULT_SHRINKAGE
    )


def run(cfg, methods, test, grid, t_total: float):
    """Every network at every held-out time: the summary table, curves, points, time indices."""
    tidx = bs.held_out_times(test, cfg.n_times)
    rows, curves, points, walls = [], {}, {}, {}
    for k, (kind, n) in enumerate(cfg.networks):
        r, c, p, w = bs.assimilate_network(cfg, methods, test, tidx, k, grid)
        rows += r
        curves.update(c)
        points.update(p)
        for method, times in w.items():
            walls[(method, f"{kind}-{n}")] = times
        print(f"{kind}-{n} done at {_time.perf_counter() - t_total:.0f} s", flush=True)
    return bs.summarise(rows, walls, cfg), curves, points, tidx


def markdown(summary, cfg, meta: dict, var: str, units: str) -> str:
    """The skill benchmark's table, worded for the simulated fields and ``var``'s units."""
    source = "Held-Suarez" if var == "tas" else f"QG, variable {var} in {units}"
    text = bs.markdown(summary, cfg, meta).replace(
        "held-out NCEP fields", f"held-out simulated ({source}) fields"
    )
    if var != "tas":  # benchmark_skill writes NCEP's unit
        text = text.replace("(K)", f"({units})").replace(f"{cfg.sigma} K,", f"{cfg.sigma} {units},")
    return text


def main(argv=None) -> None:
    args = parse_args(argv)
    t_total = _time.perf_counter()
    tas, train, test, prior, clim = load_fields(args)
    grid = Grid.from_xarray(train)
    if prior is not None and prior.grid != grid:
        raise ValueError(f"prior grid {prior.grid.shape} differs from the store's {grid.shape}")
    if prior is not None and args.repr_error is not None:
        prior = with_repr_error(prior, train, grid, args.repr_error)
    cfg = bench_config(args)
    methods = bs.make_methods(cfg, prior, background(train, grid, args.oi_covariance), clim)
    summary, curves, points, tidx = run(cfg, methods, test, grid, t_total)
    total = _time.perf_counter() - t_total
    times = test["time"].values[tidx]
    meta = dict(
        command=command(__spec__.name, argv),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, bayesda {bayesda.__version__}"
        f", load {os.getloadavg()[0]:.1f}",
        total_s=total,
        prior=str(args.model_dir.name) if args.model_dir else "none (baselines only)",
        n_times=len(tidx),
        time_range=f"{str(times[0])[:10]} .. {str(times[-1])[:10]} (simulated calendar)",
    )
    out_dir = args.out_dir
    csv = out_dir / f"osse_skill{args.suffix}.csv"
    md = out_dir / f"osse_skill{args.suffix}.md"
    atomic_write(csv, lambda tmp: summary.to_csv(tmp, index=False, float_format="%.5g"))
    text = markdown(summary, cfg, meta, args.var, tas.attrs.get("units", "K"))
    atomic_write(md, lambda tmp: pathlib.Path(tmp).write_text(text))
    bs.figures(curves, points, cfg, out_dir, prefix=f"osse_calibration{args.suffix}_")
    print(f"wrote {csv}, {md}; total {total:.0f} s", flush=True)


if __name__ == "__main__":
    bayesda.set_host_device_count()  # one CPU device per chain, before any JAX computation
    bayesda.enable_compilation_cache()
    main()
