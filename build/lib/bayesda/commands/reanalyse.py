"""``bayesda reanalyse``: assimilate every observed time of a period into a zarr store.

Example::

    bayesda reanalyse --model models/ncep-air --obs obs.csv \
        --start 2014-01-01 --end 2014-01-31 --out runs/jan2014.zarr --scheduler local

Interrupt it at any moment and run the same command again: it finishes the times not yet
done (see :mod:`bayesda.store`).
"""

from __future__ import annotations

__all__ = ["cmd_reanalyse", "register"]


def register(subparsers) -> None:
    """Add ``reanalyse``."""
    from bayesda.commands.options import add_settings_args
    from bayesda.reanalysis import ReanalysisSettings
    from bayesda.settings import REANALYSIS

    d = ReanalysisSettings()
    p = subparsers.add_parser("reanalyse", help="assimilate many times into a resumable zarr store")
    p.add_argument("--model", required=True, help="model directory (bayesda.checkpoint)")
    p.add_argument(
        "--obs",
        required=True,
        help="observations with a time column (CSV/netCDF), or a directory of per-time files",
    )
    p.add_argument(
        "--absolute", action="store_true", help="obs values are temperatures, not anomalies"
    )
    p.add_argument("--units", default="K", help="units of obs values: K or degC")
    p.add_argument("--start", default=None, help="first time (inclusive); default: first observed")
    p.add_argument("--end", default=None, help="last time (inclusive); default: last observed")
    p.add_argument("--out", required=True, help="zarr store to create or resume")
    add_settings_args(p, REANALYSIS, full=False)
    p.add_argument(
        "--keep-samples",
        type=int,
        default=d.keep_samples,
        help="posterior field samples to store per time",
    )
    p.add_argument(
        "--batch-times",
        type=int,
        default=d.batch_times,
        help="times per compiled NUTS program (chains of several times side by side; "
        "pays off on a GPU, see analysis/results/bench_reanalysis.md)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="'local' for a local Dask cluster, or a scheduler address; default: this process",
    )
    p.add_argument("--workers", type=int, default=None, help="workers of the local Dask cluster")
    p.set_defaults(func=cmd_reanalyse)


def cmd_reanalyse(args) -> int:
    from pathlib import Path

    import xarray as xr

    from bayesda.checkpoint import load_model
    from bayesda.commands.options import settings_from_args
    from bayesda.reanalysis import ReanalysisSettings, read_obs_source, reanalyse

    model_dir = Path(args.model)
    prior = load_model(model_dir)
    obs = read_obs_source(
        args.obs,
        climatology=prior.climatology,
        kind="absolute" if args.absolute else "anomaly",
        units=args.units,
        grid=prior.grid,
    )
    kw = settings_from_args(args)
    settings = ReanalysisSettings.from_settings(
        kw["sampler"],
        kw["options"],
        seed=kw["seed"],
        keep_samples=args.keep_samples,
        batch_times=args.batch_times,
    )
    out = reanalyse(
        model_dir,
        obs,
        args.out,
        start=args.start,
        end=args.end,
        settings=settings,
        scheduler=args.scheduler,
        n_workers=args.workers,
        progress=kw["progress_bar"],
    )
    ds = xr.open_zarr(out, consolidated=False)
    verdicts = ds["verdict"].values
    print(
        f"{out}: {int(ds['done'].sum())}/{ds.sizes['time']} times done; "
        f"verdicts PASS {int((verdicts == 0).sum())}, WARN {int((verdicts == 1).sum())}, "
        f"FAIL {int((verdicts == 2).sum())}"
    )
    return 0
