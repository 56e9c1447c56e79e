"""A climate that moved: the large-scale offset prior on a shifted period (issue 13, part 6).

Held-out NCEP anomalies plus a shift the training period never saw:

  none      the anomaly itself (the offset must not hurt)
  warm3     +3 K everywhere (a warm year or a warmer climate)
  gradient  +1 K at the southern edge of the domain rising to +4 K at the northern edge

observed by station-like networks (50 and 200, sigma 0.5 K) and assimilated with the offset
prior (:mod:`bayesda.preflight.offset`) ``none``, ``uniform`` or ``smooth`` (sd 2 K), in the
closed-form
posterior of the decoder linearised at ``z = 0`` (:mod:`analysis.common.linear`; what MAP +
Laplace computes for this near-linear decoder). Scores at unobserved grid points
(latitude-weighted), means over the times; ``bias`` is the mean error there, ``offset`` the
posterior mean of the uniform coefficient (:func:`bayesda.preflight.offset.estimate_offset`).

Output: ``analysis/climate_offset/results/climate_offset.{json,md}``.

Usage: python -m analysis.climate_offset.climate_offset [--n-times 12]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time as _time

import numpy as np

import bayesda  # noqa: F401
from analysis.common.io import SHIPPED_MODEL, command, results_dir, write_text
from analysis.common.linear import LinearisedPosterior, gaussian_scores
from bayesda.data.datasets import load_dataset
from bayesda.data.split import block_split
from bayesda.obs.table import pseudo_obs
from bayesda.preflight.offset import estimate_offset, offset_modes
from bayesda.prior.checkpoint import load_model
from bayesda.verify import metrics

SHIFTS = ("none", "warm3", "gradient")
KINDS = ("none", "uniform", "smooth")


def shift_field(grid, shift: str) -> np.ndarray:
    """The added ``[nlat, nlon]`` offset, K."""
    if shift == "none":
        return np.zeros(grid.shape)
    if shift == "warm3":
        return np.full(grid.shape, 3.0)
    if shift == "gradient":
        return 2.5 + 1.5 * offset_modes(grid, "smooth")[1]  # 1 K south .. 4 K north
    raise ValueError(f"shift={shift!r}; expected one of {SHIFTS}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-times", type=int, default=12)
    ap.add_argument("--sd", type=float, default=2.0, help="prior SD of each offset coefficient")
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--out", default=str(results_dir("climate_offset") / "climate_offset"))
    args = ap.parse_args(argv)
    t0 = _time.perf_counter()
    prior = load_model(args.model)
    data = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))
    lin = LinearisedPosterior(prior)
    base_C = lin.C
    extra_C = {}
    for kind in KINDS:
        U = offset_modes(prior.grid, kind).reshape(-1, prior.grid.size)
        extra_C[kind] = args.sd**2 * U.T @ U
    _, test = block_split(data["time"].values)
    ti = np.flatnonzero(test)
    picks = ti[np.linspace(5, ti.size - 6, args.n_times).astype(int)]
    rows: dict = {}
    for case, k in enumerate(picks):
        base = prior.climatology.to_anomaly(data["tas"].isel(time=int(k))).drop_vars("time")
        for shift in SHIFTS:
            truth = base + shift_field(prior.grid, shift).astype(np.float32)
            for n in (50, 200):
                obs = pseudo_obs(truth, n, network="station", sigma=0.5, seed=case)
                mask = ~metrics.observed_mask(prior.grid, obs)
                for kind in KINDS:
                    lin.C = base_C + extra_C[kind]
                    mean, sd = lin(obs)
                    sc = gaussian_scores(mean, sd, truth, obs)
                    err = truth.copy(data=mean) - truth
                    sc["bias"] = float(metrics.spatial_mean(err, mask=mask))
                    if kind == "uniform":
                        sc["offset"] = estimate_offset(prior, obs, "uniform", args.sd)["mean"][0]
                    rows.setdefault((shift, f"station-{n}", kind), []).append(sc)
        print(f"time {case + 1}/{len(picks)} ({_time.perf_counter() - t0:.0f} s)", flush=True)
    out_rows = []
    for (shift, net, kind), rs in rows.items():
        mean = {key: round(float(np.mean([r[key] for r in rs])), 4) for key in rs[0]}
        out_rows.append(
            {"shift": shift, "network": net, "offset_prior": kind, **mean, "n_times": len(rs)}
        )
    path = pathlib.Path(args.out)
    write_text(path.with_suffix(".json"), json.dumps(out_rows, indent=2) + "\n")
    lines = [
        "# A climate that moved: the offset prior on a shifted period",
        "",
        f"`{command(__spec__.name, [])} --n-times {args.n_times} --sd {args.sd:g}` "
        f"({_time.perf_counter() - t0:.0f} s; closed-form linearised posterior; scores at "
        "unobserved grid points, latitude-weighted, means over the held-out times; "
        "`offset`: posterior mean of the uniform coefficient).",
        "",
        "| shift | network | offset prior | bias | RMSE | CRPS | cov90 | spread/skill | offset |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out_rows:
        off = f"{r['offset']:+.2f}" if "offset" in r else ""
        lines.append(
            f"| {r['shift']} | {r['network']} | {r['offset_prior']} | {r['bias']:+.3f} | "
            f"{r['rmse']:.3f} | {r['crps']:.3f} | {r['coverage_90']:.3f} | "
            f"{r['spread_skill']:.3f} | {off} |"
        )
    write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
