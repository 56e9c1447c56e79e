"""End-to-end demo: a held-out NCEP winter day, station-like pseudo-observations, NUTS.

Steps: load the real NCEP air temperature (offline, ``$BAYESDA_DATA_DIR``), pick a time in
the held-out (test) blocks of :func:`bayesda.data.split.block_split` -- by default the first
held-out January day at 12 UTC in 2014 -- take its anomaly w.r.t. the model's climatology as
the truth, draw station-like observations of it (:func:`bayesda.obs.table.pseudo_obs`), assimilate
with the shipped model, diagnose, map (with truth and error panels), and verify (RMSE, CRPS,
90% coverage at unobserved points and at all points).

Sampler settings (:data:`bayesda.settings.DEMO`: 4 chains x 100 warmup + 500 draws,
Laplace-preconditioned NUTS) are the reanalysis' settings: with the Laplace covariance as
the fixed mass matrix warmup only adapts the step size, every warmup length from 10 to 200
gave correct PASS runs (``analysis/warmup/results/warmup_sweep.md``), and the verdict's error rates
were measured at exactly these settings (``analysis/verdict_rates/results/verdict_rates.md``). The
verdict uses the same thresholds as any run. Warm end-to-end time per phase, against the
previous settings and code: ``analysis/demo/results/demo_time.md``
(``analysis/demo/bench_demo.py``).
"""

from __future__ import annotations

import os
import time as _time
from pathlib import Path

import numpy as np

from bayesda.settings import DEMO, DEMO_OPTIONS, ModelOptions, SamplerSettings
from bayesda.workflows.run import assimilate_to_run, load_prior

__all__ = [
    "DEMO_N_OBS",
    "DEMO_NETWORK",
    "DEMO_SAMPLER",
    "DEMO_SIGMA",
    "demo_report",
    "pick_time",
    "run_demo",
]

# The demo's sampler settings as a dict (older callers); the settings object is DEMO.
DEMO_SAMPLER = {k: getattr(DEMO, k) for k in ("num_chains", "num_warmup", "num_samples")}
DEMO_N_OBS = 60
DEMO_SIGMA = 0.5
DEMO_NETWORK = "station"


def pick_time(times: np.ndarray, month: int = 1, hour: int = 12, year: int = 2014) -> np.datetime64:
    """The first held-out time in ``year``-``month`` at ``hour`` UTC (test split)."""
    import pandas as pd

    from bayesda.data.split import block_split

    _, test = block_split(times)
    t = pd.DatetimeIndex(times)
    ok = test & (t.month == month) & (t.hour == hour) & (t.year == year)
    if not ok.any():
        ok = test & (t.hour == hour)
    if not ok.any():
        raise ValueError("no held-out time in the dataset")
    return np.datetime64(times[np.flatnonzero(ok)[0]], "s")


def run_demo(
    out: str | os.PathLike = "runs/demo",
    *,
    model: str | os.PathLike = "ncep-air",
    data_dir=None,
    n_obs: int | None = None,
    time=None,
    prior=None,
    seed: int = 0,
    verbose: bool = True,
    sampler: SamplerSettings = DEMO,
    options: ModelOptions | None = None,
    progress_bar: bool = True,
) -> dict:
    """Run the demo and return ``run.json``'s content (plus in-memory results).

    Args:
      out: run directory (replaced if it exists).
      model: the model directory or name (ignored when ``prior`` is given).
      data_dir: directory of the real data (default ``$BAYESDA_DATA_DIR``).
      n_obs: number of pseudo-observations (default :data:`DEMO_N_OBS`).
      time: the analysis time (default :func:`pick_time`); must be held out.
      prior: an in-memory prior instead of ``model`` (tests).
      seed: seeds the observations and the sampler.
      verbose: print the summary.
      sampler, options, progress_bar: as for :func:`bayesda.assimilate` (default sampler
        :data:`bayesda.settings.DEMO`, options :data:`bayesda.settings.DEMO_OPTIONS`).
    """
    options = DEMO_OPTIONS if options is None else options
    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import block_split
    from bayesda.geo.grid import Grid
    from bayesda.obs.table import pseudo_obs

    t0 = _time.perf_counter()
    prior = prior if prior is not None else load_prior(model)
    if prior.climatology is None:
        raise ValueError(
            f"model {prior.name!r} has no climatology; the demo needs one to form anomalies"
        )
    data = load_dataset("ncep-air", data_dir or os.environ.get("BAYESDA_DATA_DIR"))
    grid = Grid.from_xarray(data)
    if grid != prior.grid:
        raise ValueError(f"model grid {prior.grid.shape} does not match the NCEP grid {grid.shape}")
    times = data["time"].values
    time = pick_time(times) if time is None else np.datetime64(time, "s")
    _, test = block_split(times)
    k = np.flatnonzero(times == time)
    if k.size == 0 or not test[k[0]]:
        raise ValueError(f"time={time} is not a held-out (test split) time of the dataset")
    truth = prior.climatology.to_anomaly(data["tas"].isel(time=int(k[0])))
    obs = pseudo_obs(truth, n_obs or DEMO_N_OBS, network=DEMO_NETWORK, sigma=DEMO_SIGMA, seed=seed)
    t_data = _time.perf_counter() - t0
    info = assimilate_to_run(
        prior,
        obs,
        out,
        time=time,
        truth=truth.drop_vars("time", errors="ignore"),
        force=True,
        extra={"demo": {"network": DEMO_NETWORK, "sigma": DEMO_SIGMA, "data_s": round(t_data, 3)}},
        seed=seed,
        sampler=sampler,
        options=options,
        progress_bar=progress_bar,
    )
    info["demo_wall_s"] = _time.perf_counter() - t0
    if verbose:
        print(demo_report(info, out))
    return info


def demo_report(info: dict, out) -> str:
    """The text the demo prints."""
    t = info["timings_s"]
    lines = [
        f"bayesda demo: {info['model']} at {info['time']}, {info['n_obs']} station-like obs "
        f"(sigma {DEMO_SIGMA} K)",
        f"  sampler: {info['settings']['method']}, {info['settings']['num_chains']} chains x "
        f"{info['settings']['num_warmup']} warmup + {info['settings']['num_samples']} draws "
        f"(chains over {info['settings']['devices']} device(s)); errors: "
        f"{info['settings']['errors']}"
        + (
            " (pseudo-observations have exactly their stated errors)"
            if info["settings"]["errors"] == "stated"
            else ""
        ),
        f"  time: total {info['demo_wall_s']:.1f} s = data {info['demo']['data_s']:.1f} + "
        f"MAP {t['map']:.1f} + "
        f"warmup {t['warmup']:.1f} + sampling {t['sampling']:.1f} + fields {t['fields']:.1f} + "
        f"diagnostics {t['diagnose']:.1f} + plots {t['plots']:.1f} s "
        f"({'compiled sampler reused' if t.get('cache_hit') else 'first use in this process'})",
        f"  gradient evaluations: {info['grad_evals']}",
        f"  verdict: {info['verdict']} (bayesda diagnose {out})",
    ]
    v = info.get("verification")
    if v:
        lines.append("  verification against the held-out truth (K):")
        lines.append(
            f"    {'region':<11} {'RMSE':>6} {'CRPS':>6} {'spread':>6} {'cov90':>6} {'cov50':>6}"
        )
        for region, s in v.items():
            lines.append(
                f"    {region:<11} {s['rmse']:6.2f} {s['crps']:6.2f} {s['spread']:6.2f} "
                f"{s['coverage_90']:6.2f} {s['coverage_50']:6.2f}"
            )
    lines.append(
        f"  files: {Path(out)}/ (maps.png, posterior.nc, inference.nc, diagnostics.json, run.json)"
    )
    return "\n".join(lines)
