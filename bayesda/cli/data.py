"""``bayesda data`` and ``bayesda obs``: inspect datasets, fit climatologies, make observations.

Examples::

    bayesda data info ncep-air
    bayesda data climatology --data ncep-air --out clim-ncep.nc
    bayesda data simulate --preset full          # Held-Suarez weather into ~/.cache/bayesda/osse
    bayesda data simulate --simulator qg         # two-layer QG turbulence (pyqg-jax), same place
    bayesda obs make --data ncep-air --time 2014-01-07T12 --n 50 --network station \\
        --sigma 0.5 --seed 0 --out obs.csv
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from bayesda.cli.argtypes import kind_from_args, positive_float, positive_int, timestamp

__all__ = ["cmd_climatology", "cmd_info", "cmd_obs_make", "cmd_orography", "register"]


def register(subparsers) -> None:
    """Add the ``data`` and ``obs`` commands to the top-level parser."""
    data = subparsers.add_parser("data", help="inspect datasets and fit climatologies")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    info = data_sub.add_parser("info", help="dims, grid, period, split sizes and file location")
    info.add_argument(
        "name",
        nargs="?",
        default="ncep-air",
        help="a named dataset (ncep-air, era5-uk) or a .nc/.zarr/.grib path",
    )
    _add_data_dir(info)
    info.set_defaults(func=cmd_info)

    clim = data_sub.add_parser("climatology", help="fit a climatology on the training split")
    clim.add_argument("--data", default="ncep-air", help="named dataset or path")
    clim.add_argument("--n-harmonics", type=int, default=3)
    clim.add_argument("--out", required=True, help="netCDF file to write")
    clim.add_argument("--force", action="store_true", help="replace an existing --out file")
    _add_data_dir(clim)
    clim.set_defaults(func=cmd_climatology)

    orog = data_sub.add_parser(
        "orography",
        help="add the grid's surface height to a model (bayesda.geo.orography; needs pvlib)",
    )
    orog.add_argument("model", help="the model directory to update (re-hashed atomically)")
    orog.set_defaults(func=cmd_orography)

    sim = data_sub.add_parser(
        "simulate",
        help="simulate Held-Suarez weather (dinosaur) or two-layer QG turbulence (pyqg-jax) "
        "into a zarr store; resumable",
    )
    sim.add_argument(
        "--simulator",
        choices=("held-suarez", "qg"),
        default="held-suarez",
        help="held-suarez: bayesda.sim.heldsuarez (tas, ps, ua, va on a Gaussian grid); qg: "
        "bayesda.sim.qg (q, q_upper, psi, u, v on a doubly periodic 64 x 64 grid)",
    )
    sim.add_argument(
        "--preset",
        choices=("full", "small", "tiny"),
        default="full",
        help="starting settings (bayesda.sim.heldsuarez.PRESETS or bayesda.sim.qg.PRESETS; "
        "qg has no 'small'); flags override them",
    )
    sim.add_argument("--n-snapshots", type=int, default=None)
    sim.add_argument(
        "--grid", default=None, help="held-suarez: T21 (32x64), T31 (48x96), T42 (64x128)"
    )
    sim.add_argument("--layers", type=int, default=None, help="held-suarez only")
    sim.add_argument("--dt-minutes", type=float, default=None)
    sim.add_argument("--interval-hours", type=float, default=None)
    sim.add_argument("--spinup-days", type=float, default=None)
    sim.add_argument("--chunk", type=int, default=None)
    sim.add_argument("--seed", type=int, default=None)
    sim.add_argument(
        "--out", default=None, help="zarr store (default ~/.cache/bayesda/osse/<tag>.zarr)"
    )
    sim.set_defaults(func=cmd_simulate)

    obs = subparsers.add_parser("obs", help="make observation tables")
    obs_sub = obs.add_subparsers(dest="obs_command", metavar="ACTION", required=True)
    make = obs_sub.add_parser(
        "make", help="pseudo-observations of one time's anomaly field (truth: the dataset)"
    )
    make.add_argument("--data", default="ncep-air", help="named dataset or path")
    make.add_argument(
        "--time", type=timestamp, required=True, help="valid time (UTC), e.g. 2014-01-07T12"
    )
    make.add_argument("--n", type=positive_int, default=50, help="number of observations")
    make.add_argument("--network", choices=("uniform", "station"), default="uniform")
    make.add_argument("--sigma", type=positive_float, default=0.5, help="noise SD, K")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument(
        "--kind",
        choices=("anomaly", "absolute"),
        default=None,
        help="write anomalies (default) or absolute temperatures (K)",
    )
    make.add_argument("--absolute", action="store_true", help="same as --kind absolute")
    make.add_argument(
        "--model",
        default=None,
        help="anomalies relative to this model's climatology (what `bayesda assimilate "
        "--model` subtracts); default: a climatology fitted on the data's training split. "
        "Not used with --kind absolute",
    )
    make.add_argument("--out", required=True, help="CSV file to write")
    make.add_argument("--force", action="store_true", help="replace an existing --out file")
    _add_data_dir(make)
    make.set_defaults(func=cmd_obs_make, check=kind_from_args)


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="directory holding the named datasets (default: $BAYESDA_DATA_DIR)",
    )


def _check_simulation_out(out) -> None:
    """``--out`` of ``data simulate`` is absent, empty, or a simulation store to resume;
    never a file or another directory (the store writer would fail on it half-way, or
    worse)."""
    import json
    import pathlib

    if out is None:
        return
    path = pathlib.Path(out)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise ValueError(f"--out {path} exists and is not a zarr store; choose another path")
    if not any(path.iterdir()):
        return
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        attrs = {}
    if "config" not in attrs:
        raise ValueError(
            f"--out {path} exists and is not a bayesda simulation store (no zarr.json with "
            "its config); bayesda never writes into other directories: choose another path"
        )


def cmd_simulate(args) -> int:
    _check_simulation_out(args.out)
    if args.simulator == "qg":
        return _simulate_qg(args)
    import dataclasses

    from bayesda.sim.heldsuarez import PRESETS, simulate

    overrides = {
        k: getattr(args, k)
        for k in (
            "n_snapshots",
            "grid",
            "layers",
            "dt_minutes",
            "interval_hours",
            "spinup_days",
            "chunk",
            "seed",
        )
        if getattr(args, k) is not None
    }
    config = dataclasses.replace(PRESETS[args.preset], **overrides)
    result = simulate(config, args.out, progress=lambda msg: print(msg, flush=True))
    print(
        f"{result.path}: {result.n_written} snapshots; this call {result.wall_seconds:.0f} s, "
        f"all calls {result.total_wall_seconds:.0f} s wall"
    )
    return 0


def _simulate_qg(args) -> int:
    import dataclasses

    from bayesda.sim.qg import PRESETS, simulate_qg

    if args.preset not in PRESETS:
        raise SystemExit(f"--preset {args.preset}: the qg simulator has {sorted(PRESETS)}")
    if args.grid is not None or args.layers is not None:
        raise SystemExit("--grid and --layers are Held-Suarez settings; the qg model is fixed")
    overrides = {
        k: getattr(args, k)
        for k in ("n_snapshots", "interval_hours", "spinup_days", "chunk", "seed")
        if getattr(args, k) is not None
    }
    if args.dt_minutes is not None:
        overrides["dt_hours"] = args.dt_minutes / 60.0
    try:
        config = dataclasses.replace(PRESETS[args.preset], **overrides)
    except ValueError as err:
        raise SystemExit(f"bad setting: {err}") from None
    result = simulate_qg(config, args.out, progress=lambda msg: print(msg, flush=True))
    print(
        f"{result.path}: {result.n_written} snapshots; this call {result.wall_seconds:.0f} s, "
        f"all calls {result.total_wall_seconds:.0f} s wall"
    )
    return 0


def cmd_info(args) -> int:
    from bayesda.data.datasets import describe, load_dataset
    from bayesda.data.split import block_split, validation_split

    ds = load_dataset(args.name, args.data_dir)
    d = describe(ds)
    train, test = block_split(ds["time"].values)
    fit, val = validation_split(ds["time"].values[train])
    tas = ds["tas"]
    print(f"file:      {d['file']}")
    print(f"source:    {d['source']}")
    print(f"dims:      {', '.join(f'{k}={v}' for k, v in d['dims'].items())}")
    print(f"lat:       {d['lat'][0]} .. {d['lat'][1]} step {d['dlat']:g}")
    print(
        f"lon:       {d['lon'][0]} .. {d['lon'][1]} step {d['dlon']:g}"
        f" ({'global' if d['periodic'] else 'regional'})"
    )
    print(f"period:    {d['start'][:19]} .. {d['end'][:19]}")
    print(
        f"tas:       {float(tas.min()):.2f} .. {float(tas.max()):.2f} K, "
        f"mean {float(tas.mean()):.2f} K"
    )
    print(
        f"split:     train {int(train.sum())} / test {int(test.sum())} times "
        f"(7-day blocks, every 4th held out); of train: fit {int(fit.sum())} / "
        f"validation {int(val.sum())}"
    )
    return 0


def cmd_orography(args) -> int:
    import numpy as np

    from bayesda.geo.grid import Grid
    from bayesda.geo.orography import SOURCE, surface_height
    from bayesda.prior.checkpoint import read_card, update_card

    card = read_card(args.model)  # verifies the model before anything is computed
    grid = Grid.from_dict(card["grid"])
    height = surface_height(grid)
    update_card(
        args.model,
        card={"surface_height": {"source": SOURCE, "command": "bayesda data orography"}},
        surface_height=height,
    )
    print(
        f"wrote {args.model}/surface_height.nc: {grid.shape} cells, "
        f"{np.nanmin(height):.0f} to {np.nanmax(height):.0f} m, "
        f"{int(np.isnan(height).sum())} unknown (ice sheets)"
    )
    return 0


def cmd_climatology(args) -> int:
    from bayesda.data.climatology import Climatology
    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import split_dataset

    _check_out(args, [args.data])
    train, _ = split_dataset(load_dataset(args.data, args.data_dir))
    clim = Climatology.fit(train["tas"], n_harmonics=args.n_harmonics)
    path = clim.to_netcdf(args.out)
    print(f"wrote {path}: {clim!r}")
    return 0


def _fit_climatology(tas, train: np.ndarray):
    """A climatology of the training times whose fields are complete, at the hours of day
    that have enough of them (a file with a missing field or a few odd hours still fits)."""
    from bayesda.data.climatology import Climatology, _hour_of_day

    keep = train & np.isfinite(tas.values).reshape(tas.sizes["time"], -1).all(axis=1)
    hours = _hour_of_day(tas["time"].values)
    for h in np.unique(hours[keep]):
        if (keep & (hours == h)).sum() < 2 * (1 + 2 * 3):  # too few for 3 harmonics
            keep &= hours != h
    if not keep.any():
        raise ValueError(
            "no complete training fields at a regular hour of day to fit a "
            "climatology on; pass --model to use a model's climatology, or "
            "--kind absolute"
        )
    return Climatology.fit(tas.isel(time=np.flatnonzero(keep)))


def _check_out(args, inputs) -> None:
    """``--out`` is never an input, never inside a bayesda output, and needs ``--force``
    to replace a file (:func:`bayesda.runtime.files.check_file_target`)."""
    import bayesda.runtime.files as files

    files.check_file_target(args.out, inputs=[i for i in inputs if i], force=args.force)


def cmd_obs_make(args) -> int:
    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import block_split
    from bayesda.obs.table import pseudo_obs, write_obs

    kind = kind_from_args(args)
    _check_out(args, [args.data, args.model])
    ds = load_dataset(args.data, args.data_dir)
    when = np.datetime64(pd.Timestamp(args.time).to_datetime64(), "ns")
    times = ds["time"].values
    hit = np.flatnonzero(times == when)
    if hit.size == 0:
        raise ValueError(
            f"time {args.time!r} not in {args.data!r}, which has "
            f"{times.size} times from {str(times[0])[:19]} to {str(times[-1])[:19]}"
        )
    train, _ = block_split(times)
    tas = ds["tas"].isel(time=int(hit[0]))
    n_nan = int(np.isnan(tas.values).sum())
    if n_nan:
        raise ValueError(
            f"the {args.data!r} field at {str(when)[:19]} has {n_nan} missing (NaN) "
            "grid values, so observations of it would be missing; pick another "
            "--time"
        )
    if kind == "absolute":
        truth, against = tas, "absolute temperature"
    elif args.model:
        from bayesda.prior.checkpoint import load_model

        clim = load_model(args.model).climatology
        if clim is None:
            raise ValueError(f"model {args.model} has no climatology; omit --model")
        truth, against = clim.to_anomaly(tas), f"anomalies w.r.t. {args.model}'s climatology"
    else:
        clim = _fit_climatology(ds["tas"], train)
        truth, against = clim.to_anomaly(tas), "anomalies w.r.t. the data's own climatology"
    df = pseudo_obs(truth, args.n, network=args.network, sigma=args.sigma, seed=args.seed)
    df.attrs["kind"] = kind
    path = write_obs(df, args.out)
    split = "training" if train[hit[0]] else "test"
    print(
        f"wrote {len(df)} {args.network} observations of {args.data} at {str(when)[:19]} "
        f"({split} split; {against}), sigma {args.sigma} K, seed {args.seed} -> {path}"
    )
    return 0
