"""Real stations: wall time, peak memory and QC of the default command on a raw METAR stream.

Runs, in fresh processes, the command a user types for one hour of raw METAR bulletins over
North America (MetPy's test data, ``tests/fixtures/metar_20190701_1200.txt.gz``, no station
table):

    bayesda assimilate --model ncep-air --obs FILE --format metar --time 2019-07-01T12 --out RUN

with every default on (learned errors, learned QC, the five-fold calibration check, NUTS).
Each repeat records the wall time and the peak resident memory of the child process
(``getrusage(RUSAGE_CHILDREN)``), the stage timings of ``run.json``, the QC counts and the
largest departure QC left in. Targets: wall <= 60 s, peak RSS <= 2 GB, QC flags <= 2% of the
stations and every |departure| > 10 K.

Output: ``analysis/real_obs/results/speed.json`` and ``speed.md``.

Usage: python -m analysis.real_obs.speed [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from analysis.common.io import ROOT, command, results_dir, write_json, write_text

FIXTURE = ROOT / "tests" / "fixtures" / "metar_20190701_1200.txt.gz"
TIME = "2019-07-01T12"


def one_run(out: Path) -> dict:
    argv = [
        sys.executable, "-m", "bayesda.cli.main", "assimilate", "--model", "ncep-air", "--obs",
        str(FIXTURE), "--format", "metar", "--time", TIME, "--out", str(out), "--no-progress",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise SystemExit(f"the command failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    run = json.loads((out / "run.json").read_text())
    qc = run["qc"]
    n = qc["n_obs"]
    dep = np.array([f["departure"] for f in qc["flagged"] if f["departure"] is not None])
    kept = [line for line in proc.stdout.splitlines() if line.startswith(("QC:", "calib"))]
    return {
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(peak_kb / 1024**2, 2),
        # the high-water mark of all children so far: exact for the first repeat, an upper
        # bound for later ones
        "peak_is_this_run": before == 0,
        "timings_s": run.get("timings_s"),
        "n_stations": n,
        "n_flagged": len(qc["flagged"]),
        "flagged_fraction": round(len(qc["flagged"]) / n, 4),
        "largest_flagged_departure_k": round(float(np.abs(dep).max()), 2) if dep.size else None,
        "smallest_flagged_departure_k": round(float(np.abs(dep).min()), 2) if dep.size else None,
        "printed": kept,
        "verdict": json.loads((out / "diagnostics.json").read_text()).get("status"),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=str(results_dir("real_obs") / "speed.json"))
    args = p.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            out = Path(tmp) / f"run{i}"
            runs.append(one_run(out))
            print(json.dumps(runs[-1]), flush=True)
    result = {
        "command": command("analysis.real_obs.speed", argv),
        "bayesda_command": f"bayesda assimilate --model ncep-air --obs {FIXTURE.relative_to(ROOT)}"
        f" --format metar --time {TIME} --out RUN",
        "cpu_count": os.cpu_count(),
        "load_before": os.getloadavg()[0],
        "runs": runs,
        "median_wall_s": float(np.median([r["wall_s"] for r in runs])),
    }
    write_json(Path(args.out), result)
    r0 = runs[0]
    md = [
        "# Real stations: the default METAR command, wall time and memory",
        "",
        f"`{result['command']}` runs `{result['bayesda_command']}` in fresh processes "
        f"({result['cpu_count']} cores).",
        "",
        "| repeat | wall s | peak RSS GB | stations | QC flagged | smallest flagged departure K "
        "| verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs):
        rss = f"{r['peak_rss_gb']}" + ("" if r["peak_is_this_run"] else " (bound)")
        md.append(
            f"| {i} | {r['wall_s']} | {rss} | {r['n_stations']} | {r['n_flagged']} "
            f"({100 * r['flagged_fraction']:.1f}%) | {r['smallest_flagged_departure_k']} | "
            f"{r['verdict']} |"
        )
    md += ["", "What the first run printed:", "", *[f"    {s}" for s in r0["printed"]]]
    write_text(Path(args.out).with_suffix(".md"), "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
