"""``bayesda reanalyse``: assimilate every analysis time of a period into a zarr store.

The analysis times are every ``--step`` (default: the model's time step) from ``--start``,
each with the reports within ``+-window`` of it, as ``bayesda assimilate`` selects them
(:func:`bayesda.workflows.reanalysis.analysis_times`).

Example::

    bayesda reanalyse --model ncep-air --obs obs.csv \
        --start 2014-01-01 --end 2014-01-31 --out runs/jan2014.zarr --scheduler local

With ``--smoother`` each time is analysed inside a window of neighbouring times
(:mod:`bayesda.workflows.smoother`). Interrupt it at any moment and run the same command
again: it finishes the times not yet done (see :mod:`bayesda.outputs.store`). Every resume
reads back the finished times and redoes any whose data no longer match their checksum;
``--verify`` also prints the check's result for every time.
"""

from __future__ import annotations

import sys

from bayesda.cli.argtypes import (
    add_units_kind,
    half_width,
    kind_from_args,
    non_negative_int,
    positive_int,
    timestamp,
)

__all__ = ["check_reanalyse_args", "cmd_reanalyse", "register"]


def register(subparsers) -> None:
    """Add ``reanalyse``."""
    from bayesda.cli.options import add_settings_args
    from bayesda.settings import REANALYSIS, ModelOptions, ReanalysisSettings

    d = ReanalysisSettings()
    p = subparsers.add_parser("reanalyse", help="assimilate many times into a resumable zarr store")
    p.add_argument(
        "--model",
        required=True,
        help="model directory, or the name of a model (ncep-air, hs-t21-tas; "
        "bayesda.prior.checkpoint.find_model)",
    )
    p.add_argument(
        "--obs",
        required=True,
        help="observations with a time column (CSV/netCDF), or a directory of per-time files",
    )
    add_units_kind(p)
    from bayesda.cli.assim import add_superob_arg

    add_superob_arg(p)
    p.add_argument(
        "--start",
        type=timestamp,
        default=None,
        help="first time (inclusive); default: first observed",
    )
    p.add_argument(
        "--end", type=timestamp, default=None, help="last time (inclusive); default: last observed"
    )
    p.add_argument(
        "--step",
        type=half_width,
        default=None,
        help="analysis times every STEP from --start, e.g. 6h (default: the model's time step)",
    )
    p.add_argument(
        "--window",
        type=half_width,
        default=None,
        help="each analysis uses the reports within +-WINDOW of its time, the nearest per "
        "station, as `bayesda assimilate` does (default: half the step)",
    )
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
        "--smoother",
        action="store_true",
        help="analyse each time inside a window of --window-times model times sampled "
        "together through the model's latent dynamics (bayesda.workflows.smoother); "
        "in this process only",
    )
    p.add_argument(
        "--window-times",
        type=positive_int,
        default=9,
        metavar="N",
        help="with --smoother: model times per window, odd (default 9: +-1 day at 6 h)",
    )
    p.add_argument(
        "--window-stride",
        type=positive_int,
        default=5,
        metavar="S",
        help="with --smoother: each window writes the S consecutive model times at its "
        "middle (odd, <= N; 1: every time from the window centred on it; default 5)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="report the read-back check of every finished time (damaged times are redone; "
        "the check itself runs on every resume)",
    )
    # target_accept None: the reanalysis default, or WINDOW_TARGET_ACCEPT with --smoother
    p.set_defaults(func=cmd_reanalyse, check=check_reanalyse_args, target_accept=None)


def check_reanalyse_args(args) -> None:
    """Contradicting options, before any work (exit 2)."""
    from bayesda.settings import REANALYSIS, WINDOW_TARGET_ACCEPT

    if args.target_accept is None:
        args.target_accept = WINDOW_TARGET_ACCEPT if args.smoother else REANALYSIS.target_accept
    kind_from_args(args)
    if args.start is not None and args.end is not None and args.end < args.start:
        raise ValueError(f"--end {args.end} is before --start {args.start}")
    if args.smoother:
        n, stride = args.window_times, args.window_stride
        if n % 2 == 0 or stride % 2 == 0 or stride > n:
            raise ValueError(
                f"--window-times {n} and --window-stride {stride} must be odd, with the "
                "stride at most the window"
            )
        if args.scheduler is not None:
            raise ValueError("--smoother runs in this process; drop --scheduler")


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
    from bayesda.prior.checkpoint import load_model
    from bayesda.workflows.reanalysis import ReanalysisSettings, read_obs_source, reanalyse

    files.check_target(args.out, "store", resume=True)  # before loading anything
    files.check_inputs_outside(args.out, [args.obs, args.model])
    model_dir = Path(args.model)
    prior = load_model(model_dir)
    from bayesda.cli.assim import SUPEROB_HINT
    from bayesda.obs.table import DuplicateObservationsError

    try:
        obs = read_obs_source(
            args.obs,
            climatology=prior.climatology,
            kind=kind_from_args(args),
            units=args.units,
            grid=prior.grid,
            duplicates="keep" if args.superob else "error",
        )
    except DuplicateObservationsError as err:
        raise ValueError(err.with_hint(SUPEROB_HINT)) from err
    from bayesda.cli.assim import training_period_note

    span = [t for t in (args.start, args.end) if t is not None] or obs["time"]
    note = training_period_note(prior, span, offset=None)
    if note:
        print(note)
    if args.target_accept is None:  # called without the parser's check
        check_reanalyse_args(args)
    kw = settings_from_args(args)
    settings = ReanalysisSettings.from_settings(
        kw["sampler"],
        kw["options"],
        seed=kw["seed"],
        keep_samples=args.keep_samples,
        batch_times=args.batch_times,
    )
    # what both reanalyses take: the period, the settings and the window rule
    common = dict(
        start=args.start,
        end=args.end,
        settings=settings,
        progress=kw["progress_bar"],
        report=_print_check if args.verify else None,
        step=args.step,
        window=args.window,
        superob=args.superob,
    )
    if args.smoother:
        from bayesda.workflows.smoother import reanalyse_smoother

        out = reanalyse_smoother(
            prior,
            obs,
            args.out,
            window_times=args.window_times,
            stride=args.window_stride,
            **common,
        )
    else:
        out = reanalyse(
            model_dir, obs, args.out, scheduler=args.scheduler, n_workers=args.workers, **common
        )
    ds = xr.open_zarr(out, consolidated=False)
    verdicts = ds["verdict"].values
    print(
        f"{out}: {int(ds['done'].sum())}/{ds.sizes['time']} times done; "
        f"verdicts PASS {int((verdicts == 0).sum())}, WARN {int((verdicts == 1).sum())}, "
        f"FAIL {int((verdicts == 2).sum())}"
    )
    return 0
