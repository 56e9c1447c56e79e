"""NUTS target acceptance for a window of 9 times: tree length, step size, ESS and wall time.

One held-out window (the middle of the first test block, station-20, sigma 0.5 K), 4 chains x
(100 warmup + 500 draws) by default, the same seed, at each target acceptance; ESS (bulk and tail,
ArviZ) of every pixel of the middle time's field samples. Writes
``analysis/window/results/target_accept.json``.

Usage (repository root)::

    BAYESDA_DATA_DIR=../shared/data nice -n 10 python -m analysis.window.target_accept 0.6 0.8
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from analysis.common.io import SHIPPED_MODEL as MODEL
from analysis.common.io import command, write_json
from analysis.common.window import RESULTS, load_split


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("targets", type=float, nargs="*", default=[0.6, 0.8])
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--out", default=str(RESULTS / "target_accept.json"))
    args = p.parse_args(argv)
    nc, nd = args.chains, args.draws
    import bayesda

    bayesda.set_host_device_count()
    bayesda.enable_compilation_cache()
    import arviz as az

    from bayesda.inference.window import assimilate_window
    from bayesda.obs.table import pseudo_obs
    from bayesda.prior.checkpoint import load_model
    from bayesda.settings import SamplerSettings

    prior = load_model(MODEL)
    split = load_split(prior)
    A = split.anomalies
    c = int(np.flatnonzero(split.test)[14])
    idx = np.arange(c - 4, c + 5)
    net = pseudo_obs(A.isel(time=0), 20, network="station", sigma=1.0, seed=5)
    obs = [
        pseudo_obs(
            A.isel(time=int(i)),
            lat=net["lat"].to_numpy(),
            lon=net["lon"].to_numpy(),
            sigma=0.5,
            seed=100 + k,
        )
        for k, i in enumerate(idx)
    ]
    rows = []
    for ta in args.targets:
        s = SamplerSettings(num_chains=nc, num_warmup=args.warmup, num_samples=nd, target_accept=ta)
        t0 = time.perf_counter()
        a = assimilate_window(prior, obs, A["time"].values[idx], seed=0, sampler=s, want=[4])[0]
        wall = time.perf_counter() - t0
        st = a.idata.sample_stats
        f = az.convert_to_dataset(a.field.reshape(nc, nd, -1))
        bulk = az.ess(f, method="bulk")["x"].values
        tail = az.ess(f, method="tail")["x"].values
        row = {
            "target_accept": ta,
            "wall_s": round(wall, 1),
            "sampling_s": round(a.timings["sampling"], 1),
            "steps_per_draw": float(st["n_steps"].mean()),
            "step_size": round(float(st["step_size"].mean()), 4),
            "min_ess_bulk": int(bulk.min()),
            "min_ess_tail": int(tail.min()),
            "verdict": a.diagnose().status,
            "gradients": a.grad_evals,
        }
        print(row, flush=True)
        rows.append(row)
    out = pathlib.Path(args.out)
    window = [str(A["time"].values[idx[0]])[:13], str(A["time"].values[idx[-1]])[:13]]
    write_json(
        out,
        {"command": command("analysis.window.target_accept", argv), "window": window, "rows": rows},
        indent=2,
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
