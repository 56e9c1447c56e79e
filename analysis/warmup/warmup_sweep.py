"""How much NUTS warmup the Laplace mass matrix needs (issue 11), on the shipped model.

With ``mass="laplace"`` the sampler starts at the MAP with the inverse Hessian there as its
mass matrix; warmup then only adapts the step size (and the mass matrix is kept). This
script runs the reanalysis settings (4 chains x 500 draws, 50 station-like observations,
held-out NCEP times) with warmup in ``--warmups`` and reports per setting:

* the adapted step size and leapfrog steps per draw;
* gradient evaluations in warmup and sampling, and the minimum bulk ESS of ``z`` per
  1,000 sampling gradients (efficiency);
* accuracy: the largest |z-score| of the posterior mean of ``z`` against a long reference
  run of the same time (4 x (500 + 2000) at the default warmup), in units of the Monte
  Carlo error of the difference (a correct run stays below about 4.5 for 100 latents);
* the verdict (:func:`bayesda.verify.verdict.diagnose`).

Output: ``analysis/warmup/results/warmup_sweep.json`` and ``.md``.

Usage: BAYESDA_DATA_DIR=../shared/data python -m analysis.warmup.warmup_sweep [--n-times 4]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import time

import numpy as np

from analysis.common.io import SHIPPED_MODEL, command, results_dir
from analysis.common.settings import STATED


def held_out_case(prior, n_times: int, n_obs: int):
    """``n_times`` held-out NCEP times (evenly spread) and their station-like observations."""
    import pandas as pd

    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import block_split
    from bayesda.obs.table import pseudo_obs

    ds = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))
    _, test = block_split(ds["time"].values)
    test_times = ds["time"].values[test]
    times = list(test_times[np.linspace(11, test_times.size - 12, n_times).astype(int)])
    frames = []
    for k, t in enumerate(times):
        anom = prior.climatology.to_anomaly(ds["tas"].sel(time=t))
        frames.append(pseudo_obs(anom, n_obs, network="station", sigma=0.5, seed=300 + k))
    obs = pd.concat(frames, ignore_index=True)
    obs["time"] = pd.to_datetime(obs["time"])
    return times, obs


def references(prior, obs, times, ref_draws: int) -> list[tuple]:
    """Per time, ``(mean, SD, bulk ESS)`` of ``z`` from a long run, 4 x (500 + ref_draws)."""
    from bayesda.inference.assimilate import assimilate_batch
    from bayesda.settings import REANALYSIS
    from bayesda.verify.convergence import host_convergence

    refs = assimilate_batch(
        prior,
        obs,
        times,
        seeds=[777 + k for k in range(len(times))],
        options=STATED,
        sampler=REANALYSIS.replace(num_warmup=500, num_samples=ref_draws),
        progress_bar=False,
    )
    ref = []
    for a in refs:
        zf = a.z.reshape(-1, a.z.shape[-1])
        ref.append((zf.mean(0), zf.std(0), host_convergence(a.z).ess_bulk))
    return ref


def run_setting(prior, obs, times, ref, depth: int, warmup: int, seeds: int) -> dict:
    """The reanalysis settings with ``warmup`` iterations and the Laplace warmup tree depth
    ``depth``, ``seeds`` runs per time: per-run means against the references."""
    import bayesda.inference.sampler as sampler
    from bayesda.inference.assimilate import assimilate_batch
    from bayesda.settings import REANALYSIS
    from bayesda.verify.convergence import host_convergence
    from bayesda.verify.verdict import diagnose

    w = warmup
    sampler.LAPLACE_WARMUP_TREE_DEPTH = depth  # part of the program's cache keys
    per = []
    for s in range(seeds):
        t0 = time.perf_counter()
        res = assimilate_batch(
            prior,
            obs,
            times,
            seeds=[1000 * s + 31 * k + w for k in range(len(times))],
            options=STATED,
            sampler=REANALYSIS.replace(num_warmup=w),
            progress_bar=False,
        )
        wall = time.perf_counter() - t0
        for a, (m, sd, ess_ref) in zip(res, ref, strict=True):
            conv = host_convergence(a.z)
            zf = a.z.reshape(-1, a.z.shape[-1])
            mcse = sd * np.sqrt(1 / conv.ess_bulk + 1 / ess_ref)
            ss = a.idata.sample_stats
            per.append(
                {
                    "step_size": float(np.mean(ss["step_size"].values)),
                    "steps_per_draw": float(np.mean(ss["n_steps"].values)),
                    "grads_warmup": int(a.grad_evals["warmup"]),
                    "grads_sampling": int(a.grad_evals["sampling"]),
                    "min_ess_bulk_z": float(np.min(conv.ess_bulk)),
                    "ess_per_1000_grads": 1000
                    * float(np.min(conv.ess_bulk))
                    / max(a.grad_evals["sampling"], 1),
                    "max_abs_zscore": float(np.max(np.abs((zf.mean(0) - m) / mcse))),
                    "verdict": diagnose(a.idata, a.field).status,
                    "wall_s_per_time": wall / len(times),
                    "lockstep_warmup": float(a.timings["lockstep_warmup"]),
                }
            )
    return {
        "warmup_tree_depth": depth,
        "num_warmup": w,
        **{k: round(float(np.mean([p[k] for p in per])), 4) for k in per[0] if k != "verdict"},
        "max_abs_zscore_worst": round(max(p["max_abs_zscore"] for p in per), 2),
        "verdicts": {v: sum(p["verdict"] == v for p in per) for v in ("PASS", "WARN", "FAIL")},
        "n_runs": len(per),
    }


def markdown(result: dict, depths_varied: bool, ref_draws: int, load: float) -> str:
    """The table, one row per (tree depth, warmup); ``load``: the 1-minute load at the start."""
    title = "how deep its trees" if depths_varied else "how much is needed"
    lines = [
        f"# NUTS warmup with the Laplace mass matrix: {title}",
        "",
        f"`{result['command']}` ({result['wall_s']:.0f} s, load {load:.1f}). "
        f"{result['settings']}; per-run means; z-score: posterior mean of z against a "
        f"4 x (500 + {ref_draws}) reference of the same time, in Monte Carlo errors of the "
        "difference.",
        "",
        "| warmup tree depth | warmup | step size | steps/draw | warmup grads | warmup lockstep "
        "| sampling grads | min ESS z | ESS / 1000 grads | max abs z-score (worst) "
        "| verdicts P/W/F |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        v = r["verdicts"]
        lines.append(
            f"| {r['warmup_tree_depth']} | {r['num_warmup']} | {r['step_size']:.3f} | "
            f"{r['steps_per_draw']:.1f} | {r['grads_warmup']:.0f} | {r['lockstep_warmup']:.2f} | "
            f"{r['grads_sampling']:.0f} | {r['min_ess_bulk_z']:.0f} | "
            f"{r['ess_per_1000_grads']:.1f} | {r['max_abs_zscore']:.2f} "
            f"({r['max_abs_zscore_worst']:.2f}) | {v['PASS']}/{v['WARN']}/{v['FAIL']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmups", default="0,10,25,50,100,200")
    ap.add_argument(
        "--warmup-tree-depths",
        default=None,
        help="comma list: also vary bayesda.inference.sampler.LAPLACE_WARMUP_TREE_DEPTH "
        "(same seeds)",
    )
    ap.add_argument("--n-times", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2, help="runs per time and warmup")
    ap.add_argument("--ref-draws", type=int, default=2000)
    ap.add_argument("--n-obs", type=int, default=50)
    ap.add_argument("--out", default=str(results_dir("warmup") / "warmup_sweep"))
    args = ap.parse_args(argv)

    import bayesda

    bayesda.set_host_device_count()
    bayesda.enable_compilation_cache()
    import bayesda.inference.sampler as sampler
    from bayesda.prior.checkpoint import load_model

    t_start = time.perf_counter()
    load = os.getloadavg()
    prior = load_model(SHIPPED_MODEL)
    times, obs = held_out_case(prior, args.n_times, args.n_obs)
    ref = references(prior, obs, times, args.ref_draws)
    print(f"references done, {time.perf_counter() - t_start:.0f} s", flush=True)
    default_depth = sampler.LAPLACE_WARMUP_TREE_DEPTH
    depths = [int(v) for v in (args.warmup_tree_depths or str(default_depth)).split(",")]
    rows = []
    for depth, w in [(d, int(w)) for d in depths for w in args.warmups.split(",")]:
        rows.append(run_setting(prior, obs, times, ref, depth, w, args.seeds))
        print(rows[-1], flush=True)
    sampler.LAPLACE_WARMUP_TREE_DEPTH = default_depth

    cmd = (
        f"{command(__spec__.name, [])} --warmups {args.warmups} --n-times {args.n_times} "
        f"--seeds {args.seeds} --ref-draws {args.ref_draws}"
        + (f" --warmup-tree-depths {args.warmup_tree_depths}" if args.warmup_tree_depths else "")
        + (f" --out {args.out}" if args.out != ap.get_default("out") else "")
    )
    result = {
        "command": cmd,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in load],
        "wall_s": round(time.perf_counter() - t_start, 1),
        "settings": "shipped ncep-air, 4 chains x 500 draws, mass laplace, init map, "
        f"{args.n_obs} station-like obs",
        "rows": rows,
    }
    out = pathlib.Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result, bool(args.warmup_tree_depths), args.ref_draws, load[0])
    out.with_suffix(".md").write_text(md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
