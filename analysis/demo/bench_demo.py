"""Warm wall time of ``bayesda demo`` per phase, for one or more checkouts, back to back.

Each run is a fresh process, ``python -m bayesda.cli.main demo --out TMP --no-progress``, run in
the checkout's directory with that checkout first on ``PYTHONPATH`` (so a plain export of
an older commit, e.g. ``git archive COMMIT | tar -x -C /tmp/base``, can be compared with
this one using the same virtual environment). Checkouts alternate (A B A B ...) so that a
change in the machine's load hits both alike; each run records the 1-minute load average
before and after it, the process wall time, its CPU time (user + sys, less sensitive to
other processes than wall time on a shared machine), the demo's own phase line, gradient
evaluations, verdict and unobserved-point scores. ``--warm`` first runs each checkout once
unrecorded, so the JAX compilation cache (and bayesda's disk cache) is filled.
``--env LABEL:KEY=VALUE`` sets an environment variable for one label's runs (e.g. a user's
``XLA_FLAGS``); two labels may name the same checkout with different environments.
``--count-programs`` runs every demo with ``JAX_LOG_COMPILES=1`` and records how many XLA
programs the process compiled or fetched from the compilation cache (each is lowered in
the process first: the per-process overhead that bayesda's export cache and host-side
array handling remove).

Usage::

    BAYESDA_DATA_DIR=../shared/data python -m analysis.demo.bench_demo \\
        --root before=/tmp/base --root after=. --repeats 3 --warm
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analysis.common.io import command, results_dir

PHASES = ("data", "MAP", "warmup", "sampling", "fields", "diagnostics", "plots")
_TIME = re.compile(r"time: total ([\d.]+) s = " + r" \+ ".join(rf"{p} ([\d.]+)" for p in PHASES))


def parse(text: str) -> dict:
    """The demo's printed numbers: phases, gradients, verdict, unobserved scores."""
    m = _TIME.search(text)
    if m is None:
        raise ValueError(f"no timing line in the demo's output:\n{text[-2000:]}")
    row = {"demo_total_s": float(m.group(1))}
    row.update({p: float(v) for p, v in zip(PHASES, m.groups()[1:], strict=True)})
    g = re.search(r"gradient evaluations: (\{.*\})", text)
    row["grad_evals"] = json.loads(g.group(1).replace("'", '"')) if g else None
    v = re.search(r"verdict: (\w+)", text)
    row["verdict"] = v.group(1) if v else None
    s = re.search(r"unobserved\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text)
    if s:
        row.update(
            dict(
                zip(
                    ("rmse", "crps", "spread", "cov90", "cov50"),
                    map(float, s.groups()),
                    strict=True,
                )
            )
        )
    w = re.search(r"sampler: .*?(\d+) chains x (\d+) warmup \+ (\d+) draws", text)
    row["sampler"] = "x".join(w.groups()) if w else None
    return row


def run_once(
    root: Path, out: Path, extra_env: dict | None = None, count_programs: bool = False
) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root), **(extra_env or {}))
    if count_programs:
        env["JAX_LOG_COMPILES"] = "1"
    load0 = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bayesda.cli.main", "demo", "--out", str(out), "--no-progress"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"demo in {root} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    row = parse(proc.stdout)
    row.update(
        wall_s=round(wall, 2),
        cpu_s=round((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), 2),
        load_before=round(load0, 2),
        load_after=round(os.getloadavg()[0], 2),
    )
    if count_programs:
        row["programs"] = proc.stderr.count("Compiling ")
    return row


def table(rows: list[dict]) -> str:
    head = ["checkout", "load before/after", "wall s", "CPU s", "demo total s", *PHASES]
    head += ["warmup grads", "verdict", "RMSE", "CRPS", "cov90"]
    counted = any("programs" in r for r in rows)
    head += ["programs"] if counted else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["label"],
            f"{r['load_before']:.1f} / {r['load_after']:.1f}",
            f"{r['wall_s']:.1f}",
        ]
        cells += [f"{r['cpu_s']:.1f}", f"{r['demo_total_s']:.1f}"]
        cells += [f"{r[p]:.1f}" for p in PHASES]
        cells += [str((r["grad_evals"] or {}).get("warmup")), str(r["verdict"])]
        cells += [f"{r.get(k, float('nan')):.2f}" for k in ("rmse", "crps", "cov90")]
        cells += [str(r.get("programs", ""))] if counted else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def medians(rows: list[dict], labels: list[str]) -> str:
    import statistics

    keys = ["wall_s", "cpu_s", "demo_total_s", *PHASES]
    keys += ["programs"] if any("programs" in r for r in rows) else []
    lines = ["| checkout | runs | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for lab in labels:
        sub = [r for r in rows if r["label"] == lab]
        med = [f"{statistics.median(r[k] for r in sub):.1f}" for k in keys]
        lines.append(f"| {lab} | {len(sub)} | " + " | ".join(med) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", action="append", required=True, help="LABEL=PATH of a checkout")
    ap.add_argument(
        "--env", action="append", default=[], help="LABEL:KEY=VALUE, environment of one checkout"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warm", action="store_true", help="one unrecorded run per checkout first")
    ap.add_argument("--out", default=str(results_dir("demo") / "demo_time"))
    ap.add_argument(
        "--count-programs", action="store_true", help="count the XLA programs each run lowers"
    )
    args = ap.parse_args(argv)
    roots = [(s.split("=", 1)[0], Path(s.split("=", 1)[1]).resolve()) for s in args.root]
    envs: dict = {}
    for spec in args.env:
        label, kv = spec.split(":", 1)
        envs.setdefault(label, {})[kv.split("=", 1)[0]] = kv.split("=", 1)[1]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        if args.warm:
            for label, root in roots:
                run_once(root, Path(tmp) / f"warm-{label}", envs.get(label))
        for i in range(args.repeats):
            for label, root in roots:
                row = {
                    "label": label,
                    "env": envs.get(label, {}),
                    "root": str(root),
                    "repeat": i,
                    **run_once(root, Path(tmp) / label, envs.get(label), args.count_programs),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    cmd = command(__spec__.name, argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"command": cmd, "utc": stamp, "rows": rows}, indent=1)
    )
    md = [
        "# `bayesda demo` warm time per phase, checkouts back to back",
        "",
        f"`{cmd}` ({stamp}; {os.cpu_count()} CPU cores; warm JAX compilation cache). "
        "Each run is a fresh process; checkouts alternate. CPU s = user + sys of the process "
        "(what the run itself consumed; wall time also depends on the other jobs on the machine).",
        "",
        "## Medians",
        "",
        medians(rows, [lab for lab, _ in roots]),
        "",
        "## Runs",
        "",
        table(rows),
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
