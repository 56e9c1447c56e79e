"""Reanalysis throughput on whatever device JAX sees: K = 8 ... 1024 times per program.

For each K, K held-out NCEP times (50 station-like observations each, sigma 0.5 K) run as
one compiled NUTS program (:func:`bayesda.infer.assimilate_batch`, 4 chains x (warmup +
draws) per time); then every time's verdict is computed, first with the per-time
:func:`bayesda.diagnostics.diagnose` and then, for the R-hat/ESS part, in one vectorised
call over all K times and pixels (:func:`bayesda.convergence.convergence` on
``[chain, draw, time, lat, lon]``). Each K is run twice: the first call compiles, the
second is timed (``warm``). Rows go to ``analysis/results/throughput.json`` (appended,
one row per device and mode) with the device name as JAX reports it.

Made to be run once by a session that has a GPU; on a CPU it is a smoke test at small K::

    python analysis/bench_gpu.py --k 1,2 --draws 50 --warmup 50      # CPU smoke test
    python analysis/bench_gpu.py --k 8,32,128,256,1024                 # on the GPU

Stop early with ``--budget-s``: K values that would not finish in the remaining time
(extrapolated linearly from the last one) are skipped and listed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def device_name() -> str:
    import jax

    d = jax.devices()[0]
    kind = getattr(d, "device_kind", d.platform)
    return f"{d.platform}:{kind} x{jax.device_count()} ({os.cpu_count()} host cores)"


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append rows to a JSON list atomically."""
    old = json.loads(path.read_text()) if path.exists() else []
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(old + rows, indent=2))
    tmp.replace(path)


def decoder_rate(prior, batch: int, reps: int = 20) -> float:
    """Decoder value-and-gradient evaluations per second, vmapped over ``batch`` latents."""
    import jax
    import jax.numpy as jnp

    f = jax.jit(jax.vmap(jax.value_and_grad(lambda z: jnp.sum(prior.decode(z) ** 2))))
    z = jnp.zeros((batch, prior.latent_dim))
    jax.block_until_ready(f(z))
    t0 = time.perf_counter()
    for _ in range(reps):
        out = f(z)
    jax.block_until_ready(out)
    return batch * reps / (time.perf_counter() - t0)


def run_k(prior, obs, times, settings, seeds):
    """One batch: timings of the program, the per-time verdicts, the vectorised diagnostics."""
    from bayesda.convergence import convergence
    from bayesda.diagnostics import diagnose
    from bayesda.infer import assimilate_batch
    from bayesda.settings import SamplerSettings

    t0 = time.perf_counter()
    res = assimilate_batch(
        prior, obs, times, seeds=seeds, sampler=SamplerSettings(**settings), progress_bar=False
    )
    t1 = time.perf_counter()
    verdicts = [diagnose(a.idata, a.field).status for a in res]
    t2 = time.perf_counter()
    fields = np.stack([a.field for a in res], axis=2)  # [chain, draw, time, lat, lon]
    conv = convergence(fields)
    np.asarray(conv.rhat)
    t3 = time.perf_counter()
    a = res[0]
    return {
        "assimilate_s": t1 - t0,
        "map_s": sum(r.timings["map"] for r in res),
        "warmup_s": a.timings["warmup"],
        "sampling_s": a.timings["sampling"],
        "fields_s": sum(r.timings["fields"] for r in res),
        "diagnose_per_time_s": t2 - t1,
        "diagnostics_vectorised_s": t3 - t2,
        "verdicts": {s: verdicts.count(s) for s in ("PASS", "WARN", "FAIL")},
        "grads": int(sum(r.grad_evals["warmup"] + r.grad_evals["sampling"] for r in res)),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", default="8,32,128,256,1024", help="times per program")
    p.add_argument("--n-obs", type=int, default=50)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=None, help="default: the reanalysis default")
    p.add_argument("--draws", type=int, default=None, help="default: the reanalysis default")
    p.add_argument("--budget-s", type=float, default=480.0)
    p.add_argument("--out", default=str(HERE / "results" / "throughput.json"))
    p.add_argument("--no-write", action="store_true", help="print only (smoke tests)")
    args = p.parse_args(argv)

    import bayesda

    bayesda.set_host_device_count()  # before the first JAX computation
    bayesda.enable_compilation_cache()
    import jax
    import pandas as pd
    from bench_reanalysis import make_obs

    from bayesda.checkpoint import load_model
    from bayesda.reanalysis import ReanalysisSettings

    d = ReanalysisSettings()
    settings = dict(
        num_chains=args.chains,
        num_warmup=d.num_warmup if args.warmup is None else args.warmup,
        num_samples=d.num_samples if args.draws is None else args.draws,
    )
    ks = [int(k) for k in args.k.split(",")]
    t_start = time.perf_counter()
    prior = load_model(ROOT / "models" / "ncep-air")
    dev = device_name()
    print(f"devices: {jax.devices()}  ->  {dev}", flush=True)
    print(
        f"decoder value+grad/s vmapped: B=1 {decoder_rate(prior, 1):.0f}, "
        f"B=256 {decoder_rate(prior, 256):.0f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "obs.csv"
        all_times = make_obs(path, max(ks), args.n_obs)
        obs = pd.read_csv(path)
        all_times = [np.datetime64(t) for t in all_times]
        rows, skipped, last = [], [], None
        for k in ks:
            left = args.budget_s - (time.perf_counter() - t_start)
            if last is not None and last[1] * k / last[0] * 2.5 > left:
                skipped.append(k)
                continue
            times = all_times[:k]
            t0 = time.perf_counter()
            run_k(prior, obs, times, settings, seeds=list(range(k)))  # compiles
            cold = time.perf_counter() - t0
            warm = run_k(prior, obs, times, settings, seeds=list(range(1000, 1000 + k)))
            per_time = warm["assimilate_s"] / k + warm["diagnose_per_time_s"] / k
            last = (k, warm["assimilate_s"] + cold)
            row = {
                "device": dev,
                "mode": f"assimilate_batch, {k} times per program, warm, "
                f"{settings['num_chains']} x ({settings['num_warmup']} + "
                f"{settings['num_samples']}), {args.n_obs} station obs",
                "times_per_batch": k,
                "times_per_hour": round(3600 / per_time, 1),
                "seconds_per_time": round(per_time, 3),
                "verdicts": warm["verdicts"],
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "cold_batch_s": round(cold, 2),
                "phases_s": {key: round(v, 3) for key, v in warm.items() if key.endswith("_s")},
                "grads_per_s": round(warm["grads"] / (warm["warmup_s"] + warm["sampling_s"])),
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if skipped:
        print(f"skipped K = {skipped}: would not fit in --budget-s {args.budget_s}", flush=True)
    if not args.no_write and rows:
        append_rows(Path(args.out), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
