"""``bayesda reanalyse``: assimilate every observed time of a period into a zarr store.

Example::

    bayesda reanalyse --model models/ncep-air --obs obs.csv \
        --start 2014-01-01 --end 2014-01-31 --out runs/jan2014.zarr --scheduler local

Interrupt it at any moment and run the same command again: it finishes the times not yet
done (see :mod:`bayesda.outputs.store`). Every resume reads back the finished times and redoes
any whose data no longer match their checksum; ``--verify`` also prints the check's
result for every time.
"""

from __future__ import annotations

import sys

from bayesda.cli.argtypes import add_units_kind, kind_from_args, non_negative_int, positive_int

__all__ = ["cmd_reanalyse", "register"]


def register(subparsers) -> None:
    """Add ``reanalyse``."""
    from bayesda.cli.options import add_settings_args
    from bayesda.settings import REANALYSIS, ModelOptions, ReanalysisSettings

    d = ReanalysisSettings()
    p = subparsers.add_parser("reanalyse", help="assimilate many times into a resumable zarr store")
    p.add_argument("--model", required=True, help="model directory (bayesda.prior.checkpoint)")
    p.add_argument(
        "--obs",
        required=True,
        help="observations with a time column (CSV/netCDF), or a directory of per-time files",
    )
    add_units_kind(p)
    from bayesda.cli.assim import add_superob_arg

    add_superob_arg(p)
    p.add_argument("--start", default=None, help="first time (inclusive); default: first observed")
    p.add_argument("--end", default=None, help="last time (inclusive); default: last observed")
    p.add_argument("--out", required=True, help="zarr store to create or resume")
    add_settings_args(p, REANALYSIS, options=ModelOptions(errors="stated"), full=False)
    p.add_argument(
        "--keep-samples",
        type=non_negative_int,
        default=d.keep_samples,
        help="posterior field samples to store per time (>= 0; 0: summaries only)",
    )
    p.add_argument(
        "--batch-times",
        type=positive_int,
        default=d.batch_times,
        help="times per compiled NUTS program (chains of several times side by side; "
        "pays off on a GPU, see analysis/throughput/results/bench_reanalysis.md)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="'local' for a local Dask cluster, or a scheduler address; default: this process",
    )
    p.add_argument(
        "--workers", type=positive_int, default=None, help="workers of the local Dask cluster"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="report the read-back check of every finished time (damaged times are redone; "
        "the check itself runs on every resume)",
    )
    p.set_defaults(func=cmd_reanalyse)


def _print_check(damaged: dict) -> None:
    if not damaged:
        print("verify: every finished time matches its checksum", file=sys.stderr)
    for index, (t, reason) in damaged.items():
        print(f"verify: time {index} ({t}) damaged: {reason}; redoing it", file=sys.stderr)


def cmd_reanalyse(args) -> int:
    from pathlib import Path

    import xarray as xr

    import bayesda.runtime.files as files
    from bayesda.cli.options import settings_from_args
    from bayesda.obs.capacity import superob
    from bayesda.prior.checkpoint import load_model
    from bayesda.workflows.reanalysis import ReanalysisSettings, read_obs_source, reanalyse

    files.check_target(args.out, "store", resume=True)  # before loading anything
    model_dir = Path(args.model)
    prior = load_model(model_dir)
    obs = read_obs_source(
        args.obs,
        climatology=prior.climatology,
        kind=kind_from_args(args),
        units=args.units,
        grid=prior.grid,
    )
    if args.superob:
        obs = superob(obs, prior.grid)
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
        report=_print_check if args.verify else None,
    )
    ds = xr.open_zarr(out, consolidated=False)
    verdicts = ds["verdict"].values
    print(
        f"{out}: {int(ds['done'].sum())}/{ds.sizes['time']} times done; "
        f"verdicts PASS {int((verdicts == 0).sum())}, WARN {int((verdicts == 1).sum())}, "
        f"FAIL {int((verdicts == 2).sum())}"
    )
    return 0
