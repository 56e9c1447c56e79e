"""Calibration under a change of source with the default learned-error model (issue 25).

The shipped model learnt its representation error from NCEP 2.5-degree fields; the truths
here come from sources it was not trained on, built from held-out NCEP times as in
:mod:`analysis.source_shift.source_shift` (``none``: NCEP itself; ``finer``: NCEP plus a
Matern-3/2 field of 250 km, SD 1 K over sea and 2 K over land, drawn afresh per time;
``coarser``: NCEP smoothed by a 3 x 3 box). Station-like networks of 20, 50 and 200
observations (stated sigma 0.5 K) of each shifted truth are assimilated by
:func:`bayesda.assimilate` as shipped -- the learned site error, representation-error scale
and offset sampled with the field by NUTS -- and scored at the unobserved grid points
(:func:`bayesda.verify.metrics.verify`). Beside each score is the run's own check
(:func:`bayesda.preflight.learned.learned_check`: every fifth observation withheld, every
scale refitted) so that "self-check within +-0.05 of the truth's coverage" can be read off.

The check scores an *observation's* predictive at withheld stations (site error included);
the truth's coverage is of the *grid-cell field*. They answer the same question only when
the site error is small against the field's uncertainty; both are reported.

Output: ``analysis/source_shift/results/source_shift_learned.json`` (rows ``{"shift",
"network", "rmse", "crps", "coverage_90", "spread_skill", "check_coverage_90",
"site_sd", "repr_scale", "n_times", "command"}``) and ``.md``.

Usage: python -m analysis.source_shift.learned [--n-times 8] [--networks 20,50,200]
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
from analysis.common.linear import SHIFTS, shift_cases, shift_times
from bayesda.data.datasets import load_dataset
from bayesda.inference.assimilate import assimilate
from bayesda.inference.fields import posterior_dataset
from bayesda.preflight.learned import learned_check
from bayesda.prior.checkpoint import load_model
from bayesda.settings import DEMO, ModelOptions
from bayesda.sim.grf import GaussianRandomField
from bayesda.verify import metrics

SCORES = ("rmse", "crps", "coverage_90", "spread_skill")


def one_case(prior, obs, truth, seed: int, sampler) -> dict:
    options = ModelOptions()  # the default: learned errors
    a = assimilate(prior, obs, seed=seed, sampler=sampler, options=options, progress_bar=False)
    v = metrics.verify(posterior_dataset(a, prior), truth, obs).sel(region="unobserved")
    check = learned_check(prior, obs, options, seed=seed)
    post = a.idata.posterior
    return {
        **{k: float(v[k]) for k in SCORES},
        "check_coverage_90": check["coverage_90"],
        "site_sd": float(post["site_sd"].mean()),
        "repr_scale": float(post["repr_scale"].mean()),
        "offset": float(post["offset"].mean()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-times", type=int, default=8)
    ap.add_argument("--shifts", default=",".join(SHIFTS))
    ap.add_argument("--networks", default="20,50,200")
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--out", default=str(results_dir("source_shift") / "source_shift_learned"))
    args = ap.parse_args(argv)
    cmd = command(__spec__.name, argv)
    t_start = _time.perf_counter()
    prior = load_model(args.model)
    data = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))
    grf = GaussianRandomField(prior.grid, length_scale_km=250.0, sd=1.0, land_sea_ratio=2.0)
    # the times and cases of analysis.source_shift.source_shift, so the rows compare
    picks = shift_times(data["time"].values, args.n_times)
    shifts, networks = args.shifts.split(","), [int(v) for v in args.networks.split(",")]
    rows: dict = {}
    for case, k in enumerate(picks):
        for shift, n, truth, obs in shift_cases(prior, data, k, case, shifts, networks, grf):
            sc = one_case(prior, obs, truth, case, DEMO)
            rows.setdefault((shift, f"station-{n}"), []).append(sc)
        print(
            f"time {case + 1}/{len(picks)} done ({_time.perf_counter() - t_start:.0f} s)",
            flush=True,
        )
    out_rows = []
    for (shift, network), rs in rows.items():
        mean = {k: round(float(np.mean([r[k] for r in rs])), 4) for k in rs[0]}
        se = round(float(np.std([r["coverage_90"] for r in rs], ddof=1) / np.sqrt(len(rs))), 4)
        out_rows.append(
            {
                "shift": shift,
                "network": network,
                **mean,
                "coverage_90_se": se,
                "n_times": len(rs),
                "command": cmd,
            }  # fmt: skip
        )
    wall = _time.perf_counter() - t_start
    lines = [
        "# Calibration under a change of source, learned errors (the default)",
        "",
        f"`{cmd}` ({wall:.0f} s; NUTS {DEMO.num_chains} x ({DEMO.num_warmup} + "
        f"{DEMO.num_samples}); scores at unobserved grid points, means over "
        f"{args.n_times} held-out times; `check cov90`: the run's own 5-fold withheld-"
        "observation check; site SD, representation scale and offset: posterior means).",
        "",
        "| shift | network | RMSE | CRPS | cov90 (+- se) | spread/skill | check cov90 "
        "| check - truth | site SD K | repr. scale | offset K |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out_rows:
        lines.append(
            f"| {r['shift']} | {r['network']} | {r['rmse']:.3f} | {r['crps']:.3f} | "
            f"{r['coverage_90']:.3f} +- {r['coverage_90_se']:.3f} | {r['spread_skill']:.3f} | "
            f"{r['check_coverage_90']:.3f} | "
            f"{r['check_coverage_90'] - r['coverage_90']:+.3f} | {r['site_sd']:.2f} | "
            f"{r['repr_scale']:.2f} | {r['offset']:+.2f} |"
        )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".json"), json.dumps(out_rows, indent=2) + "\n")
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
