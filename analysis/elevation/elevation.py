"""What station height does on the NCEP grid, measured on real Colorado stations (issue 13).

Data: r-cran-fields' ``COmonthlyMet`` (Debian package ``r-cran-fields``, file
``data/COmonthlyMet.rda``; read with ``pyreadr``): monthly mean daily maximum and minimum
temperature at 376 Colorado stations, 1895-1997, with their elevations (811-3537 m). The
model grid's surface height is the shipped ``models/ncep-air/surface_height.nc``
(:mod:`bayesda.geo.orography`), 962-2487 m at these stations.

Part 1, the lapse rate in real data. For each month, the station climatology
(1968-1997, ``(tmax + tmin) / 2``, stations with >= 10 years) minus NCEP's 2013-2014
monthly mean at the station (bilinear) is regressed on station-minus-model height. The
slope is the lapse rate the model grid needs; the RMS of the difference before and
after adjusting at 6.5 K/km says how much of it height explains.

Part 2, assimilation. For held-out NCEP times (the block split's test times), 50
Colorado stations (a new random draw per time) observe

    ``y_i = truth(station_i) + d_i + e_i``,  ``e_i ~ N(0, 0.5^2)``,

where ``d_i`` is station ``i``'s *real* departure from the NCEP grid in that month (part
1's difference, less the month's regression intercept: the 1968-1997 vs 2013-2014 and
network offset that height does not explain). So the observations carry the real height
and siting effects of real stations. 40 are assimilated and 10 withheld; the posterior is
the closed form of the shipped decoder linearised at z = 0 (what MAP + Laplace gives for
this decoder; :mod:`analysis.source_shift.source_shift` cross-checks it). Arms:

  off         elevations ignored (before this change)
  on          lapse rate 6.5 +- 2 K/km (the default)
  on, no sd   lapse rate 6.5 K/km, no error term

Scores: at the grid nodes of a box around Colorado (32.5-45 N, 115-97.5 W; every node is
unobserved, stations are not on nodes): RMSE, mean error, CRPS, 90% coverage of the
truth; at the 10 withheld stations: 90% coverage and CRPS of the predictive for their
raw value (the field there, moved back to the station height in the ``on`` arms); and the
stations QC flags (:func:`bayesda.preflight.qc.quality_control`) among the 40.

Output: ``analysis/elevation/results/elevation.json`` and ``.md``.

Usage: python -m analysis.elevation.elevation [--n-times 40] [--comonthlymet PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time as _time

import numpy as np
import pandas as pd
from scipy import stats

import bayesda  # noqa: F401  (XLA flags before jax)
from analysis.common.io import SHIPPED_MODEL, command, results_dir
from analysis.common.linear import LinearisedPosterior
from analysis.common.settings import STATED
from bayesda.data.datasets import load_dataset
from bayesda.data.split import block_split
from bayesda.obs.elevation import LapseRate, adjust, surface_height_at
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.preflight.pipeline import preflight
from bayesda.prior.checkpoint import load_model

DEFAULT_RDA = [
    pathlib.Path.home() / ".cache" / "bayesda" / "r-cran-fields" / "COmonthlyMet.rda",
    pathlib.Path("/usr/lib/R/site-library/fields/data/COmonthlyMet.rda"),
]
BOX = {"lat": (32.5, 45.0), "lon": (-115.0, -97.5)}
ARMS = {  # name: (lapse rate, calibrate mode)
    "off": (LapseRate(0.0, 0.0), "none"),
    "on": (LapseRate(6.5, 2.0), "none"),
    "on, no sd": (LapseRate(6.5, 0.0), "none"),
    "off + calibrate auto": (LapseRate(0.0, 0.0), "auto"),
    "on + calibrate auto": (LapseRate(6.5, 2.0), "auto"),
}
Z90 = stats.norm.ppf(0.95)


def find_rda(path: str | None) -> pathlib.Path:
    for p in [pathlib.Path(path)] if path else DEFAULT_RDA:
        if p.is_file():
            return p
    raise FileNotFoundError(
        "COmonthlyMet.rda not found; get it from Debian's r-cran-fields: "
        "`apt-get download r-cran-fields && dpkg-deb -x r-cran-fields_*.deb x && "
        "cp x/usr/lib/R/site-library/fields/data/COmonthlyMet.rda "
        "~/.cache/bayesda/r-cran-fields/`, or pass --comonthlymet"
    )


def read_stations(path: pathlib.Path, first_year: int = 1968, min_years: int = 10):
    """Station lat, lon, elevation and the monthly climatology ``[12, n]`` in K (NaN: short)."""
    import pyreadr

    r = pyreadr.read_r(str(path))
    years = r["CO.years"].to_numpy()[:, 0]
    tmean = 0.5 * (r["CO.tmax"].values + r["CO.tmin"].values)  # (year, month, station), C
    sel = tmean[years >= first_year]
    n_years = np.sum(np.isfinite(sel), axis=0)
    with np.errstate(invalid="ignore"):
        clim = np.where(n_years >= min_years, np.nanmean(sel, axis=0), np.nan) + 273.15
    loc = r["CO.loc"].to_numpy()
    return {
        "lat": loc[:, 1],
        "lon": loc[:, 0],
        "elevation": r["CO.elev"].to_numpy()[:, 0].astype(np.float64),
        "id": r["CO.id"].to_numpy()[:, 0].astype(str),
        "clim": clim,
    }


def lapse_table(st: dict, tas, prior) -> tuple[list[dict], np.ndarray]:
    """Part 1 rows, and the departures ``d [12, n]`` (K) less each month's intercept."""
    stencil = bilinear_stencil(prior.grid, st["lat"], st["lon"])
    H = as_matrix(stencil, prior.grid.size)
    dz = st["elevation"] - surface_height_at(prior, st["lat"], st["lon"])
    monthly = tas.groupby("time.month").mean()
    rows, departures = [], np.full(st["clim"].shape, np.nan)
    for m in range(12):
        ncep = H @ monthly.isel(month=m).values.ravel()
        diff = st["clim"][m] - ncep
        ok = np.isfinite(diff) & np.isfinite(dz)
        fit = stats.linregress(dz[ok] / 1000.0, diff[ok])
        adj = diff[ok] + 6.5 * dz[ok] / 1000.0
        departures[m, ok] = diff[ok] - fit.intercept
        rows.append(
            {
                "month": m + 1,
                "n_stations": int(ok.sum()),
                "slope_k_per_km": round(fit.slope, 3),
                "slope_se": round(fit.stderr, 3),
                "intercept_k": round(fit.intercept, 3),
                "rms_raw_k": round(float(np.std(diff[ok])), 3),
                "rms_adjusted_6p5_k": round(float(np.std(adj)), 3),
                "rms_fitted_k": round(
                    float(np.std(diff[ok] - fit.intercept - fit.slope * dz[ok] / 1000)), 3
                ),
            }
        )
    return rows, departures


class Closed(LinearisedPosterior):
    """:class:`analysis.common.linear.LinearisedPosterior`, also at withheld points."""

    def __call__(self, obs: pd.DataFrame, test: pd.DataFrame, scale: float = 1.0):
        """Grid mean and SD, and the field's at ``test``; ``C`` scaled by ``scale^2``."""
        npix = self.b.size
        P = self.JJt + scale**2 * self.C
        H = as_matrix(bilinear_stencil(self.grid, obs["lat"], obs["lon"]), npix)
        Ht = as_matrix(bilinear_stencil(self.grid, test["lat"], test["lon"]), npix)
        PHt = P @ H.T
        S = H @ PHt + np.diag(obs["sigma"].to_numpy(np.float64) ** 2)
        w = np.linalg.solve(S, np.c_[obs["value"].to_numpy(np.float64) - H @ self.b, PHt.T])
        mean = self.b + PHt @ w[:, 0]
        var = np.diag(P) - np.sum(PHt * w[:, 1:].T, axis=1)
        # withheld points: the field there, with its full posterior covariance
        # (w[:, 1:] = S^-1 H P, so S^-1 H P Ht^T = w[:, 1:] @ Ht^T)
        cov_t = Ht @ P @ Ht.T - (Ht @ PHt) @ (w[:, 1:] @ Ht.T)
        mean_t = Ht @ mean
        return mean, np.sqrt(np.maximum(var, 0)), mean_t, np.sqrt(np.maximum(np.diag(cov_t), 0))


def crps(x, mu, sd):
    z = (x - mu) / sd
    return sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


def box_mask(grid) -> tuple[np.ndarray, np.ndarray]:
    """``(box, weights)``: the grid nodes inside :data:`BOX` (flat mask) and their cos-latitude
    weights."""
    la, lo = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    box = (
        (la >= BOX["lat"][0])
        & (la <= BOX["lat"][1])
        & (lo >= BOX["lon"][0])
        & (lo <= BOX["lon"][1])
    ).ravel()
    return box, np.cos(np.deg2rad(la)).ravel()[box]


def case_obs(grid, st, truth, departures_month, case: int, n_stations: int) -> pd.DataFrame:
    """Observations at ``n_stations`` random stations: the field there plus the station's own
    departure from the grid (its height, its climate) and N(0, 0.5^2) noise."""
    ok = np.flatnonzero(np.isfinite(departures_month))
    rng = np.random.default_rng([case, 13])
    pick = rng.choice(ok, n_stations, replace=False)
    H = as_matrix(bilinear_stencil(grid, st["lat"][pick], st["lon"][pick]), grid.size)
    return pd.DataFrame(
        {
            "station_id": st["id"][pick],
            "lat": st["lat"][pick],
            "lon": st["lon"][pick],
            "value": H @ truth + departures_month[pick] + rng.normal(0, 0.5, pick.size),
            "sigma": 0.5,
            "elevation": st["elevation"][pick],
        }
    )


def score_arm(prior, closed, used, held, truth, box, w_box, lapse, mode, case: int) -> dict:
    """One arm on one case: the run's own steps (height adjustment, QC, calibration), the
    closed-form posterior, scores on the box's grid nodes and at the withheld stations."""
    # the run's own steps: height adjustment, QC, calibration (bayesda.preflight.pipeline)
    _, o, rec = preflight(
        prior, used, qc=True, calibrate=mode, seed=case, lapse=lapse, options=STATED
    )
    fit = rec.get("calibration", {}).get("fit", {})
    h, _ = adjust(prior, held, lapse)
    h["sigma"] = h["sigma"] * fit.get("scale_obs", 1.0)
    qc = rec["qc"]
    mean, sd, mean_t, sd_t = closed(o, h, fit.get("scale", 1.0))
    err = (mean - truth)[box]
    z = np.abs(err) / sd[box]
    # predictive of the withheld raw values: field there, back to station height
    shift = h["height_adjustment"].to_numpy() if "height_adjustment" in h else 0.0
    pred = mean_t - shift
    pred_sd = np.sqrt(sd_t**2 + h["sigma"].to_numpy() ** 2)
    y_t = held["value"].to_numpy()
    return {
        "rmse": float(np.sqrt(np.average(err**2, weights=w_box))),
        "mean_error": float(np.average(err, weights=w_box)),
        "crps": float(np.average(crps(truth[box], mean[box], sd[box]), weights=w_box)),
        "coverage_90": float(np.average(z <= Z90, weights=w_box)),
        "spread_skill": float(
            np.sqrt(np.average(sd[box] ** 2, weights=w_box))
            / np.sqrt(np.average(err**2, weights=w_box))
        ),
        "withheld_coverage_90": float(np.mean(np.abs(y_t - pred) / pred_sd <= Z90)),
        "withheld_crps": float(np.mean(crps(y_t, pred, pred_sd))),
        "withheld_rmse": float(np.sqrt(np.mean((y_t - pred) ** 2))),
        "qc_flagged": int(qc["n_gross"] + qc["n_background"]),
        "scale_repr": float(fit.get("scale", 1.0)),
        "scale_obs": float(fit.get("scale_obs", 1.0)),
    }


def assimilate_arms(prior, data, st, departures, args, t0: float) -> dict[str, list]:
    """Every arm at every held-out time: ``{arm: [scores per time]}``."""
    closed = Closed(prior)
    g = prior.grid
    box, w_box = box_mask(g)
    times = data["time"].values
    _, test = block_split(times)
    idx = np.flatnonzero(test)
    picks = idx[np.linspace(3, idx.size - 4, args.n_times).astype(int)]
    scores: dict[str, list] = {a: [] for a in ARMS}
    for case, k in enumerate(picks):
        field = data["tas"].isel(time=int(k))
        month = int(pd.Timestamp(field["time"].values).month)
        truth = prior.climatology.to_anomaly(field).drop_vars("time").values.ravel()
        obs = case_obs(g, st, truth, departures[month - 1], case, args.n_stations)
        used, held = obs.iloc[args.n_withheld :], obs.iloc[: args.n_withheld]
        for arm, (lapse, mode) in ARMS.items():
            sc = score_arm(prior, closed, used, held, truth, box, w_box, lapse, mode, case)
            scores[arm].append(sc)
        print(
            f"time {case + 1}/{len(picks)} (month {month}) {_time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return scores


def summarise(scores: dict[str, list]) -> list[dict]:
    """Means over the times, one row per arm."""
    rows = []
    for arm, rs in scores.items():
        rows.append(
            {
                "arm": arm,
                "rate_k_per_km": ARMS[arm][0].rate,
                "rate_sd_k_per_km": ARMS[arm][0].rate_sd,
                "calibrate": ARMS[arm][1],
                **{k: round(float(np.mean([r[k] for r in rs])), 4) for k in rs[0]},
                "n_times": len(rs),
            }
        )
    return rows


def markdown(result: dict, args) -> str:
    """The lapse-rate table by month and the assimilation table by arm."""
    lines = [
        "# Station height on the NCEP grid: 300 Colorado stations (r-cran-fields COmonthlyMet)",
        "",
        f"`{result['command']}` ({result['wall_s']:.0f} s). Method and data: the script's "
        "docstring.",
        "",
        "## The lapse rate in real data",
        "",
        "Station climatology (1968-1997) minus NCEP (2013-2014) at the station, regressed on "
        "station-minus-model height, per month; RMS of the difference (about its mean) raw, after "
        "a 6.5 K/km adjustment, and after the fitted line.",
        "",
        "| month | stations | slope K/km (SE) | RMS raw K | RMS at 6.5 K/km | RMS fitted |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["lapse_rate_by_month"]:
        lines.append(
            f"| {r['month']} | {r['n_stations']} | "
            f"{r['slope_k_per_km']:+.2f} ({r['slope_se']:.2f}) | "
            f"{r['rms_raw_k']:.2f} | {r['rms_adjusted_6p5_k']:.2f} | {r['rms_fitted_k']:.2f} |"
        )
    lines += [
        "",
        f"## Assimilation: {args.n_stations - args.n_withheld} stations used, "
        f"{args.n_withheld} withheld, {args.n_times} held-out times",
        "",
        "Grid: nodes in 32.5-45 N, 115-97.5 W (all unobserved). Withheld: predictive of the "
        "withheld stations' raw values. QC: stations flagged among those used.",
        "",
        "| arm | grid RMSE K | grid mean error K | grid CRPS K | grid cov90 | spread/skill | "
        "withheld RMSE K | withheld CRPS K | withheld cov90 | QC flagged | scales b, a |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["assimilation"]:
        lines.append(
            f"| {r['arm']} | {r['rmse']:.3f} | {r['mean_error']:+.3f} | {r['crps']:.3f} | "
            f"{r['coverage_90']:.3f} | {r['spread_skill']:.2f} | {r['withheld_rmse']:.3f} | "
            f"{r['withheld_crps']:.3f} | {r['withheld_coverage_90']:.3f} | {r['qc_flagged']:.2f} | "
            f"{r['scale_repr']:.2f}, {r['scale_obs']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-times", type=int, default=40)
    ap.add_argument("--n-stations", type=int, default=50)
    ap.add_argument("--n-withheld", type=int, default=10)
    ap.add_argument("--comonthlymet", default=None)
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--out", default=str(results_dir("elevation") / "elevation"))
    args = ap.parse_args(argv)
    t0 = _time.perf_counter()
    prior = load_model(args.model)
    data = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))
    st = read_stations(find_rda(args.comonthlymet))
    table, departures = lapse_table(st, data["tas"], prior)
    for r in table:
        print(r)
    rows = summarise(assimilate_arms(prior, data, st, departures, args, t0))
    cmd = (
        f"{command(__spec__.name, [])} --n-times {args.n_times} "
        f"--n-stations {args.n_stations} --n-withheld {args.n_withheld}"
    )
    result = {
        "command": cmd,
        "wall_s": round(_time.perf_counter() - t0, 1),
        "lapse_rate_by_month": table,
        "assimilation": rows,
    }
    out = pathlib.Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result, args)
    out.with_suffix(".md").write_text(md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
