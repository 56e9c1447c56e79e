"""Reanalysis throughput on whatever device JAX sees: K = 8 ... 1024 times per program.

For each K, K NCEP times (50 station-like observations each, sigma 0.5 K) go through the
reanalysis fast path as one batch: one compiled NUTS program for all K x 4 chains
(:func:`bayesda.inference.assimilate.assimilate_summaries`: MAP vectorised over times on an
accelerator,
NUTS, then fields, summaries and verdicts as array programs, :mod:`bayesda.inference.batch`), and
one region write to a zarr store (:func:`bayesda.outputs.store.write_times`). Each K is run twice:
the first call compiles, the second (another seed) is timed (``warm``). Rows go to
``analysis/throughput/results/throughput.json`` (appended as each K finishes, so a timeout
keeps what was done) with the device name as JAX reports it, the time of each phase, the sampler's
gradients per second and the lockstep efficiency (useful / spent leapfrog work when chains
advance together).

    python -m analysis.throughput.bench_gpu --k 1,2 --draws 50 --warmup 50   # CPU smoke test
    python -m analysis.throughput.bench_gpu --k 8,64,256,1024                # on the GPU

Stop early with ``--budget-s``: K values that would not finish in the remaining time
(extrapolated linearly from the last one) are skipped and listed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from analysis.common.io import SHIPPED_MODEL, append_rows, command, results_dir

RESULTS = results_dir("throughput")


def device_name() -> str:
    import jax

    d = jax.devices()[0]
    kind = getattr(d, "device_kind", d.platform)
    return f"{d.platform}:{kind} x{jax.device_count()} ({os.cpu_count()} host cores)"


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


def run_k(prior, obs, times, settings, store_path, indices):
    """One batch through the reanalysis path: sampling, summaries and verdicts, store write."""
    import bayesda.outputs.store as store
    from bayesda.inference.assimilate import assimilate_summaries
    from bayesda.workflows.reanalysis import summary_dataset, time_seed

    t0 = time.perf_counter()
    res = assimilate_summaries(
        prior,
        obs,
        times,
        seeds=[time_seed(settings.seed, t) for t in times],
        sampler=settings.sampler,
        options=settings.options,
    )
    t1 = time.perf_counter()
    datasets = [summary_dataset(prior, r) for r in res]
    for ds in datasets:
        ds["wall_s"] = ((), np.float32((t1 - t0) / len(times)))
    if store_path is not None:
        store.write_times(store_path, indices, datasets)
    t2 = time.perf_counter()
    verdicts = [r.summary.verdict.status for r in res]
    tm = res[0].timings
    return {
        "assimilate_s": t1 - t0,
        "map_s": tm["map"],
        "warmup_s": tm["warmup"],
        "sampling_s": tm["sampling"],
        "summaries_s": tm["summaries"],
        "write_s": t2 - t1,
        "total_s": t2 - t0,
        "lockstep": round(tm["lockstep"], 3),
        "lockstep_warmup": round(tm["lockstep_warmup"], 3),
        "verdicts": {s: verdicts.count(s) for s in ("PASS", "WARN", "FAIL")},
        "grads": int(sum(r.grad_evals["warmup"] + r.grad_evals["sampling"] for r in res)),
        "results": res,
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", default="8,32,128,256,1024", help="times per program")
    p.add_argument("--n-obs", type=int, default=50)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=None, help="default: the reanalysis default")
    p.add_argument("--draws", type=int, default=None, help="default: the reanalysis default")
    p.add_argument("--max-tree-depth", type=int, default=None, help="default: reanalysis")
    p.add_argument("--budget-s", type=float, default=480.0)
    p.add_argument(
        "--verdict-k",
        type=int,
        default=0,
        help="also check the verdict's false alarms on the runs of this K against references",
    )
    p.add_argument("--ref-draws", type=int, default=4000)
    p.add_argument("--verdict-out", default=str(RESULTS / "verdict_shipped.json"))
    p.add_argument("--out", default=str(RESULTS / "throughput.json"))
    p.add_argument("--no-write", action="store_true", help="print only (smoke tests)")
    p.add_argument(
        "--no-store", action="store_true", help="skip the zarr write (a machine without zarr)"
    )
    return p.parse_args(argv)


def row_of(dev: str, k: int, base, n_obs: int, no_store: bool, warm: dict, cold: float, cmd: str):
    """The throughput ledger's row of one K (the warm call; ``cold``: the first call's s)."""
    per_time = warm["total_s"] / k
    return {
        "device": dev,
        "mode": "reanalysis fast path (assimilate_summaries"
        + (")" if no_store else " + store.write_times)")
        + ", "
        f"{k} times per program, warm, {base.num_chains} x ({base.num_warmup} + "
        f"{base.num_samples}), max tree depth {base.max_tree_depth}, "
        f"{n_obs} station obs",
        "times_per_batch": k,
        "times_per_hour": round(3600 / per_time, 1),
        "seconds_per_time": round(per_time, 4),
        "verdicts": warm["verdicts"],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cold_batch_s": round(cold, 2),
        "phases_s": {key: round(v, 3) for key, v in warm.items() if key.endswith("_s")},
        "lockstep": warm["lockstep"],
        "lockstep_warmup": warm["lockstep_warmup"],
        "grads_per_s": round(warm["grads"] / (warm["warmup_s"] + warm["sampling_s"])),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "command": cmd,
    }


def sweep(args, prior, base, dev: str, cmd: str, tmp: Path, t_start: float):
    """Each K twice (compile, then timed) within the budget; rows are appended to ``--out`` as
    they finish. Returns ``(rows, skipped K, the runs of --verdict-k, obs)``."""
    import pandas as pd

    import bayesda.outputs.store as store
    from analysis.common.ncep import make_obs

    ks = [int(k) for k in args.k.split(",")]
    path = tmp / "obs.csv"
    all_times = make_obs(path, max(ks), args.n_obs)
    obs = pd.read_csv(path)
    all_times = np.array([np.datetime64(t, "ns") for t in all_times])
    store_path = None if args.no_store else tmp / "bench.zarr"
    if store_path is not None:
        store.open_or_create(store_path, all_times, prior.grid, n_samples=0, signature={})
    rows, skipped, last, good_runs = [], [], None, None
    for k in ks:
        left = args.budget_s - (time.perf_counter() - t_start)
        # A new K compiles anew (about the previous cold - warm) and runs twice.
        if last is not None and last[2] + 2 * last[1] * k / last[0] > left:
            skipped.append(k)
            continue
        times = list(all_times[:k])
        idx = np.arange(k)
        t0 = time.perf_counter()
        first = run_k(prior, obs, times, base, store_path, idx)  # compiles
        cold = time.perf_counter() - t0
        warm = run_k(prior, obs, times, dataclasses.replace(base, seed=1), store_path, idx)
        if k == args.verdict_k:
            good_runs = first["results"] + warm["results"]
        last = (k, warm["total_s"], max(cold - warm["total_s"], 0.0))
        row = row_of(dev, k, base, args.n_obs, args.no_store, warm, cold, cmd)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.no_write:
            append_rows(Path(args.out), [row])
    return rows, skipped, good_runs, obs


def main(argv=None) -> int:
    args = parse_args(argv)

    import bayesda

    bayesda.set_host_device_count()  # before the first JAX computation
    bayesda.enable_compilation_cache()
    import jax

    from analysis.common.ncep import reanalysis_defaults
    from bayesda.prior.checkpoint import load_model
    from bayesda.workflows.reanalysis import ReanalysisSettings

    base = ReanalysisSettings(**reanalysis_defaults(args.warmup, args.draws, args.chains))
    if args.max_tree_depth:
        base = dataclasses.replace(base, max_tree_depth=args.max_tree_depth)
    t_start = time.perf_counter()
    prior = load_model(SHIPPED_MODEL)
    dev = device_name()
    cmd = command(__spec__.name, argv or None)
    print(f"devices: {jax.devices()}  ->  {dev}", flush=True)
    print(
        f"decoder value+grad/s vmapped: B=1 {decoder_rate(prior, 1):.0f}, "
        f"B=256 {decoder_rate(prior, 256):.0f}, B=1024 {decoder_rate(prior, 1024):.0f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows, skipped, good_runs, obs = sweep(args, prior, base, dev, cmd, Path(tmp), t_start)
        if skipped:
            print(f"skipped K = {skipped}: would not fit in --budget-s {args.budget_s}")
        if args.verdict_k and good_runs is not None:
            check = verdict_check(prior, obs, good_runs, base, args.ref_draws, args.verdict_k)
            check["device"] = dev
            check["command"] = cmd
            print(json.dumps(check), flush=True)
            if not args.no_write:
                Path(args.verdict_out).write_text(json.dumps(check, indent=2))
    return 0


def verdict_check(prior, obs, runs, settings, ref_draws: int, k: int) -> dict:
    """False alarms of the verdict on the shipped model: default runs against long references.

    Each of the ``k`` times gets a reference run (4 chains x (500 + ``ref_draws``)); a
    default run of that time counts as verified correct when its posterior mean is within
    5 Monte Carlo standard errors of the reference at every pixel (MCSE from the smaller
    bulk ESS of each run, so the check is lenient only by the ESS bound). The false-alarm
    rate is the fraction of verified runs whose verdict is not PASS.
    """
    from bayesda.inference.assimilate import assimilate_summaries
    from bayesda.workflows.reanalysis import time_seed

    times = [r.time for r in runs[:k]]
    t0 = time.perf_counter()
    ref = assimilate_summaries(
        prior,
        obs,
        times,
        seeds=[time_seed(99, t) for t in times],
        sampler=settings.sampler.replace(num_warmup=500, num_samples=ref_draws),
        options=settings.options,
    )
    ref_s = time.perf_counter() - t0
    by_time = {str(r.time): r.summary for r in ref}
    counts = {"PASS": 0, "WARN": 0, "FAIL": 0}
    verified, worst_z, reasons = 0, [], {}
    for r in runs:
        rs, s = by_time[str(r.time)], r.summary
        ess = max(min(s.verdict.min_ess_bulk_field, s.verdict.min_ess_bulk_z), 1.0)
        ess_ref = max(min(rs.verdict.min_ess_bulk_field, rs.verdict.min_ess_bulk_z), 1.0)
        zscore = np.abs(s.mean - rs.mean) / (rs.sd * np.sqrt(1 / ess + 1 / ess_ref))
        worst_z.append(float(zscore.max()))
        if worst_z[-1] < 5:
            verified += 1
            counts[s.verdict.status] += 1
            for reason in s.verdict.reasons:
                key = reason.split(" = ")[0]
                reasons[key] = reasons.get(key, 0) + 1
    n = max(verified, 1)
    return {
        "case": "shipped model ncep-air, 50 station-like obs, default reanalysis settings",
        "n_runs": len(runs),
        "n_times": k,
        "verified_correct": verified,
        "verdicts_of_verified": counts,
        "false_alarm_rate": round((counts["WARN"] + counts["FAIL"]) / n, 4),
        "reasons_of_verified_not_pass": reasons,
        "max_mean_error_mcse_median": float(np.median(worst_z)),
        "reference_verdicts": {
            v: sum(r.summary.verdict.status == v for r in ref) for v in ("PASS", "WARN", "FAIL")
        },
        "reference_draws": f"4 x (500 + {ref_draws})",
        "reference_seconds": round(ref_s, 1),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
