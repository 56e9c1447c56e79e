"""``bayesda assimilate | diagnose | plot | demo``: one analysis, its verdict and its maps.

Examples::

    bayesda assimilate --model ncep-air --obs obs.csv --time 2014-01-07T12 --out runs/a
    bayesda diagnose runs/a          # exit code 0: PASS or WARN, 3: FAIL, 1: error
    bayesda plot runs/a --truth truth.nc
    bayesda demo --out runs/demo

The run directory is written by :func:`bayesda.workflows.run.assimilate_to_run`; its layout, atomic
write and lock are documented in :mod:`bayesda.workflows.run`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import bayesda.runtime.files as files
from bayesda.cli.argtypes import (
    add_units_kind,
    column_mapping,
    ghcn_element,
    half_width,
    kind_from_args,
    lapse_rate,
    positive_float,
    positive_int,
    timestamp,
)
from bayesda.cli.options import add_settings_args, settings_from_args
from bayesda.settings import DEFAULT, DEMO, DEMO_OPTIONS
from bayesda.workflows.run import (  # noqa: F401  (re-exported: their home moved to bayesda.workflows.run)
    _climatology_sd,
    _json_default,
    _write_json,
    assimilate_to_run,
    load_prior,
    verification,
)

__all__ = [
    "FAIL_EXIT_CODE",
    "cmd_assimilate",
    "cmd_demo",
    "cmd_diagnose",
    "cmd_plot",
    "register",
]

FAIL_EXIT_CODE = 3


def register(subparsers) -> None:
    """Add ``assimilate``, ``diagnose``, ``plot`` and ``demo``."""
    p = subparsers.add_parser("assimilate", help="sample the posterior field given observations")
    p.add_argument(
        "--model",
        required=True,
        help="model directory, or the name of a model (ncep-air, hs-t21-tas; "
        "bayesda.prior.checkpoint.find_model)",
    )
    p.add_argument(
        "--obs", required=True, help="observations: CSV or netCDF (lat, lon, value, sigma)"
    )
    p.add_argument(
        "--time",
        type=timestamp,
        default=None,
        help="analysis time, UTC, e.g. 2014-01-07T12 (an offset such as +02:00 is converted)",
    )
    add_units_kind(p)
    add_superob_arg(p)
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing bayesda run directory (never any other directory)",
    )
    _add_station_args(p)
    p.add_argument(
        "--geotiff",
        action="store_true",
        help="also write the mean, SD, quantile and exceedance layers as GeoTIFF files in "
        "RUN/geotiff/ (needs the geotiff extra: pip install 'bayesda[geotiff]')",
    )
    p.add_argument(
        "--sites",
        default=None,
        metavar="FILE",
        help="CSV of sites (id, lat, lon, optional elevation in m): write the predictive "
        "distribution of an observation at each (mean, SD, 5/50/95%% quantiles, the lapse "
        "rate undone) to RUN/sites.csv and RUN/sites.nc",
    )
    p.add_argument(
        "--sites-units",
        default="degC",
        choices=("degC", "K", "degF"),
        help="units of the temperatures in the sites files (default degC)",
    )
    add_window_arg(p)
    add_settings_args(p, DEFAULT)
    # target_accept and errors None: the single-time defaults, or the window's with
    # --window-times (bayesda.settings.WINDOW_TARGET_ACCEPT and the stated-error model)
    p.set_defaults(
        func=cmd_assimilate, check=check_assimilate_args, target_accept=None, errors=None
    )

    d = subparsers.add_parser("diagnose", help="convergence verdict of a run (exit 3 on FAIL)")
    d.add_argument("run", help="run directory")
    d.set_defaults(func=cmd_diagnose)

    m = subparsers.add_parser("plot", help="(re)draw a run's uncertainty maps")
    m.add_argument("run", help="run directory")
    m.add_argument("--truth", default=None, help="netCDF with the true anomaly (lat, lon), K")
    m.add_argument(
        "--out",
        default=None,
        help="image path, .png, .pdf or .svg (default RUN/maps.png); never a file of a run, "
        "store or model, nor an input; an existing file only with --force",
    )
    m.add_argument("--force", action="store_true", help="replace an existing --out file")
    m.add_argument(
        "--fog-threshold",
        type=positive_float,
        default=0.5,
        help="hatch where posterior SD > this x climatological SD (> 0; default 0.5)",
    )
    m.set_defaults(func=cmd_plot)

    e = subparsers.add_parser("demo", help="held-out NCEP day: pseudo-obs, assimilate, verify")
    e.add_argument(
        "--out",
        default="runs/demo",
        help="run directory (an earlier bayesda run there is replaced; any other "
        "non-empty directory is refused)",
    )
    e.add_argument(
        "--model", default="ncep-air", help="model directory or name (default: ncep-air)"
    )
    e.add_argument("--data-dir", default=None, help="default: $BAYESDA_DATA_DIR")
    e.add_argument("--n-obs", type=positive_int, default=None)
    e.add_argument(
        "--time",
        type=timestamp,
        default=None,
        help="held-out time (default: see bayesda.workflows.demo)",
    )
    add_settings_args(e, DEMO)
    # pseudo-observations carry exactly their stated errors (bayesda.settings.DEMO_OPTIONS)
    e.set_defaults(func=cmd_demo, errors=DEMO_OPTIONS.errors)


def add_window_arg(p) -> None:
    """``--window-times N``: sample N consecutive model times together
    (:mod:`bayesda.inference.window`)."""
    p.add_argument(
        "--window-times",
        type=positive_int,
        default=1,
        metavar="N",
        help="analyse the N model times centred on --time together (N odd; 9 = +-1 day on "
        "NCEP), carrying information between them through the model's latent dynamics; "
        "every time's posterior is written (RUN/window/<time>/); default 1: --time alone",
    )


def add_superob_arg(p) -> None:
    """``--superob``: average observations sharing a grid cell (:mod:`bayesda.obs.capacity`)."""
    p.add_argument(
        "--superob",
        action="store_true",
        help="average observations that share a grid cell into one (inverse-variance "
        "weights, combined sigma); default off. Use it for thousands of observations, "
        "whose O(n^2) covariance may not fit in memory",
    )


def _add_station_args(p) -> None:
    """Real station formats, the time window, QC and the calibration check
    (bayesda.preflight.pipeline)."""
    from bayesda.obs.stations import FORMATS

    p.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="observation file format (bayesda.obs.stations; metar: a list of reports or a "
        "raw WMO bulletin stream, .gz too); default: bayesda's table",
    )
    p.add_argument(
        "--columns",
        type=column_mapping,
        default=None,
        help="column mapping for --format csv, e.g. lat=LAT,lon=LON,value=TMP,time=DATE",
    )
    p.add_argument(
        "--stations",
        default=None,
        help="station coordinates: ghcnd-stations.txt, isd-history.csv, or a CSV "
        "with id,lat,lon[,elevation]; optional for --format metar (ICAO ids are placed by "
        "airportsdata and NOAA's station list; this table wins where it has the id)",
    )
    p.add_argument(
        "--element",
        type=ghcn_element,
        default="TAVG",
        help="GHCN-Daily temperature element: TAVG, TMAX, TMIN or TOBS (any case)",
    )
    p.add_argument(
        "--window",
        type=half_width,
        default=None,
        help="keep reports within +-WINDOW of --time, e.g. 3h (default: half the "
        "model's time step)",
    )
    p.add_argument(
        "--lapse-rate",
        type=lapse_rate,
        default=6.5,
        metavar="K_PER_KM",
        help="move stations with an elevation to the model's surface height at this rate "
        "(bayesda.obs.elevation; default 6.5; 0 with --lapse-rate-sd 0 turns it off)",
    )
    p.add_argument(
        "--lapse-rate-sd",
        type=lapse_rate,
        default=2.0,
        metavar="K_PER_KM",
        help="uncertainty of the lapse rate, added to sigma as SD * |height difference| "
        "(default 2)",
    )
    p.add_argument(
        "--qc",
        choices=("on", "off"),
        default="on",
        help="background check and gross-error model (bayesda.preflight.qc)",
    )
    p.add_argument(
        "--offset",
        choices=("none", "uniform", "smooth"),
        default="none",
        help="a large-scale offset with its own prior, for a period warmer or colder than "
        "the training data (bayesda.preflight.offset): uniform, or smooth (uniform plus "
        "latitude and longitude gradients); default none",
    )
    p.add_argument(
        "--offset-sd",
        type=positive_float,
        default=2.0,
        help="prior SD of each offset mode, K (default 2)",
    )
    p.add_argument(
        "--calibrate",
        choices=("off", "auto", "single", "none"),
        default="off",
        help="off: check on withheld obs only; auto: also fit separate scales for the "
        "representation and the observation error and assimilate with them; single: one "
        "scale for both (the earlier fit); none: skip the check",
    )


STATION_FORMATS_WITH_TABLE = ("ghcn-dly", "ghcn-csv", "isd-lite", "metar")


def window_defaults(args) -> None:
    """Fill ``--target-accept`` and ``--errors`` left unset (None): the window's values with
    ``--window-times`` > 1, else the single-time defaults; idempotent."""
    from bayesda.settings import WINDOW_TARGET_ACCEPT, ModelOptions

    window = getattr(args, "window_times", 1) > 1
    if args.target_accept is None:
        args.target_accept = WINDOW_TARGET_ACCEPT if window else DEFAULT.target_accept
    if args.errors is None:
        args.errors = "stated" if window else ModelOptions().errors


def check_window_args(args) -> None:
    """``--window-times``: odd, with ``--time``, the stated-error model, and no preflight step
    that changes the prior at each time."""
    n = args.window_times
    if n <= 1:
        return
    if n % 2 == 0:
        raise ValueError(f"--window-times must be odd (the analysis time in the middle), got {n}")
    if args.time is None:
        raise ValueError("--window-times needs --time, the analysis time at the window's middle")
    if args.errors != "stated":
        raise ValueError(
            "--window-times takes --errors stated (a window stacks the stated-error likelihood "
            "of its times; the learned errors are a single-time model)"
        )
    if args.offset != "none":
        raise ValueError(f"--window-times takes --offset none, got --offset {args.offset}")
    if args.calibrate not in ("off", "none"):
        raise ValueError(
            f"--window-times takes --calibrate off or none, got --calibrate {args.calibrate}"
        )


def check_assimilate_args(args) -> None:
    """Combinations of options that parse one by one but contradict each other (checked
    before any work; :func:`bayesda.cli.main.main` turns the ValueError into exit 2)."""
    window_defaults(args)
    check_window_args(args)
    kind_from_args(args)
    if args.format == "csv" and args.columns is None:
        raise ValueError(
            "--format csv needs --columns, the column mapping, e.g. "
            "--columns lat=LAT,lon=LON,value=TMP,time=DATE"
        )
    if args.columns is not None and args.format != "csv":
        raise ValueError(f"--columns is used only with --format csv, not --format {args.format}")
    if args.stations is not None and args.format not in STATION_FORMATS_WITH_TABLE:
        raise ValueError(
            f"--stations is used only with --format {', '.join(STATION_FORMATS_WITH_TABLE)}; "
            f"--format {args.format} carries its own coordinates"
        )
    if args.errors == "learned":
        if args.calibrate in ("auto", "single"):
            raise ValueError(
                f"--calibrate {args.calibrate} fits error scales for --errors stated; the "
                "default --errors learned learns them in the model (its check runs with "
                "--calibrate off)"
            )
        if args.offset != "none":
            raise ValueError(
                f"--offset {args.offset} belongs to --errors stated; --errors learned samples "
                "a uniform offset itself (prior SD --offset-sd)"
            )
        if args.likelihood != "normal" or args.infer_sigma:
            raise ValueError(
                "--likelihood studentt and --infer-sigma belong to --errors stated; "
                "--errors learned learns the error scales and QC removes gross errors"
            )


def training_period_note(prior, times, *, offset: str | None = "none", offset_sd=2.0):
    """The line a run prints when its times lie outside the model's training period
    (:func:`bayesda.preflight.offset.outside_training_period`), or None."""
    from bayesda.preflight.offset import outside_training_period

    o = outside_training_period(prior, times)
    if o is None:
        return None
    when = o["first"] if o["first"] == o["last"] else f"{o['first']} .. {o['last']}"
    far = f"{o['years']:.0f} years" if o["years"] >= 1.5 else f"{o['years'] * 365.25:.0f} days"
    line = (
        f"note: {when} is outside the model's training period {o['start']} .. {o['end']} "
        f"({far} away); the prior and its climatology describe that period's climate"
    )
    what = (
        "adds a large-scale offset with its own prior (--offset-sd, default 2 K) that takes "
        "up a climate warmer or colder as a whole, instead of forcing it through the prior's "
        "weather"
    )
    if offset is None:
        return f"{line}; `bayesda assimilate --offset uniform` (or smooth) {what}"
    if offset == "none":
        return f"{line}; --offset uniform (or smooth) {what}"
    return (
        f"{line}; --offset {offset} is on: the field may shift by a large-scale offset "
        f"(prior SD {offset_sd:g} K)"
    )


def sampler_kwargs(args) -> dict:
    """``seed``, ``sampler``, ``options`` and ``progress_bar`` from parsed arguments."""
    return settings_from_args(args)


SUPEROB_HINT = (
    "pass --superob to average observations that share a grid cell (inverse-variance weights)"
)


def _read_obs(args, prior):
    from bayesda.obs.table import DuplicateObservationsError, read_obs

    try:
        return read_obs(
            args.obs,
            kind=kind_from_args(args),
            units=args.units,
            climatology=prior.climatology,
            time=args.time,
            grid=prior.grid,
            duplicates="keep" if args.superob else "error",  # superobbed in preflight
        )
    except DuplicateObservationsError as err:
        raise ValueError(err.with_hint(SUPEROB_HINT)) from err


def cmd_assimilate(args) -> int:
    files.check_target(args.out, "run", force=args.force)  # before loading anything
    files.check_inputs_outside(args.out, [args.obs, args.stations, args.model, args.sites])
    from bayesda.obs.elevation import LapseRate

    sites = None
    if args.sites is not None:
        from bayesda.outputs.sites import read_sites

        sites = read_sites(args.sites)  # before any work: a bad file fails fast

    try:
        lapse = LapseRate(args.lapse_rate, args.lapse_rate_sd)
    except ValueError as err:
        raise ValueError(f"--lapse-rate/--lapse-rate-sd: {err}") from None
    if args.geotiff:
        from bayesda.outputs.geotiff import require_geotiff

        try:
            require_geotiff()
        except ImportError as err:
            raise ValueError(f"--geotiff: {err}") from None
    from bayesda.preflight.pipeline import format_preflight, load_observations, preflight

    prior = load_prior(args.model)
    if args.format == "table":
        obs, reader = _read_obs(args, prior), {"format": "table"}
    else:
        obs, reader = load_observations(
            args.obs,
            prior,
            fmt=args.format,
            columns=args.columns,
            stations=args.stations,
            units=getattr(args, "units", None),
            time=args.time,
            element=args.element,
        )
        from bayesda.obs.stations import reader_line

        print(reader_line(reader))
    if args.time is None:
        from bayesda.obs.window import require_one_time

        require_one_time(obs, args.obs)
    when = args.time if args.time is not None else obs["time"] if "time" in obs else None
    note = training_period_note(prior, when, offset=args.offset, offset_sd=args.offset_sd)
    if note:
        print(note)
    window_defaults(args)
    settings = settings_from_args(args)
    if args.window_times > 1:
        return _assimilate_window(args, prior, obs, reader, lapse, settings)
    prior, obs, record = preflight(
        prior,
        obs,
        time=args.time,
        superob=args.superob,
        **_preflight_args(args, settings, lapse),
    )
    print(format_preflight(record))
    info = assimilate_to_run(
        prior,
        obs,
        args.out,
        time=args.time,
        force=args.force,
        extra={"observations": reader, **record},
        geotiff=args.geotiff,
        sites=sites,
        sites_units=args.sites_units,
        **settings,
    )
    _print_summary(info, args.out)
    return 0


def _preflight_args(args, settings: dict, lapse) -> dict:
    """The preflight options a single time and a window take alike."""
    return dict(
        window=args.window,
        qc=args.qc == "on",
        calibrate=args.calibrate,
        offset=args.offset,
        offset_sd=args.offset_sd,
        seed=settings.get("seed", 0),
        lapse=lapse,
        options=settings["options"],
    )


def _assimilate_window(args, prior, obs, reader, lapse, settings) -> int:
    """``--window-times N``: the same preflight at every window time, one joint posterior."""
    from bayesda.inference.window import window_times
    from bayesda.preflight.pipeline import format_preflight
    from bayesda.preflight.window import preflight_window
    from bayesda.workflows.window import window_to_run

    check_window_args(args)
    n = args.window_times
    if prior.dynamics is None:
        raise ValueError(
            f"--window-times: the model {args.model} has no latent dynamics (dynamics.npz); "
            "fit them on its training data (python -m analysis.window.fit_dynamics --apply)"
        )
    times = window_times(args.time, n, prior.dynamics.step_hours)
    obs_by_time, record = preflight_window(
        prior, obs, times, **_preflight_args(args, settings, lapse)
    )
    counts = [0 if f is None else len(f) for f in obs_by_time]
    print(
        f"window: {n} times {record['times'][0]} .. {record['times'][-1]}, observations per "
        f"time {counts}"
    )
    centre = record["by_time"][n // 2]
    if "skipped" not in centre:
        print(format_preflight(centre))
    info = window_to_run(
        prior,
        obs_by_time,
        times,
        args.out,
        force=args.force,
        extra={"observations": reader, "preflight": record},
        geotiff=args.geotiff,
        **settings,
    )
    _print_summary(info, args.out)
    w = info["window"]
    print(
        "window verdicts: "
        + ", ".join(f"{t} {v}" for t, v in w["verdicts"].items())
        + " (in RUN/window/<time>/; the analysis time in RUN/)"
    )
    return 0


def _print_summary(info: dict, out) -> None:
    t = info["timings_s"]
    print(
        f"assimilated {info['n_obs']} obs with {info['model']} ({info['settings']['method']}): "
        f"wall {t['wall']:.1f} s (MAP {t['map']:.1f}, warmup+compile {t['warmup']:.1f}, "
        f"sampling {t['sampling']:.1f}, fields {t['fields']:.1f})"
    )
    learned = info.get("learned_errors")
    if learned:
        names = {"site_sd": "site SD", "repr_scale": "representation error x", "offset": "offset"}
        print(
            "learned errors: "
            + ", ".join(
                f"{names[k]} {v['mean']:.2f} (90% {v['q05']:.2f} to {v['q95']:.2f})"
                for k, v in learned.items()
            )
        )
    print(f"verdict: {info['verdict']} (details: bayesda diagnose {out})")
    print(
        f"wrote {out}/: posterior.nc inference.nc obs.csv obs_posterior.csv diagnostics.json "
        "maps.png run.json"
        + (" geotiff/" if info.get("geotiff") else "")
        + (" sites.csv sites.nc" if info.get("sites") else "")
    )


def _require_run(run) -> Path:
    run = Path(run)
    missing = [f for f in ("posterior.nc", "inference.nc", "run.json") if not (run / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{run} is not a complete run directory (missing {missing})")
    return run


def cmd_diagnose(args) -> int:
    import xarray as xr

    from bayesda.verify.verdict import az, diagnose, format_verdict  # az: imported quietly there

    run = _require_run(args.run)
    idata = az.from_netcdf(str(run / "inference.nc"))
    with xr.open_dataset(run / "posterior.nc") as ds:
        verdict = diagnose(idata, field_samples=ds[["anomaly"]].load())
    names = ["z"] + (["sigma_scale"] if "sigma_scale" in idata.posterior else [])
    summary = az.summary(idata, var_names=names, kind="diagnostics", round_to=3)
    with np.errstate(all="ignore"):
        print(summary.to_string())
    print(format_verdict(verdict))
    return FAIL_EXIT_CODE if verdict.status == "FAIL" else 0


def cmd_plot(args) -> int:
    import pandas as pd

    from bayesda.obs.table import validate_obs
    from bayesda.outputs.maps import plot_posterior

    run = _require_run(args.run)
    truth_path = (
        Path(args.truth)
        if args.truth
        else (run / "truth.nc" if (run / "truth.nc").is_file() else None)
    )
    from bayesda.outputs.maps import image_format

    own = run / "maps.png"
    out = files.check_file_target(
        args.out or own, inputs=[truth_path], force=args.force, regenerates=own
    )
    try:
        image_format(out)
    except ValueError as err:
        raise ValueError(f"--out {err}") from None
    truth = None
    if truth_path is not None:
        t = _open_netcdf(truth_path, "truth")
        if not t.data_vars:
            raise ValueError(f"truth file {truth_path} holds no variable; expected 'anomaly'")
        truth = t["anomaly"] if "anomaly" in t else t[list(t.data_vars)[0]]
    ds = _open_netcdf(run / "posterior.nc", "posterior")
    ds = ds.drop_vars(["anomaly", "tas"], errors="ignore")
    try:
        obs = validate_obs(pd.read_csv(run / "obs.csv"), duplicates="keep")
    except (ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{run / 'obs.csv'}: {err}") from err
    clim_sd = None
    clim_path = run / "climatology_sd.nc"
    if clim_path.is_file():
        clim_sd = _open_netcdf(clim_path, "climatological SD")["sd"]
    out = plot_posterior(
        ds,
        obs,
        truth=truth,
        climatology_sd=clim_sd,
        fog_threshold=args.fog_threshold,
        out=out,
    )
    print(f"wrote {out}")
    return 0


def _open_netcdf(path, what: str):
    """Load a netCDF file; an error names the file and what it should have been."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist (or is not a file)")
    try:
        with xr.open_dataset(path) as ds:
            return ds.load()
    except (ValueError, OSError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read {what} file {path} as netCDF ({first})") from err


def cmd_demo(args) -> int:
    from bayesda.workflows.demo import run_demo

    files.check_target(args.out, "run", force=True)  # an earlier demo run, or nothing

    run_demo(
        args.out,
        model=args.model,
        data_dir=args.data_dir,
        n_obs=args.n_obs,
        time=args.time,
        **settings_from_args(args),
    )
    return 0
