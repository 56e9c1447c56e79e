"""Reanalysis throughput of two checkouts back to back: the same observations, alternating.

Each run is ``bayesda reanalyse`` in a fresh process with the checkout first on
``PYTHONPATH`` (so an export of an older commit, ``git archive COMMIT | tar -x -C DIR``, runs
with this virtual environment), on held-out NCEP times with 50 station-like observations
(:func:`analysis.common.ncep.make_obs`), into a fresh zarr store. Wall time includes the process
start, loading the model and compiling (or loading compiled programs). Rows are appended to
``analysis/throughput/results/throughput.json`` with ``--record``.

Usage::

    git archive 5d0ee61 | tar -x -C /tmp/old
    BAYESDA_DATA_DIR=../shared/data python -m analysis.throughput.bench_reanalysis_commits \\
        --root 5d0ee61=/tmp/old --root main=. --n-times 8 --repeats 2 --record
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from analysis.common.io import ROOT, append_rows, command, results_dir
from analysis.common.ncep import make_obs, reanalyse_cmd

RESULTS = results_dir("throughput")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", action="append", required=True, help="LABEL=PATH of a checkout")
    ap.add_argument("--n-times", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--draws", type=int, default=250)
    ap.add_argument("--out", default=str(RESULTS / "reanalysis_commits.json"))
    ap.add_argument("--record", action="store_true", help="append rows to throughput.json")
    args = ap.parse_args(argv)

    roots = [(s.split("=", 1)[0], Path(s.split("=", 1)[1]).resolve()) for s in args.root]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rean-") as tmp:
        obs = Path(tmp) / "obs.csv"
        make_obs(obs, args.n_times, 50)
        for rep in range(args.repeats):
            for label, root in roots:
                out = Path(tmp) / f"{label}-{rep}.zarr"
                cmd = reanalyse_cmd(obs, out, args.chains, args.warmup, args.draws)
                env = {**os.environ, "PYTHONPATH": str(root)}
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
                wall = time.perf_counter() - t0
                if proc.returncode:
                    raise RuntimeError(f"{label}: {proc.stderr[-2000:]}")
                row = {
                    "label": label,
                    "repeat": rep,
                    "times": args.n_times,
                    "wall_s": round(wall, 1),
                    "times_per_hour": round(3600 * args.n_times / wall, 1),
                    "load_before": round(load, 2),
                    "load_after": round(os.getloadavg()[0], 2),
                    "summary": proc.stdout.strip().splitlines()[-1],
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    cmd = command(__spec__.name, argv)
    Path(args.out).write_text(
        json.dumps({"command": cmd, "utc": stamp, "rows": rows}, indent=1) + "\n"
    )
    if args.record:
        out = Path(args.out).resolve()
        source = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
        table = []
        for r in rows:
            verdicts = r["summary"].split("verdicts ")[-1]
            counts = dict(kv.split() for kv in verdicts.split(", "))
            table.append(
                {
                    "device": "cpu:cpu x4 (2 host cores)",
                    "mode": (
                        f"{r['label']}: bayesda reanalyse --chains {args.chains} --warmup "
                        f"{args.warmup} --draws {args.draws} on {r['times']} held-out times, "
                        f"one process, wall incl. start and compile; repeat {r['repeat']} "
                        "(bench_reanalysis_commits.py, checkouts back to back)"
                    ),
                    "times_per_batch": 1,
                    "times_per_hour": r["times_per_hour"],
                    "seconds_per_time": round(r["wall_s"] / r["times"], 2),
                    "verdicts": {k: int(v) for k, v in counts.items()},
                    "date": stamp,
                    "source": source,
                    "load_average": [r["load_before"], r["load_after"]],
                }
            )
        append_rows(RESULTS / "throughput.json", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
