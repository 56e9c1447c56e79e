"""Calibration under a change of source, with and without ``calibrate="auto"`` (issue 13).

The shipped model learnt its representation error from NCEP 2.5-degree fields. Here the
truth comes from sources it was not trained on, built from held-out NCEP times:

  none     the NCEP anomaly itself (no shift: calibration must not change anything)
  finer    the NCEP anomaly plus the variability a finer source resolves and NCEP does not:
           a Matern-3/2 Gaussian random field with a 250 km length scale (about one grid
           step), SD 1 K over sea and 2 K over land (bayesda.sim.grf.GaussianRandomField),
           drawn afresh for each time -- a stand-in for a finer reanalysis or station data
           regridded to the NCEP grid
  coarser  the NCEP anomaly smoothed by a 3 x 3 box (a 7.5-degree source regridded)

For each shift, station-like network of 50 and 200 observations (sigma 0.5 K) and
held-out time, the observations of the shifted truth are assimilated with MAP + Laplace
(4 x 250 draws), by NUTS (``--engine nuts``) or in closed form (``--engine linear``, the
default), three times: as shipped (``off``), after :func:`bayesda.preflight.calibrate.calibrate`
with ``"auto"`` (representation- and observation-error scales fitted separately on 5-fold
withheld observations) and with ``"single"`` (one scale for both, the earlier fit).
Scores at unobserved grid points (:func:`bayesda.verify.metrics.verify`), means over the times.

Output: ``analysis/source_shift/results/source_shift.json`` (a list of rows ``{"shift", "network",
"calibrate", "rmse", "crps", "coverage_90", "spread_skill", "n_times", ...}``) and ``.md``.

Usage: python -m analysis.source_shift.source_shift [--n-times 10]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time as _time

import numpy as np

import bayesda  # noqa: F401  (XLA flags before jax)
from analysis.common.io import SHIPPED_MODEL, command, results_dir, write_text
from analysis.common.linear import (
    SHIFTS,
    LinearisedPosterior,
    gaussian_scores,
    shift_cases,
    shift_times,
)
from analysis.common.settings import STATED
from bayesda.data.datasets import load_dataset
from bayesda.inference.assimilate import assimilate
from bayesda.inference.fields import posterior_dataset
from bayesda.preflight.calibrate import calibrate
from bayesda.prior.checkpoint import load_model
from bayesda.settings import SamplerSettings
from bayesda.sim.grf import GaussianRandomField
from bayesda.verify import metrics

NETWORKS = (50, 200)


FIT_KEYS = ("scale", "scale_q05", "scale_q95", "scale_obs", "scale_obs_q05", "scale_obs_q95")


def score_mode(prior, obs, truth, mode: str, case: int, engine: str, linear, sampler) -> dict:
    """Calibrate with ``mode``, assimilate (``engine``) and score at unobserved grid points;
    with the fitted scales and the run's own withheld-observation check before / after."""
    p, o, rep = calibrate(prior, obs, mode, seed=case)
    fit = rep.get("fit", {})
    if engine in ("laplace", "nuts"):
        a = assimilate(p, o, seed=case, sampler=sampler, options=STATED, progress_bar=False)
        v = metrics.verify(posterior_dataset(a, p), truth, obs).sel(region="unobserved")
        sc = {k: float(v[k]) for k in ("rmse", "crps", "coverage_90", "spread_skill")}
    else:
        post = linear(obs, fit.get("scale", 1.0), fit.get("scale_obs", 1.0))
        sc = gaussian_scores(*post, truth, obs)
    return {
        **sc,
        **{k: fit.get(k, 1.0) for k in FIT_KEYS},
        "holdout_coverage_90": rep["check"]["coverage_90"],
        "holdout_crps": rep["check"]["crps"],
        "holdout_coverage_90_after": rep.get("check_calibrated", rep["check"])["coverage_90"],
    }


def run(args, prior, data, t_start: float) -> dict:
    """Every held-out time, shift, network and calibrate mode: ``{(shift, network, mode):
    [scores per time]}``."""
    linear = LinearisedPosterior(prior)
    grf = GaussianRandomField(prior.grid, length_scale_km=250.0, sd=1.0, land_sea_ratio=2.0)
    picks = shift_times(data["time"].values, args.n_times)
    method = "nuts" if args.engine == "nuts" else "laplace"
    sampler = SamplerSettings(
        method=method, num_chains=4, num_samples=args.draws, num_warmup=args.warmup
    )
    rows: dict = {}
    shifts, networks = args.shifts.split(","), [int(v) for v in args.networks.split(",")]
    for case, k in enumerate(picks):
        for shift, n, truth, obs in shift_cases(prior, data, k, case, shifts, networks, grf):
            for mode in args.modes.split(","):
                sc = score_mode(prior, obs, truth, mode, case, args.engine, linear, sampler)
                rows.setdefault((shift, f"station-{n}", mode), []).append(sc)
        print(
            f"time {case + 1}/{len(picks)} done ({_time.perf_counter() - t_start:.0f} s)",
            flush=True,
        )
    return rows


def summarise(rows: dict) -> list[dict]:
    """Means over the times, one row per (shift, network, calibrate mode)."""
    out_rows = []
    for (shift, network, mode), rs in rows.items():
        mean = {k: round(float(np.mean([r[k] for r in rs])), 4) for k in rs[0]}
        out_rows.append(
            {"shift": shift, "network": network, "calibrate": mode, **mean, "n_times": len(rs)}
        )
    return out_rows


def command_of(args) -> str:
    """The command as recorded in the result files."""
    cmd = (
        f"{command(__spec__.name, [])} --n-times {args.n_times} --shifts {args.shifts} "
        f"--engine {args.engine} --modes {args.modes} --networks {args.networks}"
    )
    if args.engine != "linear":
        cmd += f" --draws {args.draws}"
    if args.engine == "nuts":
        cmd += f" --warmup {args.warmup}"
    return cmd


def markdown(out_rows: list[dict], cmd: str, wall_s: float, args) -> str:
    """The table of mean scores and fitted scales."""
    engine = {
        "linear": "closed-form posterior of the decoder linearised at z = 0",
        "laplace": f"MAP + Laplace, 4 x {args.draws} draws",
        "nuts": f"NUTS, 4 x ({args.warmup} + {args.draws})",
    }[args.engine]
    lines = [
        "# Calibration under a change of source",
        "",
        f"`{cmd}` ({wall_s:.0f} s; {engine}; scores at unobserved "
        "grid points, means over the held-out times; `b` is the fitted representation-error "
        "scale and `a` the observation-error scale (one scale for both with `single`), "
        "[q05, q95] bootstrap intervals, means over the times; `holdout cov90` is the run's "
        "own 5-fold check of withheld observations before / after).",
        "",
        "| shift | network | calibrate | RMSE | CRPS | cov90 | spread/skill | b [q05, q95] "
        "| a [q05, q95] | holdout cov90 before / after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out_rows:
        lines.append(
            f"| {r['shift']} | {r['network']} | {r['calibrate']} | {r['rmse']:.3f} | "
            f"{r['crps']:.3f} | {r['coverage_90']:.3f} | {r['spread_skill']:.3f} | "
            f"{r['scale']:.2f} [{r['scale_q05']:.2f}, {r['scale_q95']:.2f}] | "
            f"{r['scale_obs']:.2f} [{r['scale_obs_q05']:.2f}, {r['scale_obs_q95']:.2f}] | "
            f"{r['holdout_coverage_90']:.3f} / {r['holdout_coverage_90_after']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-times", type=int, default=10)
    ap.add_argument("--shifts", default=",".join(SHIFTS))
    ap.add_argument("--draws", type=int, default=250, help="Laplace draws per chain (4 chains)")
    ap.add_argument(
        "--engine",
        choices=("linear", "laplace", "nuts"),
        default="linear",
        help="linear: closed-form linearised posterior; "
        "laplace, nuts: bayesda.inference.assimilate",
    )
    ap.add_argument("--warmup", type=int, default=150, help="NUTS warmup per chain")
    ap.add_argument("--modes", default="off,auto,single", help="calibrate modes to run")
    ap.add_argument(
        "--networks", default=",".join(map(str, NETWORKS)), help="numbers of observations"
    )
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--out", default=str(results_dir("source_shift") / "source_shift"))
    args = ap.parse_args(argv)
    t_start = _time.perf_counter()
    prior = load_model(args.model)
    data = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))
    out_rows = summarise(run(args, prior, data, t_start))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".json"), json.dumps(out_rows, indent=2) + "\n")
    md = markdown(out_rows, command_of(args), _time.perf_counter() - t_start, args)
    write_text(out.with_suffix(".md"), md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
