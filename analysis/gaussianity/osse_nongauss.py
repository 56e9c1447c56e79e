"""Which stored or derived field of the simulated weather is least Gaussian?

For each candidate (the stored ``tas``, ``ps``, ``ua``, ``va`` and fields derived from them:
wind speed, relative vorticity, divergence, ``|grad T|``, the 6-hour change of ``tas``),
on the time-block split of the store:

* marginal skewness and excess kurtosis per pixel (:func:`bayesda.data.fieldstats.moments`),
  area-weighted means of their absolute values and their extremes;
* the fraction of standardised anomalies beyond 4 SD (a Gaussian: 6.3e-5);
* a positive control, ``control_translating_bump`` (synthetic, not from the store): a
  bump at a random longitude, the kind of structure a nonlinear prior is for;
* :func:`bayesda.data.fieldstats.quadratic_gain` and :func:`bayesda.data.fieldstats.knn_gain` at
  d = 16 and 32: how much of what PCA-d misses
  on held-out fields a quadratic function of the d leading PC scores recovers (the
  low-dimensional nonlinear structure a VAE decoder of that latent size could use;
  ratio 1 = none). The null (a Gaussian with the training sample covariance, same sizes)
  is computed for ``tas``.

Usage::

    OMP_NUM_THREADS=1 nice -n 15 python -m analysis.gaussianity.osse_nongauss [--max-snapshots N]

Writes analysis/gaussianity/results/osse_nongauss.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np

from analysis.common.io import command, results_dir
from analysis.common.osse import default_store
from bayesda.data.fieldstats import (
    EARTH_RADIUS_M,
    gaussian_surrogate,
    knn_gain,
    moments,
    quadratic_gain,
    sphere_gradient,
)

DIMS = (16, 32)


def derived(ds, lat, lon) -> dict[str, tuple]:
    """Candidate fields: name -> (function returning ``[time, lat, lon]`` float64, units)."""
    tan = np.tan(np.radians(lat))[:, None] / EARTH_RADIUS_M

    def get(name):
        return ds[name].values.astype(np.float64)

    def vorticity():
        u, v = get("ua"), get("va")
        return (sphere_gradient(v, lat, lon)[0] - sphere_gradient(u, lat, lon)[1] + u * tan) * 1e5

    def divergence():
        u, v = get("ua"), get("va")
        return (sphere_gradient(u, lat, lon)[0] + sphere_gradient(v, lat, lon)[1] - v * tan) * 1e5

    def change():
        t = get("tas")
        return np.concatenate([np.full_like(t[:1], np.nan), np.diff(t, axis=0)])

    def control():
        # positive control: one warm bump (10 K, SD 10 x 8 degrees) at 45N, at a random
        # longitude per time, plus 0.1 K white noise; translation is the textbook case where
        # PCA needs many modes and the higher ones are functions of the leading ones
        rng = np.random.default_rng(0)
        n = ds.sizes["time"]
        centre = rng.uniform(-180, 180, size=n)[:, None, None]
        dlon = (lon[None, None, :] - centre + 180) % 360 - 180
        bump = 10 * np.exp(-0.5 * ((dlon / 10) ** 2 + ((lat[None, :, None] - 45) / 8) ** 2))
        return bump + 0.1 * rng.standard_normal(bump.shape)

    return {
        "control_translating_bump": (control, "K"),
        "tas": (lambda: get("tas"), "K"),
        "ps": (lambda: get("ps"), "hPa"),
        "ua": (lambda: get("ua"), "m/s"),
        "va": (lambda: get("va"), "m/s"),
        "wind_speed": (lambda: np.hypot(get("ua"), get("va")), "m/s"),
        "vorticity": (vorticity, "1e-5/s"),
        "divergence": (divergence, "1e-5/s"),
        "grad_tas": (lambda: np.hypot(*sphere_gradient(get("tas"), lat, lon)) * 1e5, "K/100km"),
        "tas_6h_change": (change, "K/6h"),
    }


def stats(train: np.ndarray, test: np.ndarray, w: np.ndarray, null: bool, dims=DIMS) -> dict:
    skew, kurt = moments(train)
    z = (train - train.mean(0)) / train.std(0)
    out = {
        "anomaly_sd": float(train.std()),
        "skew_mean_abs_weighted": float(np.sum(np.abs(skew) * w) / np.sum(w)),
        "skew_min": float(skew.min()),
        "skew_max": float(skew.max()),
        "kurt_mean_weighted": float(np.sum(kurt * w) / np.sum(w)),
        "kurt_max": float(kurt.max()),
        "frac_beyond_4sd": float(np.mean(np.abs(z) > 4)),
        "frac_area_abs_skew_gt_0.5": float(np.sum((np.abs(skew) > 0.5) * w) / np.sum(w)),
    }
    for d in dims:
        out[f"quadratic_gain_d{d}"] = quadratic_gain(train, test, d)
        out[f"knn_gain_d{d}"] = knn_gain(train, test, d)
    if null:
        n = len(train) + len(test)
        sur = gaussian_surrogate(train, n, seed=7)
        s_skew, _ = moments(sur[: len(train)])
        out["gaussian_null"] = {
            "skew_mean_abs_weighted": float(np.sum(np.abs(s_skew) * w) / np.sum(w)),
            **{
                f"quadratic_gain_d{d}": quadratic_gain(sur[: len(train)], sur[len(train) :], d)
                for d in dims
            },
            **{f"knn_gain_d{d}": knn_gain(sur[: len(train)], sur[len(train) :], d) for d in DIMS},
        }
    return out


def windows(ds, lat, lon, train_mask, test_mask, argv, out_dir: pathlib.Path) -> None:
    """Gains in regional windows of tas (fewer pixels, fewer features at a time)."""
    t = ds["tas"].values.astype(np.float64)
    boxes = {
        "tas 30-60N x 0-90E": ((lat >= 30) & (lat <= 60), (lon >= 0) & (lon < 90)),
        "tas 15S-15N x 0-90E": (np.abs(lat) <= 15, (lon >= 0) & (lon < 90)),
    }
    res = {}
    for name, (la, lo) in boxes.items():
        x = t[:, la][:, :, lo]
        tr, te = x[train_mask], x[test_mask]
        tr, te = tr - tr.mean(0), te - tr.mean(0)
        res[name] = {
            "pixels": list(x.shape[1:]),
            **{
                f"d{d}": {
                    "quadratic": round(quadratic_gain(tr, te, d)["ratio"], 4),
                    "knn": round(knn_gain(tr, te, d)["ratio"], 4),
                }
                for d in (2, 4, 8)
            },
        }
        print(name, json.dumps(res[name]), flush=True)
    path = out_dir / "osse_nongauss.json"
    out = json.loads(path.read_text())
    out["windows"] = {"command": command(__spec__.name, argv), **res}
    path.write_text(json.dumps(out, indent=1) + "\n")
    (out_dir / "osse_nongauss.md").write_text(markdown(out))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None)
    p.add_argument("--max-snapshots", type=int, default=None)
    p.add_argument("--only", default=None, help="comma-separated candidates")
    p.add_argument("--dims", default="16,32", help="latent sizes of the gain probes")
    p.add_argument("--no-null", action="store_true", help="skip the Gaussian null")
    p.add_argument(
        "--windows",
        action="store_true",
        help="only: tas in two 90-degree windows (30-60N, 15S-15N) at d = 2, 4, 8",
    )
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("gaussianity"))
    args = p.parse_args(argv)
    import xarray as xr

    from bayesda.data.split import block_split

    t0 = time.perf_counter()
    store = args.store or default_store()
    ds = xr.open_zarr(store, consolidated=False)
    if args.max_snapshots:
        ds = ds.isel(time=slice(0, args.max_snapshots))
    lat, lon = ds["lat"].values, ds["lon"].values
    train_mask, test_mask = block_split(ds["time"].values)
    w = np.repeat(np.cos(np.radians(lat))[:, None], len(lon), axis=1)
    out = {
        "command": command(__spec__.name, argv),
        "store": str(store),
        "n_snapshots": int(ds.sizes["time"]),
        "results": {},
    }
    if args.windows:
        windows(ds, lat, lon, train_mask, test_mask, argv, args.out_dir)
        return
    fields = derived(ds, lat, lon)
    names = args.only.split(",") if args.only else list(fields)
    path = args.out_dir / "osse_nongauss.json"
    if args.only and path.exists():  # add to the earlier results of the same data
        old = json.loads(path.read_text())
        if old.get("n_snapshots") == out["n_snapshots"]:
            out["results"] = old["results"]
    for name in names:
        make, units = fields[name]
        x = make()
        ok = np.all(np.isfinite(x), axis=(1, 2))
        tr, te = x[train_mask & ok], x[test_mask & ok]
        mean = tr.mean(0)
        t1 = time.perf_counter()
        r = stats(
            tr - mean,
            te - mean,
            w,
            null=(name == "tas" and not args.no_null),
            dims=tuple(int(v) for v in args.dims.split(",")),
        )
        r["units"] = units
        r["seconds"] = round(time.perf_counter() - t1, 1)
        out["results"][name] = {**out["results"].get(name, {}), **r}
        print(name, json.dumps(r), flush=True)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    if args.only and path.exists():
        out["command"] = old.get("command", "") + f"; then {out['command']}"
        out["wall_seconds"] = round(old.get("wall_seconds", 0) + out["wall_seconds"], 1)
    out["load_avg_1min"] = round(os.getloadavg()[0], 2)
    out["n_train"], out["n_test"] = int(train_mask.sum()), int(test_mask.sum())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    (args.out_dir / "osse_nongauss.md").write_text(markdown(out))
    print((args.out_dir / "osse_nongauss.md").read_text())


def markdown(o: dict) -> str:
    lines = [
        "# Which field of the simulated weather is least Gaussian?",
        "",
        f"Command: `{o['command']}` ({o['n_snapshots']} snapshots of `{o['store']}`; "
        f"{o['n_train']} training / {o['n_test']} test on the 7-day block split; "
        f"{o['wall_seconds']} s at load {o['load_avg_1min']}). Moments over the training "
        "anomalies, area-weighted over pixels. Quadratic gain: test RMSE of PCA-d plus a "
        "ridge-regression of the PCA-d residual on the d(d+1)/2 products of the standardised "
        "leading scores, over the PCA-d RMSE (1 = no low-dimensional nonlinear structure; "
        "bayesda.data.fieldstats.quadratic_gain). kNN: the same with the residual predicted by "
        "the mean residual of the k nearest training fields in PC-score space (any smooth "
        "dependence; k chosen on a validation block; bayesda.data.fieldstats.knn_gain). "
        "control_translating_bump is synthetic (a 10 K bump at a random longitude, 45N, "
        "plus 0.1 K noise): a positive control.",
        "",
        "| field | units | anomaly SD | mean abs skew | skew min / max | mean / max excess "
        "kurtosis | beyond 4 SD | area with abs skew > 0.5 | quadratic / PCA d=16 | d=32 | "
        "kNN / PCA d=16 | d=32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name, r, units):
        def g(key):
            return f"{r[key]['ratio']:.4f}" if key in r else ""

        return (
            f"| {name} | {units} | "
            + (f"{r['anomaly_sd']:.3g}" if "anomaly_sd" in r else "")
            + " | "
            + f"{r['skew_mean_abs_weighted']:.3f} | "
            + (
                f"{r['skew_min']:.2f} / {r['skew_max']:.2f} | {r['kurt_mean_weighted']:.2f} / "
                f"{r['kurt_max']:.2f} | {r['frac_beyond_4sd']:.1e} | "
                f"{r['frac_area_abs_skew_gt_0.5']:.3f} | "
                if "skew_min" in r
                else "| | | | "
            )
            + " | ".join(g(f"{kind}_gain_d{d}") for kind in ("quadratic", "knn") for d in DIMS)
            + " |"
        )

    for name, r in o["results"].items():
        lines.append(row(name, r, r["units"]))
        if "gaussian_null" in r:
            lines.append(row(f"({name}: Gaussian null)", r["gaussian_null"], ""))
    if "windows" in o:
        w = o["windows"]
        lines += [
            "",
            f"Regional windows (`{w['command']}`): quadratic / kNN ratio at d = 2, 4, 8",
            "",
            "| window | pixels | d=2 | d=4 | d=8 |",
            "|---|---|---|---|---|",
        ]
        for name, r in w.items():
            if name == "command":
                continue
            lines.append(
                f"| {name} | {r['pixels'][0]} x {r['pixels'][1]} | "
                + " | ".join(
                    f"{r[k]['quadratic']:.4f} / {r[k]['knn']:.4f}" for k in ("d2", "d4", "d8")
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
