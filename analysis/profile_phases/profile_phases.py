"""Per-phase wall time of one analysis time on the shipped model, and how much warmup it needs.

Phases of one time (``bayesda reanalyse`` does exactly these): MAP + Laplace, NUTS warmup,
NUTS sampling, fields (decoding every draw, Matheron's conditional representation error,
the InferenceData), diagnostics (the verdict over ``z``, ``lp`` and every pixel), the
store's summaries (mean, SD, quantiles), and the zarr write. Diagnostics are timed both
ways on the same draws: ArviZ per variable (``before``: what ``bayesda.verify.verdict`` did)
and :mod:`bayesda.verify.convergence` (``after``).

Warmup sweep: with the Laplace covariance as the fixed mass matrix, warmup only tunes the
step size. For each warmup length the same times and seeds are sampled with 250 draws per
chain, and the step size, min bulk ESS over ``z``, ESS per second of sampler time and the
largest R-hat are recorded.

Usage::

    BAYESDA_DATA_DIR=../shared/data python -m analysis.profile_phases.profile_phases --n-times 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from analysis.common.io import SHIPPED_MODEL, results_dir
from analysis.common.settings import STATED


def arviz_extremes(idata, field):
    """The verdict's R-hat/ESS the way ``bayesda.verify.verdict`` computed them before (ArviZ)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az
    import xarray as xr

    out = []
    for ds in (
        idata.posterior,
        xr.Dataset({"field": (("chain", "draw", "lat", "lon"), np.asarray(field))}),
    ):
        out.append(
            (
                float(max(np.nanmax(v.values) for v in az.rhat(ds).data_vars.values())),
                float(
                    min(np.nanmin(v.values) for v in az.ess(ds, method="bulk").data_vars.values())
                ),
                float(
                    min(np.nanmin(v.values) for v in az.ess(ds, method="tail").data_vars.values())
                ),
            )
        )
    return out


def phases(prior, obs, times, settings, store_dir):
    """One time at a time through every phase; seconds per phase for each time."""
    from bayesda.inference.assimilate import assimilate_batch
    from bayesda.inference.fields import posterior_dataset
    from bayesda.outputs import store
    from bayesda.settings import SamplerSettings
    from bayesda.verify.verdict import diagnose
    from bayesda.workflows.reanalysis import ReanalysisSettings, assimilation_dataset, time_seed

    rs = ReanalysisSettings(**settings)
    store.open_or_create(store_dir, np.asarray(times), prior.grid, n_samples=0, signature={})
    rows = []
    for k, t in enumerate(times):
        t0 = time.perf_counter()
        a = assimilate_batch(
            prior,
            obs,
            [t],
            seeds=[time_seed(0, t)],
            sampler=SamplerSettings(**settings),
            options=STATED,
            progress_bar=False,
        )[0]
        t1 = time.perf_counter()
        v = diagnose(a.idata, a.field)
        t2 = time.perf_counter()
        arviz_extremes(a.idata, a.field)
        t3 = time.perf_counter()
        posterior_dataset(a, prior, time=a.time)
        t4 = time.perf_counter()
        # summaries + the verdict, as the store gets them
        summary = assimilation_dataset(prior, a, rs)
        t5 = time.perf_counter()
        summary["wall_s"] = ((), np.float32(t1 - t0))
        store.write_time(store_dir, k, summary)
        t6 = time.perf_counter()
        rows.append(
            {
                "time": str(t)[:19],
                "assimilate_total": t1 - t0,
                "map": a.timings["map"],
                "warmup": a.timings["warmup"],
                "sampling": a.timings["sampling"],
                "fields": a.timings["fields"],
                "other_in_assimilate": (t1 - t0)
                - sum(a.timings[k] for k in ("map", "warmup", "sampling", "fields")),
                "diagnostics_after_jax": t2 - t1,
                "diagnostics_before_arviz": t3 - t2,
                "summaries": t4 - t3,
                "summary_and_verdict_store": t5 - t4,
                "zarr_write": t6 - t5,
                "cache_hit": bool(a.timings.get("cache_hit")),
                "verdict": v.status,
                "grad_evals": a.grad_evals,
            }
        )
        print(
            json.dumps(
                {k: (round(x, 3) if isinstance(x, float) else x) for k, x in rows[-1].items()}
            ),
            flush=True,
        )
    return rows


def warmup_sweep(prior, obs, times, lengths, draws):
    from bayesda.inference.assimilate import assimilate_batch
    from bayesda.settings import SamplerSettings
    from bayesda.verify.verdict import diagnose
    from bayesda.workflows.reanalysis import time_seed

    out = []
    for w in lengths:
        settings = dict(num_chains=4, num_warmup=w, num_samples=draws)
        # First call compiles this warmup length; time the second.
        sampler = SamplerSettings(**settings)
        assimilate_batch(
            prior, obs, [times[0]], seeds=[1], sampler=sampler, options=STATED, progress_bar=False
        )
        rec = []
        for t in times:
            a = assimilate_batch(
                prior,
                obs,
                [t],
                seeds=[time_seed(7, t)],
                sampler=sampler,
                options=STATED,
                progress_bar=False,
            )[0]
            v = diagnose(a.idata, a.field)
            secs = a.timings["warmup"] + a.timings["sampling"]
            rec.append(
                {
                    "step_size": float(np.median(a.idata.sample_stats["step_size"].values)),
                    "steps_per_draw": float(a.idata.sample_stats["n_steps"].values.mean()),
                    "min_ess_bulk_z": v.min_ess_bulk_z,
                    "min_ess_tail_z": v.min_ess_tail_z,
                    "ess_per_s": v.min_ess_bulk_z / secs,
                    "sampler_s": secs,
                    "max_rhat_z": v.max_rhat_z,
                    "max_rhat_field": v.max_rhat_field,
                    "verdict": v.status,
                    "divergences": v.divergences,
                }
            )
        row = {"warmup": w, "draws": draws, "times": len(times)}
        for key in rec[0]:
            vals = [r[key] for r in rec]
            row[key] = vals if key == "verdict" else round(float(np.median(vals)), 4)
        row["max_rhat_z_worst"] = round(float(max(r["max_rhat_z"] for r in rec)), 4)
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-times", type=int, default=4)
    p.add_argument("--n-obs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=None, help="default: the reanalysis default")
    p.add_argument("--draws", type=int, default=None, help="default: the reanalysis default")
    p.add_argument("--sweep", default="0,25,50,100,200,300", help="warmup lengths ('' skips)")
    p.add_argument("--sweep-times", type=int, default=3)
    p.add_argument("--tag", default="", help="suffix of the output files")
    p.add_argument("--out", default=str(results_dir("profile_phases") / "profile_phases"))
    args = p.parse_args(argv)

    import pandas as pd

    import bayesda
    from analysis.common.ncep import make_obs, reanalysis_defaults

    bayesda.set_host_device_count()  # before the first JAX computation
    bayesda.enable_compilation_cache()
    from bayesda.prior.checkpoint import load_model

    settings = reanalysis_defaults(args.warmup, args.draws)
    load = [round(x, 2) for x in os.getloadavg()]
    prior = load_model(SHIPPED_MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "obs.csv"
        times = make_obs(path, args.n_times + 1, args.n_obs)
        obs = pd.read_csv(path)
        times = [np.datetime64(t) for t in times]
        # The first time compiles (and fills the caches); the rest are what a long run sees.
        rows = phases(prior, obs, times, settings, Path(tmp) / "s.zarr")
        lengths = [int(x) for x in args.sweep.split(",") if x]
        sweep = warmup_sweep(prior, obs, times[1 : 1 + args.sweep_times], lengths, 250)
    warm = rows[1:]
    keys = [k for k in warm[0] if isinstance(warm[0][k], float)]
    median = {k: round(float(np.median([r[k] for r in warm])), 3) for k in keys}
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_start": load,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "settings": settings,
        "first_time": rows[0],
        "median_warm": median,
        "rows": rows,
        "warmup_sweep": sweep,
    }
    out = Path(f"{args.out}{args.tag}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(median, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
