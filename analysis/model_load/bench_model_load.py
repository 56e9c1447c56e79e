"""Wall time of loading the shipped model in a fresh process, for one or more checkouts.

Each run is a new process, run in the checkout's directory with that checkout first on
``PYTHONPATH`` (as in :mod:`analysis.demo.bench_demo`). The libraries a model load needs (jax,
flax, xarray and the dask that xarray imports when it decodes a netCDF file) are imported
before the clock starts, so the time is bayesda's own work: reading and verifying the
files, checking the parameters' shapes, rebuilding the representation error. Checkouts
alternate; one unrecorded run per checkout fills the disk caches first.

Usage::

    python -m analysis.model_load.bench_model_load --root before=/tmp/base --root after=. \\
        --repeats 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from analysis.common.io import command, results_dir

_CHILD = """
import time
import bayesda.prior.checkpoint, dask.array, jax, xarray  # libraries: outside the clock
jax.numpy.zeros(1).block_until_ready()
from bayesda.workflows.run import load_prior
t = time.perf_counter()
load_prior({model!r})
print(time.perf_counter() - t)
"""


def run_once(root: Path, model: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(model=model)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"model load in {root} failed:\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", action="append", required=True, help="LABEL=PATH of a checkout")
    ap.add_argument("--model", default="models/ncep-air")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--out", default=str(results_dir("model_load") / "model_load"))
    args = ap.parse_args(argv)
    roots = [(s.split("=", 1)[0], Path(s.split("=", 1)[1]).resolve()) for s in args.root]
    for _, root in roots:
        run_once(root, args.model)  # fills the disk caches
    rows = []
    for i in range(args.repeats):
        for label, root in roots:
            seconds = run_once(root, args.model)
            rows.append({"label": label, "repeat": i, "load_s": round(seconds, 3)})
            print(json.dumps(rows[-1]), flush=True)
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    cmd = command(__spec__.name, argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"command": cmd, "utc": stamp, "rows": rows}, indent=1) + "\n"
    )
    lines = [
        f"# Loading `{args.model}` in a fresh process",
        "",
        f"`{cmd}` ({stamp}; {os.cpu_count()} CPU cores; disk caches filled by one "
        "unrecorded run per checkout; libraries imported before the clock).",
        "",
        "| checkout | runs | median s | min s | max s |",
        "|---|---|---|---|---|",
    ]
    for label, _ in roots:
        t = [r["load_s"] for r in rows if r["label"] == label]
        lines.append(
            f"| {label} | {len(t)} | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
