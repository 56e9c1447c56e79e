"""Compiled code and memory over many assimilations in one process (the leak check).

Before :mod:`bayesda.inference.sampler`, every ``assimilate`` call mapped a newly compiled (or
cache-loaded) XLA executable; one process ran out of memory maps (``vm.max_map_count``,
65530) after about 200 calls. This script assimilates ``--n-calls`` held-out NCEP times in
one process, with 20-200 uniform pseudo-observations (so several padded shapes occur), and
records the process's memory-map count, RSS and seconds per call as it goes. Flat counts
after the first few calls mean the compiled programs are reused.

Usage::

    BAYESDA_DATA_DIR=../shared/data python -m analysis.compiled_growth.bench_compiled_growth \\
        --n-calls 300
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import bayesda
from analysis.common.io import SHIPPED_MODEL, command, results_dir, write_json, write_text
from analysis.common.settings import STATED


def _maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-calls", type=int, default=300)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--draws", type=int, default=50)
    p.add_argument("--out", default=str(results_dir("compiled_growth") / "bench_compiled_growth"))
    args = p.parse_args(argv)

    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import block_split
    from bayesda.inference import sampler
    from bayesda.inference.assimilate import assimilate
    from bayesda.obs.table import pseudo_obs
    from bayesda.prior.checkpoint import load_model
    from bayesda.settings import SamplerSettings

    prior = load_model(SHIPPED_MODEL)
    ds = load_dataset("ncep-air")
    _, test = block_split(ds["time"].values)
    times = ds["time"].values[test]
    rows = []
    t_start = time.perf_counter()
    t_last, shapes = t_start, set()
    for i in range(args.n_calls):
        t = times[i % times.size]
        truth = prior.climatology.to_anomaly(ds["tas"].sel(time=t))
        n_obs = 20 + (37 * i) % 181  # 20..200: padded to 32, 64, 128 or 256
        obs = pseudo_obs(truth, n_obs, network="uniform", sigma=0.5, seed=i)
        a = assimilate(
            prior,
            obs,
            time=t,
            sampler=SamplerSettings(
                num_chains=args.chains, num_warmup=args.warmup, num_samples=args.draws
            ),
            options=STATED,
            seed=i,
            progress_bar=False,
        )
        shapes.add(a.settings["n_pad"])
        if (i + 1) % args.every == 0 or i == 0:
            now = time.perf_counter()
            n = 1 if i == 0 else args.every
            rows.append(
                {
                    "calls": i + 1,
                    "memory_maps": _maps(),
                    "max_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                    "padded_shapes_seen": len(shapes),
                    "compiled_programs": sampler.compiled_programs(),
                    "s_per_call": round((now - t_last) / n, 2),
                }
            )
            t_last = now
            print(json.dumps(rows[-1]), flush=True)
    wall = time.perf_counter() - t_start
    lines = [
        "# Compiled code and memory over many assimilations in one process",
        "",
        f"Command: `{command(__spec__.name, [])} --n-calls {args.n_calls}`; "
        f"{args.chains} chains x ({args.warmup} warmup + {args.draws} draws) per call, 20-200 "
        f"uniform obs per call, held-out NCEP times; total {wall:.0f} s. `memory_maps` counts "
        "lines of /proc/self/maps (the limit that the old per-call compilation exhausted "
        "after about 200 calls).",
        "",
        "| calls | memory maps | max RSS (MB) | padded shapes seen | NUTS programs | s/call |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['calls']} | {r['memory_maps']} | {r['max_rss_MB']} | "
            f"{r['padded_shapes_seen']} | {r['compiled_programs']} | {r['s_per_call']} |"
        )
    out = Path(args.out)
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    write_json(out.with_suffix(".json"), {"settings": vars(args), "rows": rows}, indent=2)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    bayesda.set_host_device_count()  # one CPU device per chain, before any JAX computation
    bayesda.enable_compilation_cache()
    raise SystemExit(main())
