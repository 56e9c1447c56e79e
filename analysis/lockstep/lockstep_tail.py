"""How much of a large batch's NUTS work is spent waiting: adapted step sizes and tree sizes
of many chains, and the lockstep efficiency they imply for K = 8 ... 1024 times per program.

On an accelerator all chains of a batch advance together, so each NUTS iteration costs the
largest tree in the batch. With the Laplace mass matrix the posterior is close to a whitened
Gaussian and a tree's length follows from its step size alone: above ``pi / 7`` (0.449) a
tree U-turns after 7 leapfrog steps, below it after 15
(``analysis/resonance/results/resonance.md``). Chains adapt their step sizes separately, so
one chain whose warmup ended below the edge makes every iteration of the whole batch cost 15
steps instead of 7. At K = 16 that is rare; at K = 1024 (4096 chains) it is decided by the
tail of the step sizes' distribution.

Tree sizes do not depend on the device, so this is measured on the CPU: K times of the
shipped model (reanalysis defaults, 50 station-like observations) are warmed up and sampled
for a short while; each chain's step size and tree sizes are kept. The lockstep efficiency
(mean steps over the mean of each iteration's largest tree) of batches of 4K chains is then
estimated by drawing chains from that pool (with replacement; iterations drawn from each
chain's own tree sizes) for K = 8 ... 1024.

    python -m analysis.lockstep.lockstep_tail --k 256 --draws 50   # about 16 min on 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np

from analysis.common.io import SHIPPED_MODEL, command, results_dir

BATCH_TIMES = (8, 64, 256, 1024)
"""Times per program whose lockstep efficiency is projected."""

EDGE = 0.404
"""Step sizes below this take 15-step trees: :func:`bayesda.inference.sampler.detune` raises those
in
``[0.404, 0.446]`` (the 15-step resonance band) to 0.4461, where trees take 7."""


def tail(log_eps: np.ndarray, chains: int) -> tuple[float, float]:
    """Normal fit to log step sizes: P(one chain < EDGE), P(any of ``chains`` chains < EDGE)."""
    from scipy.stats import norm

    p = float(norm.cdf((np.log(EDGE) - log_eps.mean()) / log_eps.std(ddof=1)))
    return p, float(1 - (1 - p) ** chains)


def measure(k: int, draws: int, seed: int) -> dict:
    """Warm up and sample ``k`` times of the shipped model; per-chain step sizes and trees."""
    from analysis.common.ncep import held_out_obs
    from bayesda.inference.assimilate import sample_batch
    from bayesda.prior.checkpoint import load_model
    from bayesda.workflows.reanalysis import ReanalysisSettings, time_seed

    prior = load_model(SHIPPED_MODEL)
    obs, times = held_out_obs(k, 50)
    s = ReanalysisSettings()
    sampler = s.sampler.replace(num_samples=draws)
    t0 = time.perf_counter()
    b = sample_batch(
        prior,
        obs,
        times,
        [time_seed(seed, t) for t in times],
        sampler,
        s.options,
        progress_bar=True,
        device_covariance=True,
    )
    steps = np.stack([st["n_steps"] for st in b.sample_stats])  # [K, C, S]
    eps = np.stack([st["step_size"][:, 0] for st in b.sample_stats])  # [K, C]
    return {
        "k": k,
        "chains_per_time": int(steps.shape[1]),
        "warmup": sampler.num_warmup,
        "draws": draws,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "warmup_lockstep": round(float(b.timings["lockstep_warmup"]), 4),
        "step_size": eps.round(4).tolist(),
        "tree_counts": tree_counts(steps.reshape(-1, steps.shape[-1])),
    }


def tree_counts(steps: np.ndarray) -> list[dict]:
    """Per chain, how many of its draws took each tree size (``{steps: count}``)."""
    return [
        {int(v): int(c) for v, c in zip(*np.unique(r, return_counts=True), strict=True)}
        for r in steps
    ]


def steps_of(counts: list[dict]) -> np.ndarray:
    """``[chains, draws]`` tree sizes back from :func:`tree_counts` (in sorted order)."""
    return np.array([np.repeat([int(k) for k in c], list(c.values())) for c in counts])


def project(steps: np.ndarray, chains: int, iterations: int, reps: int, rng) -> tuple:
    """Lockstep efficiency of ``chains`` chains drawn from the pool ``steps [N, S]``.

    Returns (mean, 5th percentile, 95th percentile) over ``reps`` batches.
    """
    n, s = steps.shape
    out = np.empty(reps)
    for r in range(reps):
        pick = rng.integers(0, n, chains)
        draws = steps[pick[:, None], rng.integers(0, s, (chains, iterations))]
        out[r] = draws.mean() / draws.max(axis=0).mean()
    return float(out.mean()), float(np.percentile(out, 5)), float(np.percentile(out, 95))


def summarise(row: dict, reps: int = 200, iterations: int = 100) -> dict:
    eps = np.asarray(row["step_size"]).ravel()
    steps = steps_of(row["tree_counts"])  # [chains, draws]
    rng = np.random.default_rng(0)
    lo, hi = np.percentile(eps, [0.1, 99.9])
    pooled = np.exp(np.log(np.asarray(row["step_size"])).mean(axis=1))
    summary = {
        "chains": int(eps.size),
        "step_size_mean": round(float(eps.mean()), 4),
        "step_size_sd": round(float(eps.std()), 4),
        "step_size_min_max": [round(float(eps.min()), 4), round(float(eps.max()), 4)],
        "step_size_0.1_99.9_percent": [round(float(lo), 4), round(float(hi), 4)],
        "sd_between_times_of_pooled": round(float(pooled.std()), 4),
        "chains_below_pi_over_7": int((eps < np.pi / 7).sum()),
        "chains_mean_steps_over_7": int((steps.mean(1) > 7.0).sum()),
        "tree_sizes": {
            str(v): int(c) for v, c in zip(*np.unique(steps, return_counts=True), strict=True)
        },
        "lockstep_measured": round(float(steps.mean() / steps.max(0).mean()), 4),
        "chains_below_edge": int((eps < EDGE).sum()),
        "lockstep_projected": {},
        "p_batch_has_slow_chain": {},
        "p_batch_has_slow_time_if_pooled": {},
    }
    for k in BATCH_TIMES:
        c = k * row["chains_per_time"]
        m, p5, p95 = project(steps, c, iterations, reps, rng)
        summary["lockstep_projected"][str(k)] = [round(m, 4), round(p5, 4), round(p95, 4)]
        summary["p_batch_has_slow_chain"][str(k)] = round(tail(np.log(eps), c)[1], 4)
        summary["p_batch_has_slow_time_if_pooled"][str(k)] = round(tail(np.log(pooled), k)[1], 4)
    summary["p_slow_chain"] = tail(np.log(eps), 1)[0]
    summary["p_slow_time_if_pooled"] = tail(np.log(pooled), 1)[0]
    return summary


def write(row: dict, summary: dict, command: str, out: Path) -> None:
    out.with_suffix(".json").write_text(
        json.dumps({"command": command, **row, "summary": summary}, indent=None) + "\n"
    )
    proj = summary["lockstep_projected"]
    lines = [
        "# Lockstep efficiency of large batches: the tail of the adapted step sizes",
        "",
        f"Command: `{command}` ({row['date']}, {row['seconds']} s).",
        "",
        f"{row['k']} held-out NCEP times x {row['chains_per_time']} chains, shipped model, "
        f"reanalysis defaults ({row['warmup']} warmup iterations), then {row['draws']} "
        "draws per chain to see each chain's trees.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| chains | {summary['chains']} |",
        f"| step size mean (SD) | {summary['step_size_mean']} ({summary['step_size_sd']}) |",
        f"| step size min / max | {summary['step_size_min_max'][0]} / "
        f"{summary['step_size_min_max'][1]} |",
        f"| SD between times of the per-time geometric mean | "
        f"{summary['sd_between_times_of_pooled']} |",
        f"| chains with step size below pi/7 = 0.449 | {summary['chains_below_pi_over_7']} |",
        f"| chains with step size below {EDGE} (15-step trees) | {summary['chains_below_edge']} |",
        f"| P(one chain below {EDGE}), normal fit to log step sizes | "
        f"{summary['p_slow_chain']:.2g} |",
        f"| same for a time's geometric-mean step size (chains pooled) | "
        f"{summary['p_slow_time_if_pooled']:.2g} |",
        f"| chains averaging more than 7 steps per draw | {summary['chains_mean_steps_over_7']} |",
        f"| tree sizes (steps: count) | {summary['tree_sizes']} |",
        f"| warmup lockstep, this batch | {row['warmup_lockstep']} |",
        f"| sampling lockstep, this batch | {summary['lockstep_measured']} |",
        "",
        "Projected sampling lockstep (chains drawn from this pool; mean, 5-95% over 200 "
        "batches of 100 iterations):",
        "",
        "| times per program | chains | lockstep | 5% | 95% | P(a chain below edge), "
        "normal fit | same, step sizes pooled per time |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, (m, p5, p95) in proj.items():
        lines.append(
            f"| {k} | {int(k) * row['chains_per_time']} | {m} | {p5} | {p95} | "
            f"{summary['p_batch_has_slow_chain'][k]} | "
            f"{summary['p_batch_has_slow_time_if_pooled'][k]} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=256, help="times in the measured batch")
    p.add_argument("--draws", type=int, default=50, help="draws per chain after warmup")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(results_dir("lockstep") / "lockstep_tail"))
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    import bayesda

    bayesda.set_host_device_count()  # before the first JAX computation
    row = measure(a.k, a.draws, a.seed)
    row["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    summary = summarise(row)
    print(json.dumps(summary, indent=1))
    if not a.no_write:
        write(row, summary, command(__spec__.name, argv), Path(a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
