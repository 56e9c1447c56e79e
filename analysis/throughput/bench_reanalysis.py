"""Reanalysis throughput: times per hour one at a time, batched, and on 2 Dask workers.

Held-out NCEP times (the shared block split) with 50 station-like pseudo-observations per
time (fixed station locations, fresh noise per time, sigma 0.5 K), assimilated with the
shipped model into a fresh zarr store. Modes: one process taking one time per compiled
program; one process with ``--batch-times`` times per program (their chains split over the
host devices, one after another on each); a local Dask cluster of 2 workers. Each mode runs
in its own subprocess so that the compile cost and the peak memory (max RSS of the process
and its children) are its own.

Usage::

    BAYESDA_DATA_DIR=../shared/data python -m analysis.throughput.bench_reanalysis --n-times 12
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

from analysis.common.io import command, results_dir, write_json, write_text
from analysis.common.ncep import make_obs, reanalyse_cmd

RESULTS = results_dir("throughput")


def run_mode(obs: Path, out: Path, extra: list[str], chains: int, warmup: int, draws: int) -> dict:
    """One ``bayesda reanalyse`` in a subprocess: its wall time, last line and peak RSS."""
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
    p.add_argument("--out", default=str(RESULTS / "bench_reanalysis"))
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
        f"Command: `{command(__spec__.name, [])} --n-times {args.n_times} "
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
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    write_json(out.with_suffix(".json"), {"settings": vars(args), "rows": rows}, indent=2)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
