"""Reanalysis throughput: times per hour one at a time, batched, and on 2 Dask workers.

Held-out NCEP times (the shared block split) with 50 station-like pseudo-observations per
time (fixed station locations, fresh noise per time, sigma 0.5 K), assimilated with the
shipped model into a fresh zarr store. Modes: one process taking one time per compiled
program; one process with ``--batch-times`` times per program (their chains split over the
host devices, one after another on each); a local Dask cluster of 2 workers. Each mode runs
in its own subprocess so that the compile cost and the peak memory (max RSS of the process
and its children) are its own.

Usage::

    BAYESDA_DATA_DIR=../shared/data python analysis/bench_reanalysis.py --n-times 12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def reanalysis_defaults(warmup=None, draws=None, chains=None) -> dict:
    """``num_chains``, ``num_warmup``, ``num_samples`` of the reanalysis default, each
    replaced by the given value when it is not None (the benchmarks' ``--warmup``/``--draws``)."""
    from bayesda.workflows.reanalysis import ReanalysisSettings

    d = ReanalysisSettings()
    return dict(
        num_chains=d.num_chains if chains is None else chains,
        num_warmup=d.num_warmup if warmup is None else warmup,
        num_samples=d.num_samples if draws is None else draws,
    )


def make_obs(path: Path, n_times: int, n_obs: int, seed: int = 0) -> list[str]:
    import numpy as np
    import pandas as pd

    import bayesda

    bayesda.set_host_device_count()  # before the first JAX computation
    bayesda.enable_compilation_cache()
    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import block_split
    from bayesda.obs.table import pseudo_obs
    from bayesda.prior.checkpoint import load_model

    prior = load_model(ROOT / "models" / "ncep-air")
    ds = load_dataset("ncep-air")
    _, test = block_split(ds["time"].values)
    times = ds["time"].values[test][:n_times]
    anom = prior.climatology.to_anomaly(ds["tas"].sel(time=times))
    first = pseudo_obs(anom.isel(time=0), n_obs, network="station", seed=seed)
    frames = [
        pseudo_obs(
            anom.isel(time=k), lat=first["lat"], lon=first["lon"], sigma=0.5, seed=seed + 1 + k
        )
        for k in range(times.size)
    ]
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return [str(np.datetime_as_string(t, "s")) for t in times]


def held_out_obs(n_times: int, n_obs: int, seed: int = 0):
    """:func:`make_obs` in memory: its observation table and its times (``datetime64``)."""
    import numpy as np
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "obs.csv"
        stamps = make_obs(path, n_times, n_obs, seed)
        obs = pd.read_csv(path)
    return obs, [np.datetime64(t) for t in stamps]


def reanalyse_cmd(obs: Path, out: Path, chains: int, warmup: int, draws: int) -> list[str]:
    """``python -m bayesda.cli.main reanalyse`` of the shipped model on ``obs`` into ``out``."""
    return [
        sys.executable,
        "-m",
        "bayesda.cli.main",
        "reanalyse",
        "--model",
        str(ROOT / "models" / "ncep-air"),
        "--obs",
        str(obs),
        "--out",
        str(out),
        "--chains",
        str(chains),
        "--warmup",
        str(warmup),
        "--draws",
        str(draws),
        "--no-progress",
    ]


def run_mode(obs: Path, out: Path, extra: list[str], chains: int, warmup: int, draws: int) -> dict:
    cmd = [*reanalyse_cmd(obs, out, chains, warmup, draws), *extra]
    # A wrapper process reports the peak RSS of its own process tree (the CLI and, for Dask,
    # its worker processes), so each mode's peak is its own.
    wrapper = (
        "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
        "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    lines = proc.stdout.strip().splitlines()
    maxrss = int(lines[-1].split()[1])
    return {"wall_s": wall, "stdout": lines[-2], "peak_rss_MB": maxrss / 1024}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-times", type=int, default=12)
    p.add_argument("--n-obs", type=int, default=50)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--draws", type=int, default=250)
    p.add_argument("--batch-times", type=int, default=4, help="times per program, batched mode")
    p.add_argument("--out", default=str(HERE / "results" / "bench_reanalysis"))
    args = p.parse_args(argv)

    import xarray as xr

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        obs = tmp / "obs.csv"
        times = make_obs(obs, args.n_times, args.n_obs)
        modes = {
            "one process, one time per program": [],
            f"one process, {args.batch_times} times per program": [
                "--batch-times",
                str(args.batch_times),
            ],
            "dask, 2 workers, one time per program": [
                "--scheduler",
                "local",
                "--workers",
                "2",
            ],
        }
        for name, extra in modes.items():
            res = run_mode(
                obs, tmp / f"{len(rows)}.zarr", extra, args.chains, args.warmup, args.draws
            )
            ds = xr.open_zarr(tmp / f"{len(rows)}.zarr", consolidated=False).load()
            rows.append(
                {
                    "mode": name,
                    "times": len(times),
                    "wall_s": round(res["wall_s"], 1),
                    "times_per_hour": round(3600 * len(times) / res["wall_s"], 1),
                    "median_s_per_time": round(float(ds["wall_s"].median()), 2),
                    "peak_rss_MB_one_process": round(res["peak_rss_MB"], 0),
                    "verdicts": {
                        k: int((ds["verdict"] == c).sum())
                        for k, c in (("PASS", 0), ("WARN", 1), ("FAIL", 2))
                    },
                    "max_rhat": round(float(ds["max_rhat"].max()), 4),
                    "min_ess_bulk": round(float(ds["min_ess_bulk"].min()), 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)

    settings = (
        f"{args.chains} chains x ({args.warmup} warmup + {args.draws} draws), "
        f"{args.n_obs} station obs"
    )
    lines = [
        "# Reanalysis throughput (NCEP held-out times, shipped model)",
        "",
        f"Command: `python analysis/bench_reanalysis.py --n-times {args.n_times} "
        f"--chains {args.chains} --batch-times {args.batch_times} "
        f"--warmup {args.warmup} --draws {args.draws}`; {settings}; {os.cpu_count()} CPU cores. "
        "Wall time includes process start, model load and compilation. Peak RSS is the largest "
        "single process of the run's process tree (for Dask: the client or one worker).",
        "",
        "| mode | times | wall (s) | times/hour | median s/time (in worker) | peak RSS (MB) "
        "| verdicts | max R-hat | min bulk ESS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['times']} | {r['wall_s']} | {r['times_per_hour']} "
            f"| {r['median_s_per_time']} | {r['peak_rss_MB_one_process']:.0f} | {r['verdicts']} "
            f"| {r['max_rhat']} | {r['min_ess_bulk']} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"settings": vars(args), "rows": rows}, indent=2)
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
