"""The demo run several times in one Python process: the first call against later (warm) ones.

A library user who assimilates day after day in one session (a notebook, the reanalysis)
pays tracing, lowering and the loading of compiled programs once; this measures what each
later call costs. Each call writes the demo's run directory again (maps, netCDF, verdict),
as ``bayesda demo`` does. Set ``XLA_FLAGS`` in the environment to compare XLA settings.

Usage::

    BAYESDA_DATA_DIR=../shared/data python -m analysis.demo.bench_demo_inprocess --calls 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from analysis.common.io import SHIPPED_MODEL


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--out", default=None, help="JSON file for the rows (default: print only)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    import bayesda

    bayesda.set_host_device_count()
    bayesda.enable_compilation_cache()
    from bayesda.workflows.demo import run_demo
    from bayesda.workflows.run import load_prior

    prior = load_prior(args.model)
    print(f"imports and model: {time.perf_counter() - t0:.1f} s")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        for i in range(args.calls):
            t = time.perf_counter()
            info = run_demo(Path(tmp) / "demo", prior=prior, verbose=False, progress_bar=False)
            timings = {k: v for k, v in info["timings_s"].items() if isinstance(v, float)}
            row = {
                "call": i,
                "wall_s": round(time.perf_counter() - t, 2),
                **{k: round(v, 2) for k, v in timings.items()},
                "verdict": info["verdict"],
                "load": round(os.getloadavg()[0], 2),
                "xla_flags": os.environ.get("XLA_FLAGS", ""),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
