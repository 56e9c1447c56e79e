"""Short Held-Suarez runs with other forcing, levels or grids: cost and non-Gaussianity.

Is there a cheap setting where the simulated weather is less Gaussian than the stored
lowest-level T21 fields (analysis/gaussianity/results/osse_nongauss.md)? Each variant
restarts from a saved state of the T21 store (``<store>.restart/state_N.npz``, already in
statistical equilibrium under standard Held-Suarez forcing), integrates ``--spinup-days``
with its own forcing (:func:`bayesda.sim.heldsuarez.build_model` ``forcing=``), then keeps
``--snapshots`` 6-hourly snapshots of temperature and relative vorticity at several sigma
levels and reports, per field, on the 7-day block split: marginal moments and
:func:`bayesda.data.fieldstats.quadratic_gain` at small d, each with the same statistics of
a Gaussian with the training covariance (the null at this sample size), and the seconds per
simulated 6 h.

``--timing GRID DT`` only times one trajectory of another grid (e.g. T42 at 15 min) from
rest: seconds per simulated 6 h after compilation.

Usage::

    OMP_NUM_THREADS=1 nice -n 15 python -m analysis.gaussianity.osse_variants --name base
    OMP_NUM_THREADS=1 nice -n 15 python -m analysis.gaussianity.osse_variants --name dTy100 \\
        --forcing dTy=100 --spinup-days 60
    OMP_NUM_THREADS=1 nice -n 15 python -m analysis.gaussianity.osse_variants --timing T42 15

Appends one record per call to analysis/gaussianity/results/osse_variants.json and rewrites
.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import time

import numpy as np

from analysis.common.io import command, results_dir
from analysis.common.osse import default_store
from bayesda.data.fieldstats import (
    gaussian_surrogate,
    knn_gain,
    moments,
    quadratic_gain,
)

FORCING_UNITS = {
    "dTy": "degK",
    "dThz": "degK",
    "maxT": "degK",
    "minT": "degK",
    "kf": "1/day",
    "ka": "1/day",
    "ks": "1/day",
    "sigma_b": "",
}
LEVELS = (0.95, 0.85, 0.55, 0.25)
DIMS = (4, 8, 16)


def parse_forcing(text: str | None) -> dict:
    """``"dTy=100,ks=1"`` -> dinosaur quantities (K, 1/day; sigma_b plain)."""
    from dinosaur import scales

    out = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        if key not in FORCING_UNITS:
            raise SystemExit(f"unknown forcing {key!r}; known: {sorted(FORCING_UNITS)}")
        unit = FORCING_UNITS[key]
        out[key] = float(value) * scales.units(unit) if unit else float(value)
    return out


def timing(grid: str, dt_minutes: float, n: int = 8) -> dict:
    import jax

    from bayesda.sim.heldsuarez import HeldSuarezConfig, build_model

    cfg = HeldSuarezConfig(grid=grid, dt_minutes=dt_minutes)
    model = build_model(cfg)
    t0 = time.perf_counter()
    state = jax.block_until_ready(model.advance(model.initial_state))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        state = model.advance(state)
    jax.block_until_ready(state)
    per = (time.perf_counter() - t0) / n
    return {
        "kind": "timing",
        "grid": grid,
        "layers": cfg.layers,
        "dt_minutes": dt_minutes,
        "first_call_s": round(compile_s, 1),
        "s_per_6h": round(per, 3),
        "hours_for_20000": round(per * 20000 / 3600, 1),
        "n_timed": n,
    }


def field_stats(x: np.ndarray, times: np.ndarray, w: np.ndarray) -> dict:
    from bayesda.data.split import block_split

    train, test = block_split(times)
    tr, te = x[train], x[test]
    mean = tr.mean(0)
    tr, te = tr - mean, te - mean
    sur = gaussian_surrogate(tr, len(tr) + len(te), seed=3)
    out = {}
    for label, (a, b) in {"data": (tr, te), "gaussian": (sur[: len(tr)], sur[len(tr) :])}.items():
        skew, kurt = moments(a)
        z = a / a.std(0)
        out[label] = {
            "skew_mean_abs": float(np.sum(np.abs(skew) * w) / w.sum()),
            "kurt_mean": float(np.sum(kurt * w) / w.sum()),
            "kurt_max": float(kurt.max()),
            "frac_beyond_4sd": float(np.mean(np.abs(z) > 4)),
            **{
                f"quad_ratio_d{d}": round(quadratic_gain(a, b, d)["ratio"], 4)
                for d in DIMS
                if len(a) > d * (d + 1) // 2 * 1.5
            },
            **{f"knn_ratio_d{d}": round(knn_gain(a, b, d)["ratio"], 4) for d in DIMS},
        }
    return out


def run_variant(args) -> dict:
    import jax

    from bayesda.sim.heldsuarez import HeldSuarezConfig, build_model, load_state

    store = pathlib.Path(args.store) if args.store else default_store()
    restarts = sorted(
        store.with_name(store.name + ".restart").glob("state_*.npz"),
        key=lambda p: int(p.stem.split("_")[1]),
    )
    if not restarts:
        raise SystemExit(f"no restart state next to {store}: run `bayesda data simulate` first")
    cfg = HeldSuarezConfig()
    tracer = None
    if args.tracer_days:
        # an "air-mass" tracer: -1 equatorward of 45 degrees, +1 poleward, a 10-degree
        # front in the storm tracks, relaxed back at every level
        tracer = (lambda lat: np.tanh((np.abs(lat) - 45.0) / 10.0), args.tracer_days)
    model = build_model(cfg, forcing=parse_forcing(args.forcing), tracer=tracer)
    state = load_state(model.initial_state, restarts[-1])
    t0 = time.perf_counter()
    n_spin = int(round(args.spinup_days * 24 / cfg.interval_hours))
    for _ in range(n_spin):
        state = model.advance(state)
    jax.block_until_ready(state)
    spin_s = time.perf_counter() - t0
    levels = [int(np.argmin(np.abs(model.sigma - s))) for s in LEVELS]
    frames = {"t": [], "vor": []} | ({"q": []} if tracer else {})
    t0 = time.perf_counter()
    for _ in range(args.snapshots):
        state = model.advance(state)
        col = model.column_fields(state)
        for k in frames:
            frames[k].append(col[k][levels].transpose(0, 2, 1))  # [level, lat, lon]
    sample_s = time.perf_counter() - t0
    order = np.argsort(model.lat)
    lat = model.lat[order]
    w = np.repeat(np.cos(np.radians(lat))[:, None], len(model.lon), axis=1)
    times = np.datetime64("2001-01-01", "ns") + np.arange(args.snapshots) * np.timedelta64(6, "h")
    fields = {}
    for k, units in (("t", "K"), ("vor", "1e-5/s"), ("q", "1")):
        if k not in frames or (args.fields and k not in args.fields.split(",")):
            continue
        arr = np.stack(frames[k], axis=1)[:, :, order, :].astype(np.float64)  # [lev, n, lat, lon]
        if k == "vor":
            arr = arr * 1e5
        if not np.all(np.isfinite(arr)):
            raise FloatingPointError(f"variant {args.name}: non-finite {k}; the run blew up")
        for i, s in enumerate(LEVELS):
            fields[f"{k}@{s}"] = {"units": units, **field_stats(arr[i], times, w)}
            print(args.name, f"{k}@{s}", json.dumps(fields[f"{k}@{s}"]), flush=True)
    return {
        "kind": "variant",
        "name": args.name,
        "forcing": (args.forcing or "Held-Suarez")
        + (f"; tracer q, tau {args.tracer_days} d" if args.tracer_days else ""),
        "restart": str(restarts[-1]),
        "spinup_days": args.spinup_days,
        "snapshots": args.snapshots,
        "spinup_s": round(spin_s, 1),
        "s_per_6h": round((spin_s + sample_s) / max(1, n_spin + args.snapshots), 3),
        "config": dataclasses.asdict(cfg),
        "fields": fields,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="base")
    p.add_argument("--forcing", default=None, help="e.g. dTy=100,ks=1 (K, 1/day)")
    p.add_argument("--spinup-days", type=float, default=0.0)
    p.add_argument("--snapshots", type=int, default=400)
    p.add_argument("--store", default=None)
    p.add_argument(
        "--tracer-days",
        type=float,
        default=None,
        help="add a passive air-mass tracer relaxed with this time scale",
    )
    p.add_argument("--fields", default=None, help="only these, e.g. q,t (default all)")
    p.add_argument("--timing", nargs=2, metavar=("GRID", "DT_MINUTES"), default=None)
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("gaussianity"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.timing:
        rec = timing(args.timing[0], float(args.timing[1]))
    else:
        rec = run_variant(args)
    rec["command"] = command(__spec__.name, argv)
    rec["wall_s"] = round(time.perf_counter() - t0, 1)
    rec["load_avg_1min"] = round(os.getloadavg()[0], 2)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "osse_variants.json"
    records = json.loads(path.read_text()) if path.exists() else []
    records = [r for r in records if r.get("command") != rec["command"]] + [rec]
    path.write_text(json.dumps(records, indent=1) + "\n")
    (args.out_dir / "osse_variants.md").write_text(markdown(records))
    print(json.dumps({k: v for k, v in rec.items() if k != "fields"}), flush=True)


def markdown(records: list[dict]) -> str:
    lines = [
        "# Short Held-Suarez variants: cost and non-Gaussianity",
        "",
        "Made by `python -m analysis.gaussianity.osse_variants` (each row's command in "
        "osse_variants.json). "
        "Statistics on the 7-day block split of each variant's snapshots; 'Gaussian' = the "
        "same statistic for draws from N(mean, training covariance) of the same size (the "
        "null at this sample size). Quadratic ratio: bayesda.data.fieldstats.quadratic_gain "
        "(< 1: a quadratic decoder of the d leading PC scores beats PCA-d on held-out fields).",
        "",
    ]
    timings = [r for r in records if r["kind"] == "timing"]
    if timings:
        lines += [
            "| grid | levels | dt min | s per 6 h | h for 20,000 | load |",
            "|---|---|---|---|---|---|",
        ]
        for r in timings:
            lines.append(
                f"| {r['grid']} | {r['layers']} | {r['dt_minutes']} | {r['s_per_6h']} | "
                f"{r['hours_for_20000']} | {r['load_avg_1min']} |"
            )
        lines.append("")
    variants = [r for r in records if r["kind"] == "variant"]
    if variants:
        lines += [
            "| variant | forcing | snapshots | s per 6 h | field | mean abs skew (Gaussian) | "
            "mean / max excess kurtosis (Gaussian max) | beyond 4 SD (Gaussian) | "
            + " | ".join(f"quad ratio d={d} (Gaussian)" for d in DIMS)
            + " | "
            + " | ".join(f"kNN ratio d={d} (Gaussian)" for d in DIMS)
            + " |",
            "|---|---|---|---|---|---|---|---|" + "---|" * (2 * len(DIMS)),
        ]
        for r in variants:
            for name, f in r["fields"].items():
                d, g = f["data"], f["gaussian"]
                lines.append(
                    f"| {r['name']} | {r['forcing']} | {r['snapshots']} | {r['s_per_6h']} | "
                    f"{name} | {d['skew_mean_abs']:.3f} ({g['skew_mean_abs']:.3f}) | "
                    f"{d['kurt_mean']:.2f} / {d['kurt_max']:.2f} ({g['kurt_max']:.2f}) | "
                    f"{d['frac_beyond_4sd']:.1e} ({g['frac_beyond_4sd']:.1e}) | "
                    + " | ".join(
                        f"{d[f'{kind}_ratio_d{k}']:.4f} ({g[f'{kind}_ratio_d{k}']:.4f})"
                        if f"{kind}_ratio_d{k}" in d
                        else ""
                        for kind in ("quad", "knn")
                        for k in DIMS
                    )
                    + " |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
