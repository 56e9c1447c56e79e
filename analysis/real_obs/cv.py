"""Real stations: five-fold withheld-station cross-validation on a raw METAR bulletin stream.

The hour of METAR reports over North America of 2019-07-01 12 UTC (MetPy's test data, the
fixture ``tests/fixtures/metar_20190701_1200.txt.gz``) is read as distributed, placed from
the station database, moved to the model's surface height and turned into anomalies from
the shipped model's climatology (:mod:`bayesda.preflight.pipeline`, QC off so that every
method sees the same stations). The stations are split into five folds; each fold is
withheld in turn and predicted from a network drawn from the other four: all of them
("dense"), or a random 200 or 50. Every method gets the same inputs; each is scored at the
withheld stations on the predictive distribution of an observation there:

  learned      bayesda's default model (site error, representation scale and offset learnt)
  stated       bayesda with the stated errors and the model's own representation error
  oi_stated    optimal interpolation with the training anomalies' covariance, stated errors
  oi_ml        the same with its scales fitted by marginal likelihood: background scale,
               site SD and a uniform offset (type-II maximum likelihood; the fair peer)
  cressman     Cressman on the departures from the same background (climatology plus the
               lapse-rate adjustment); RMSE only, radius chosen on the test scores

Scores: RMSE, CRPS (from predictive draws; Gaussian for the OI methods) and the coverage of
the central 90% interval, over all withheld stations of the five folds.

Output: ``analysis/real_obs/results/real_obs.json`` (rows ``{"network", "method", "rmse",
"crps", "coverage_90", "n", "s_per_fold", "command"}`` plus per-fold details) and ``.md``.

Usage: python -m analysis.real_obs.cv [--networks dense,200,50] [--methods ...]
"""

from __future__ import annotations

import argparse
import json
import time as _time

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.optimize
from scipy import stats

import bayesda
from analysis.common.io import ROOT, SHIPPED_MODEL, command, results_dir, write_json, write_text

FIXTURE = ROOT / "tests" / "fixtures" / "metar_20190701_1200.txt.gz"
TIME = "2019-07-01T12:00"
METHODS = ("learned", "stated", "oi_stated", "oi_ml", "cressman")
RADII_KM = (150, 250, 400, 600, 900)


def station_anomalies(prior, path=FIXTURE, time=TIME) -> pd.DataFrame:
    """The bulletin's stations as anomalies at the model's surface (QC and check off)."""
    from bayesda.preflight.pipeline import load_observations, preflight

    obs, _ = load_observations(path, prior, fmt="metar", time=time)
    _, obs, _ = preflight(prior, obs, time=time, qc=False, calibrate="none")
    return obs.reset_index(drop=True)


def folds_of(n: int, k: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % k


def network(pool: np.ndarray, size, fold: int, seed: int = 1) -> np.ndarray:
    if size == "dense":
        return pool
    rng = np.random.default_rng([seed, fold, int(size)])
    return np.sort(rng.choice(pool, int(size), replace=False))


def crps_draws(y: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """CRPS of ``[s, n]`` predictive draws at ``[n]`` values (the energy form, exact for the
    draws' empirical distribution)."""
    d = np.sort(draws, axis=0)
    s = d.shape[0]
    term1 = np.mean(np.abs(d - y[None, :]), axis=0)
    i = np.arange(1, s + 1)[:, None]
    term2 = np.sum((2 * i - s - 1) * d, axis=0) / s**2
    return term1 - term2


def crps_gaussian(y, mu, sd):
    z = (y - mu) / sd
    return sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


def predict_bayesda(prior, train, test, options, sampler, seed):
    a = bayesda.assimilate(
        prior, train, time=TIME, seed=seed, sampler=sampler, options=options, progress_bar=False
    )
    ds = a.at(test["lat"], test["lon"], sigma=test["sigma"].to_numpy(), seed=seed, draws=True)
    draws = ds["draws"].values  # [s, n]
    return draws, {"verdict": a.diagnose().status, "wall_s": a.timings["wall"]}


class GaussianOI:
    """Optimal interpolation at stations with a dense background covariance ``B``."""

    def __init__(self, B: np.ndarray, grid):
        from bayesda.obs.operator import as_sparse, bilinear_stencil

        self.B, self.grid = B, grid
        self._h = lambda df: as_sparse(bilinear_stencil(grid, df["lat"], df["lon"]), grid.size)

    def predict(self, train, test, *, scale=1.0, site_sd=0.0, offset_sd=0.0):
        Ht, Hs = self._h(train), self._h(test)
        HB = (Ht @ self.B) * scale**2  # [n, p]
        S = np.asarray(Ht @ HB.T) + offset_sd**2 + np.diag(train["sigma"] ** 2 + site_sd**2)
        cho = scipy.linalg.cho_factor(S, lower=True)
        y = train["value"].to_numpy()
        K = np.asarray(Hs @ HB.T) + offset_sd**2  # [m, n]
        mu = K @ scipy.linalg.cho_solve(cho, y)
        prior_var = np.asarray(Hs.multiply(Hs @ self.B).sum(1)).ravel() * scale**2
        v = scipy.linalg.solve_triangular(cho[0], K.T, lower=True)
        var = prior_var + offset_sd**2 - np.sum(v**2, 0) + test["sigma"].to_numpy() ** 2
        return mu, np.sqrt(var + site_sd**2)

    def log_marginal(self, train, scale, site_sd, offset_sd) -> float:
        Ht = self._h(train)
        S = (
            np.asarray(Ht @ (Ht @ self.B).T) * scale**2
            + offset_sd**2
            + np.diag(train["sigma"] ** 2 + site_sd**2)
        )
        y = train["value"].to_numpy()
        try:
            cho = scipy.linalg.cho_factor(S, lower=True)
        except np.linalg.LinAlgError:
            return -np.inf
        return float(-0.5 * y @ scipy.linalg.cho_solve(cho, y) - np.sum(np.log(np.diag(cho[0]))))

    def fit(self, train) -> dict:
        """Type-II maximum likelihood of (scale, site_sd, offset_sd), on the log scale."""

        def nll(u):
            return -self.log_marginal(train, *np.exp(u))

        res = scipy.optimize.minimize(
            nll,
            np.log([1.0, 1.0, 1.0]),
            method="Nelder-Mead",
            options={"xatol": 1e-3, "fatol": 1e-3, "maxiter": 200},
        )
        scale, site_sd, offset_sd = np.exp(res.x)
        return {"scale": float(scale), "site_sd": float(site_sd), "offset_sd": float(offset_sd)}


def cressman(train, test, radius_km: float) -> np.ndarray:
    la, lo = np.radians(train["lat"].to_numpy()), np.radians(train["lon"].to_numpy())
    out = np.zeros(len(test))
    for k, (lat, lon) in enumerate(zip(test["lat"], test["lon"], strict=True)):
        a = (
            np.sin((la - np.radians(lat)) / 2) ** 2
            + np.cos(la) * np.cos(np.radians(lat)) * np.sin((lo - np.radians(lon)) / 2) ** 2
        )
        d = 2 * 6371.0 * np.arcsin(np.sqrt(a))
        w = np.clip((radius_km**2 - d**2) / (radius_km**2 + d**2), 0, None)
        out[k] = w @ train["value"].to_numpy() / w.sum() if w.sum() > 0 else 0.0
    return out


def run(args) -> dict:
    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import block_split
    from bayesda.settings import DEMO, ModelOptions
    from bayesda.verify.baselines import DEFAULT_SHRINKAGE, BackgroundCovariance

    bayesda.set_host_device_count()
    prior = bayesda.load_model(str(args.model))
    obs = station_anomalies(prior)
    folds = folds_of(len(obs), 5, args.seed)
    ds = load_dataset("ncep-air", args.data_dir)
    train_times, _ = block_split(ds["time"].values)
    anom = prior.climatology.to_anomaly(ds["tas"].isel(time=np.flatnonzero(train_times)))
    oi = GaussianOI(
        BackgroundCovariance.from_anomalies(anom, shrinkage=DEFAULT_SHRINKAGE).cov, prior.grid
    )
    sampler = DEMO
    rows, details = [], []
    for net in args.networks:
        per = {m: {"y": [], "draws": [], "mu": [], "sd": [], "secs": []} for m in args.methods}
        for f in range(5):
            test = obs[folds == f].reset_index(drop=True)
            train = obs.iloc[network(np.flatnonzero(folds != f), net, f)].reset_index(drop=True)
            info = {"network": net, "fold": f, "n_train": len(train), "n_test": len(test)}
            for m in args.methods:
                t0 = _time.perf_counter()
                if m in ("learned", "stated"):
                    options = ModelOptions(errors=m)
                    draws, extra = predict_bayesda(prior, train, test, options, sampler, f)
                    per[m]["draws"].append(draws)
                    info[m] = extra
                elif m == "oi_stated":
                    mu, sd = oi.predict(train, test)
                    per[m]["mu"].append(mu)
                    per[m]["sd"].append(sd)
                elif m == "oi_ml":
                    fit = oi.fit(train)
                    mu, sd = oi.predict(train, test, **fit)
                    per[m]["mu"].append(mu)
                    per[m]["sd"].append(sd)
                    info[m] = fit
                else:
                    per[m]["mu"].append({r: cressman(train, test, r) for r in RADII_KM})
                per[m]["y"].append(test["value"].to_numpy())
                per[m]["secs"].append(_time.perf_counter() - t0)
            details.append(info)
            print(json.dumps(info), flush=True)
        for m in args.methods:
            y = np.concatenate(per[m]["y"])
            row = {
                "network": str(net),
                "method": m,
                "n": int(y.size),
                "s_per_fold": round(float(np.mean(per[m]["secs"])), 1),
            }
            if m in ("learned", "stated"):
                draws = np.concatenate(per[m]["draws"], axis=1)
                mean = draws.mean(0)
                lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
                row.update(
                    rmse=float(np.sqrt(np.mean((y - mean) ** 2))),
                    crps=float(crps_draws(y, draws).mean()),
                    coverage_90=float(np.mean((y > lo) & (y < hi))),
                )
            elif m == "cressman":
                best = {
                    r: float(
                        np.sqrt(np.mean((y - np.concatenate([p[r] for p in per[m]["mu"]])) ** 2))
                    )
                    for r in RADII_KM
                }
                r = min(best, key=best.get)
                row.update(rmse=best[r], radius_km=r, rmse_by_radius=best)
            else:
                mu, sd = np.concatenate(per[m]["mu"]), np.concatenate(per[m]["sd"])
                row.update(
                    rmse=float(np.sqrt(np.mean((y - mu) ** 2))),
                    crps=float(crps_gaussian(y, mu, sd).mean()),
                    coverage_90=float(np.mean(np.abs(y - mu) < 1.6449 * sd)),
                )
            row["command"] = args.command
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {
        "rows": rows,
        "folds": details,
        "n_stations": len(obs),
        "time": TIME,
        "sampler": sampler.to_dict(),
    }


def report(result: dict) -> str:
    commands = list(dict.fromkeys(r["command"] for r in result["rows"]))
    lines = [
        "# Real stations: five-fold withheld-station cross-validation",
        "",
        f"{result['n_stations']} METAR stations of {result['time']} (raw bulletin stream, no "
        "station table), predictive of an observation at the withheld stations; bayesda "
        "with NUTS, 4 x (100 + 500). Made by "
        + " and ".join(f"`{c}`" for c in commands)
        + " (each row's command is in the JSON).",
        "",
        "| network | method | RMSE K | CRPS K | cov90 | s/fold |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        crps = f"{r['crps']:.3f}" if "crps" in r else ""
        cov = f"{r['coverage_90']:.3f}" if "coverage_90" in r else ""
        lines.append(
            f"| {r['network']} | {r['method']} | {r['rmse']:.3f} | {crps} | {cov} | "
            f"{r['s_per_fold']} |"
        )
    return "\n".join(lines) + "\n"


def merge_previous(result: dict, path) -> dict:
    """Keep the rows of networks and methods this run did not redo (each keeps its command)."""
    try:
        with open(path) as f:
            previous = json.load(f)
    except FileNotFoundError:
        return result
    done = {(r["network"], r["method"]) for r in result["rows"]}
    kept = [r for r in previous["rows"] if (r["network"], r["method"]) not in done]
    order = {n: i for i, n in enumerate(["dense", "200", "50"])}
    rows = sorted(kept + result["rows"], key=lambda r: order.get(r["network"], 9))
    redone = {(d["network"], d["fold"]) for d in result["folds"]}
    folds = [d for d in previous["folds"] if (d["network"], d["fold"]) not in redone]
    return result | {"rows": rows, "folds": folds + result["folds"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(SHIPPED_MODEL))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--networks", default="dense,200,50")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(results_dir("real_obs") / "real_obs.json"))
    args = p.parse_args(argv)
    args.command = command("analysis.real_obs.cv", argv)
    args.networks = [n if n == "dense" else int(n) for n in args.networks.split(",")]
    args.methods = args.methods.split(",")
    result = merge_previous(run(args), args.out)
    write_json(args.out, result)
    write_text(str(args.out).removesuffix(".json") + ".md", report(result))


if __name__ == "__main__":
    main()
