"""NUTS resonance on a whitened Gaussian, and what :func:`bayesda.inference.sampler.detune` does
about it.

Part 1 (seconds): numpyro's NUTS on a 100-dimensional standard normal with the exact
(identity) mass matrix at fixed step sizes around ``2 pi / 15 = 0.419``: mean leapfrog steps
per draw and the fraction of trees of 63 steps or more, for the step size as given and
after :func:`bayesda.inference.sampler.detune`.

Part 2 (``--shipped K``, minutes on a CPU): the shipped model on K NCEP times (50 station-like
observations, the reanalysis settings 4 x (100 + 500)), run twice through the same program,
without and with the detuning and the warmup tree-depth cap
(:data:`bayesda.inference.sampler.LAPLACE_WARMUP_TREE_DEPTH`): per-chain adapted step sizes, steps
per
draw, and the lockstep efficiency of the whole batch (mean steps / mean over iterations of the
largest tree in the batch: what an accelerator, whose chains advance together, gets).

    python -m analysis.resonance.resonance              # part 1 -> results/resonance.md
    python -m analysis.resonance.resonance --shipped 8  # and part 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np

from analysis.common.io import SHIPPED_MODEL, command, results_dir

STEP_SIZES = (0.30, 0.36, 0.40, 0.41, 0.419, 0.43, 0.44, 0.45, 0.50, 0.203, 0.21)


def toy(eps: float, dim: int = 100, n: int = 400, seed: int = 0) -> dict:
    """NUTS on N(0, I_dim) with the identity mass at a fixed step size."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer.hmc import hmc

    init, sample = hmc(potential_fn=lambda x: 0.5 * jnp.sum(x**2), algo="NUTS")
    x0 = jnp.asarray(np.random.default_rng(seed).normal(size=dim), jnp.float32)
    state = init(
        x0,
        num_warmup=0,
        step_size=eps,
        adapt_step_size=False,
        adapt_mass_matrix=False,
        inverse_mass_matrix=jnp.ones(dim),
        max_tree_depth=10,
        rng_key=jax.random.PRNGKey(seed),
    )

    def body(s, _):
        s = sample(s)
        return s, (s.num_steps, s.z[0])

    _, (steps, x) = jax.lax.scan(body, state, None, length=n)
    steps = np.asarray(steps)
    return {
        "mean_steps": round(float(steps.mean()), 1),
        "p_ge_63": round(float((steps >= 63).mean()), 3),
        "var_x0": round(float(np.var(np.asarray(x))), 2),
    }


def part1() -> list[dict]:
    from bayesda.inference.sampler import detune

    rows = []
    for eps in STEP_SIZES:
        new = float(detune(np.float32(eps)))
        row = {"step_size": eps, "as_given": toy(eps), "detuned_to": round(new, 4)}
        row["detuned"] = row["as_given"] if new == np.float32(eps) else toy(new)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def part2(k: int) -> list[dict]:
    import bayesda.inference.sampler as sampler
    from analysis.common.ncep import held_out_obs
    from bayesda.inference.assimilate import sample_batch
    from bayesda.prior.checkpoint import load_model
    from bayesda.workflows.reanalysis import ReanalysisSettings, time_seed

    prior = load_model(SHIPPED_MODEL)
    obs, times = held_out_obs(k, 50)
    s = ReanalysisSettings()
    out = []
    real, caps = sampler.detune, (sampler.WARMUP_TREE_DEPTH, sampler.LAPLACE_WARMUP_TREE_DEPTH)
    for mode in ("off", "on"):
        # off: the adapted step size as it is, warmup trees up to the run's depth (10)
        sampler.detune = real if mode == "on" else (lambda eps, band=None: eps)
        off = (s.max_tree_depth, s.max_tree_depth)
        sampler.WARMUP_TREE_DEPTH, sampler.LAPLACE_WARMUP_TREE_DEPTH = caps if mode == "on" else off
        t0 = time.perf_counter()
        b = sample_batch(
            prior,
            obs,
            times,
            [time_seed(1, t) for t in times],
            s.sampler,
            s.options,
            progress_bar=False,
            device_covariance=True,
        )
        steps = np.concatenate([st["n_steps"] for st in b.sample_stats])  # [chains, draws]
        eps = np.concatenate([st["step_size"][:, 0] for st in b.sample_stats])
        row = {
            "detune": mode,
            "times": k,
            "chains": int(steps.shape[0]),
            "seconds": round(time.perf_counter() - t0, 1),
            "sampling_grads": int(steps.sum()),
            "mean_steps": round(float(steps.mean()), 2),
            "p_ge_63": round(float((steps >= 63).mean()), 4),
            "chains_mean_steps_gt_20": int((steps.mean(1) > 20).sum()),
            "lockstep": round(float(steps.mean() / steps.max(0).mean()), 3),
            "warmup_grads": int(sum(g["warmup"] for g in b.grad_evals)),
            "lockstep_warmup": round(float(b.timings["lockstep_warmup"]), 3),
            "step_sizes": [round(float(e), 3) for e in eps],
            "chain_mean_steps": [round(float(m), 1) for m in steps.mean(1)],
        }
        out.append(row)
        print(json.dumps(row), flush=True)
    sampler.detune = real
    sampler.WARMUP_TREE_DEPTH, sampler.LAPLACE_WARMUP_TREE_DEPTH = caps
    return out


def write(rows1, rows2, command: str, res: Path) -> None:
    """``resonance.json`` and ``resonance.md`` in the folder ``res``."""
    res.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    (res / "resonance.json").write_text(
        json.dumps({"command": command, "date": stamp, "toy": rows1, "shipped": rows2}, indent=2)
    )
    lines = [
        "# NUTS resonance with the Laplace mass matrix, and the detuned step size",
        "",
        f"Command: `{command}` ({stamp}).",
        "",
        "## 100-dimensional standard normal, identity mass, fixed step size (400 draws)",
        "",
        "| step size | mean steps | trees >= 63 steps | detuned to | mean steps | trees >= 63 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows1:
        a, d = r["as_given"], r["detuned"]
        lines.append(
            f"| {r['step_size']} | {a['mean_steps']} | {a['p_ge_63']} | {r['detuned_to']} | "
            f"{d['mean_steps']} | {d['p_ge_63']} |"
        )
    if rows2:
        lines += [
            "",
            "## Shipped model, one batch of times, reanalysis settings 4 x (100 + 500)",
            "",
            "| detune + warmup cap | times | chains | warmup steps | warmup lockstep | "
            "sampling steps | mean steps per draw | draws with >= 63 steps | "
            "chains averaging > 20 steps | sampling lockstep | s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows2:
            lines.append(
                f"| {r['detune']} | {r['times']} | {r['chains']} | {r['warmup_grads']} | "
                f"{r['lockstep_warmup']} | {r['sampling_grads']} | "
                f"{r['mean_steps']} | {r['p_ge_63']} | {r['chains_mean_steps_gt_20']} | "
                f"{r['lockstep']} | {r['seconds']} |"
            )
    (res / "resonance.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shipped", type=int, default=0, help="times of the shipped-model part")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--out-dir", type=Path, default=results_dir("resonance"))
    args = p.parse_args(argv)
    import bayesda

    bayesda.set_host_device_count()
    rows1 = part1()
    rows2 = part2(args.shipped) if args.shipped else []
    if not args.no_write:
        write(rows1, rows2, command(__spec__.name, argv or None), args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
