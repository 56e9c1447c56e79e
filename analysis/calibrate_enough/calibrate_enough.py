"""How much withheld-observation information ``--calibrate auto`` needs before it may fit.

The question: below how many distinct observation sites does fitting the two error scales
(:func:`bayesda.preflight.calibrate.fit_scales`) make the analysis *worse* than keeping the
model's scales, and do the refusal rules (:func:`bayesda.preflight.calibrate.
information_problem`, :func:`bayesda.preflight.calibrate.bound_problem`) prevent it?

Synthetic and exact: :func:`bayesda.testing.grf_prior` (a linear prior holding a whole
Gaussian random field, SD 2 K, 800 km, on a 6 x 8 grid, with a diagonal representation error
of SD 0.5 K). Each trial draws a truth = GRF draw + representation error of SD
``0.5 * b_true``, and ``n`` observations at random sites with errors of SD ``0.5 * a_true``,
stated as 0.5 K. Scenarios: ``matched`` (b_true = a_true = 1), ``repr x2`` (b_true = 2:
a field with more small-scale variance than the model learnt), ``obs x2`` (a_true = 2:
stations worse than stated). For every trial the scales are fitted once (``raw``: the fit
always applied), and the analysis is the exact Gaussian posterior at the 48 grid nodes with

* ``off``: the model's scales (b = a = 1);
* ``raw``: the fitted scales, whatever they are (the behaviour before the refusal rules);
* ``rules``: the fitted scales unless the rules refuse (then b = a = 1), with
  :data:`bayesda.preflight.calibrate.MIN_SITES` as shipped;
* ``bound only``: the rules without the minimum number of sites (to see what it adds).

Reported per (scenario, n): the mean 90% coverage of the truth at the nodes, the paired
difference ``raw - off`` with its standard error over trials, and how often a scale landed
on the search grid's bound. Hostile samples (identical values, one station repeated,
every station at one place) are fitted the same way.

Usage: python -m analysis.calibrate_enough.calibrate_enough [--trials 30] [--n 3,5,...]
Output: analysis/calibrate_enough/results/calibrate_enough.json and .md
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
import pandas as pd

from analysis.common.io import command, results_dir
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.preflight import calibrate as cal
from bayesda.sim.grf import gaussian_posterior
from bayesda.testing import grf_prior

SCENARIOS = {"matched": (1.0, 1.0), "repr x2": (2.0, 1.0), "obs x2": (1.0, 2.0)}
SIGMA = 0.5
REPR_SD = 0.5
Z90 = 1.6449


def _coverage(prior, grf, obs, truth, b, a) -> float:
    """90% coverage of ``truth`` by the exact posterior at every grid node."""
    g = prior.grid
    P = grf.cov + b**2 * np.diag(prior.repr_error.diag_var.ravel().astype(np.float64))
    H = as_matrix(bilinear_stencil(g, obs["lat"], obs["lon"]), g.size)
    mean, cov = gaussian_posterior(
        np.zeros(g.size), P, H, obs["value"].to_numpy(), (a * obs["sigma"].to_numpy()) ** 2
    )
    z = (truth.ravel() - mean) / np.sqrt(np.diag(cov))
    return float(np.mean(np.abs(z) <= Z90))


def _obs(prior, truth, lat, lon, a_true, rng) -> pd.DataFrame:
    H = as_matrix(bilinear_stencil(prior.grid, lat, lon), prior.grid.size)
    y = H @ truth.ravel() + a_true * SIGMA * rng.standard_normal(lat.size)
    return pd.DataFrame({"lat": lat, "lon": lon, "value": y, "sigma": SIGMA})


def _decide(prior, obs, fit, seed) -> tuple[str | None, str | None, str | None]:
    """calibrate()'s rules for this fit: the information problem with the shipped minimum
    of sites, the same without a minimum (the bound-only arm), and the bound problem."""
    info = cal.information_problem(obs, seed=seed)
    info_any = cal.information_problem(obs, seed=seed, min_sites=0)
    p = cal.holdout_pieces(prior, obs)
    bound = cal.bound_problem(fit, cal.PAIR_GRID, p, cal.holdout_folds(p.y.size, 5, seed))
    return info, info_any, bound


def trial(prior, grf, n, b_true, a_true, seed, n_boot, sites="random"):
    rng = np.random.default_rng([seed, n, int(10 * b_true), int(10 * a_true)])
    g = prior.grid
    truth = grf.sample(rng, 1)[0] + b_true * REPR_SD * rng.standard_normal(g.shape)
    if sites == "one place":
        lat, lon = np.full(n, 40.0), np.full(n, -105.0)
    else:
        lat = rng.uniform(g.lat[0], g.lat[-1], n)
        lon = rng.uniform(g.lon[0], g.lon[-1], n)
        if sites == "one station repeated":
            lat, lon = np.full(n, lat[0]), np.full(n, lon[0])
    obs = _obs(prior, truth, lat, lon, a_true, rng)
    if sites == "identical values":
        obs["value"] = float(obs["value"].iloc[0])
    fit = cal.fit_scales(prior, obs, seed=seed, n_boot=n_boot)
    b, a = fit["scale"], fit["scale_obs"]
    info, info_any, bound = _decide(prior, obs, fit, seed)
    refused = info is not None or bound is not None
    refused_bound_only = info_any is not None or bound is not None
    grid = cal.PAIR_GRID
    on_bound = any(v <= grid[1] or v >= grid[-2] for v in (b, a))
    cov_off = _coverage(prior, grf, obs, truth, 1.0, 1.0)
    cov_raw = _coverage(prior, grf, obs, truth, b, a)
    return {
        "n": n,
        "n_sites": int(len(set(zip(lat.round(4), lon.round(4), strict=True)))),
        "seed": seed,
        "b": b,
        "a": a,
        "on_bound": on_bound,
        "refused_now": refused,
        "refused_bound_only": refused_bound_only,
        "why": info or bound,
        "cov_off": cov_off,
        "cov_raw": cov_raw,
        "cov_bound_only": cov_off if refused_bound_only else cov_raw,
    }


def _hostile(rows: dict, prior, grf, args) -> None:
    """The hostile samples (matched errors), into ``rows``."""
    for sites in ("identical values", "one station repeated", "one place"):
        for n in (8, 30):
            rows[f"hostile:{sites}|{n}"] = [
                trial(prior, grf, n, 1.0, 1.0, seed, args.n_boot, sites=sites)
                for seed in range(args.hostile_trials)
            ]


def summarise(rows: list[dict], min_sites: int) -> dict:
    """Means over trials; ``rules`` with the minimum ``min_sites`` (off below it, the
    bound-only arm from it on: the two rules together are calibrate()'s)."""
    d = pd.DataFrame(rows)
    d["cov_rules"] = np.where(d["n_sites"] < min_sites, d["cov_off"], d["cov_bound_only"])
    d["refused"] = (d["n_sites"] < min_sites) | d["refused_bound_only"]
    diff = d["cov_raw"] - d["cov_off"]
    return {
        "trials": len(d),
        "cov_off": float(d["cov_off"].mean()),
        "cov_raw": float(d["cov_raw"].mean()),
        "cov_bound_only": float(d["cov_bound_only"].mean()),
        "raw_minus_off": float(diff.mean()),
        "raw_minus_off_se": float(diff.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None,
        "frac_on_bound": float(d["on_bound"].mean()),
        "frac_refused": float(d["refused"].mean()),
        "cov_rules": float(d["cov_rules"].mean()),
        "frac_refused_bound_only": float(d["refused_bound_only"].mean()),
        "median_b": float(d["b"].median()),
        "median_a": float(d["a"].median()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--n", default="3,5,8,12,16,24,32,48")
    ap.add_argument("--hostile-trials", type=int, default=10)
    ap.add_argument("--n-boot", type=int, default=100)
    ap.add_argument(
        "--out",
        default=str(results_dir("calibrate_enough") / "calibrate_enough"),
    )
    ap.add_argument("--report", action="store_true", help="only re-render the .md from the .json")
    ap.add_argument("--hostile-only", action="store_true", help="redo only the hostile samples")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    if args.report:
        result = json.loads(out.with_suffix(".json").read_text())
        _render(result, out)
        return 0
    ns = [int(x) for x in args.n.split(",")]
    prior, grf = grf_prior(repr_sd=REPR_SD)
    t0 = time.time()
    if args.hostile_only:  # redo the hostile samples into an existing result
        result = json.loads(out.with_suffix(".json").read_text())
        _hostile(result["rows"], prior, grf, args)
        result["hostile_command"] = (
            f"{command(__spec__.name, [])} --hostile-only "
            f"--hostile-trials {args.hostile_trials} --n-boot {args.n_boot}"
        )
        out.with_suffix(".json").write_text(json.dumps(result, indent=0) + "\n")
        _render(result, out)
        return 0
    rows = {}
    for name, (b_true, a_true) in SCENARIOS.items():
        for n in ns:
            rows[f"{name}|{n}"] = [
                trial(prior, grf, n, b_true, a_true, seed, args.n_boot)
                for seed in range(args.trials)
            ]
            s = summarise(rows[f"{name}|{n}"], cal.MIN_SITES)
            print(
                f"{name:8s} n={n:3d}: off {s['cov_off']:.3f} raw {s['cov_raw']:.3f} "
                f"bound-only {s['cov_bound_only']:.3f} "
                f"raw-off {s['raw_minus_off']:+.3f} +- {s['raw_minus_off_se']:.3f} "
                f"on-bound {s['frac_on_bound']:.2f} ({time.time() - t0:.0f} s)",
                flush=True,
            )
    _hostile(rows, prior, grf, args)
    cmd = (
        f"{command(__spec__.name, [])} --trials {args.trials} "
        f"--n {args.n} --hostile-trials {args.hostile_trials} --n-boot {args.n_boot}"
    )
    result = {
        "command": cmd,
        "wall_s": round(time.time() - t0, 1),
        "ns": ns,
        "scenarios": {k: list(v) for k, v in SCENARIOS.items()},
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=0) + "\n")
    _render(result, out)
    return 0


def _render(result: dict, out: pathlib.Path) -> None:
    """Summaries with the shipped :data:`bayesda.preflight.calibrate.MIN_SITES`, as .md."""
    out.with_suffix(".md").write_text(_markdown(result, result["ns"], cal.MIN_SITES))
    print(f"wrote {out}.json and .md")


def _markdown(r: dict, ns: list[int], min_sites: int) -> str:
    lines = [
        "# How many sites `--calibrate auto` needs (synthetic GRF, exact posterior)",
        "",
        f"`{r['command']}` ({r['wall_s']:.0f} s)"
        + (f"; hostile samples: `{r['hostile_command']}`" if r.get("hostile_command") else "")
        + ". Method: the script's docstring. "
        f"`rules`: calibrate()'s refusal rules with the shipped minimum of {min_sites} "
        "distinct sites (off below it, `bound only` from it on).",
        "",
        "90% coverage of the truth at the 48 grid nodes, mean over trials; `raw - off` is "
        "the paired difference (fit always applied minus the model's scales) +- its "
        "standard error; `on bound`: share of fits with a scale on the search grid's bound; "
        "`refused`: share the rules refuse.",
        "",
        "| scenario | sites | off | raw fit | rules | bound only | raw - off | on bound | "
        "refused | median b, a |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in r["scenarios"]:
        for n in ns:
            s = summarise(r["rows"][f"{name}|{n}"], min_sites)
            lines.append(
                f"| {name} | {n} | {s['cov_off']:.3f} | {s['cov_raw']:.3f} | "
                f"{s['cov_rules']:.3f} | {s['cov_bound_only']:.3f} | "
                f"{s['raw_minus_off']:+.3f} +- {s['raw_minus_off_se']:.3f} | "
                f"{s['frac_on_bound']:.2f} | {s['frac_refused']:.2f} | "
                f"{s['median_b']:.2f}, {s['median_a']:.2f} |"
            )
    lines += [
        "",
        "## Hostile samples (matched scenario)",
        "",
        "| sample | n | off | raw fit | rules | refused | why (first) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, rows in r["rows"].items():
        if not key.startswith("hostile:"):
            continue
        sample, n = key[len("hostile:") :].split("|")
        s = summarise(rows, min_sites)
        why = next((x["why"] for x in rows if x["why"]), "")
        lines.append(
            f"| {sample} | {n} | {s['cov_off']:.3f} | {s['cov_raw']:.3f} | "
            f"{s['cov_rules']:.3f} | {s['frac_refused']:.2f} | {why} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
