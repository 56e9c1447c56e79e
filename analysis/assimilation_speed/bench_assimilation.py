"""Benchmark NUTS assimilation on one held-out NCEP day with the shipped model.

Measures, for 4 chains x 500 warmup + 500 draws (by default):

* sampler quality: min bulk/tail ESS over every field pixel and over z, max R-hat,
  divergences, the verdict of :func:`bayesda.verify.verdict.diagnose`;
* speed: warmup (incl. compile) and sampling wall time, gradient evaluations per second,
  ESS per second, and the ratio of the sampling wall time to (leapfrog steps x the
  potential's value-and-grad time measured alone, divided by the number of chains running
  concurrently) -- near 1 means the sampler adds little beyond the decoder's gradients;
* the decoder's value-and-grad time alone and inside ``lax.fori_loop`` (the slow-path check
  of FINDINGS.md);
* for each ``--devices`` value, a separate process (XLA fixes the host device count at
  start-up): 2 devices -> 2 chains vectorised on each, 4 devices -> one chain on each;
* the demo's end-to-end time, cold (empty JAX compilation cache) and warm.

Usage::

    BAYESDA_DATA_DIR=../shared/data python -m analysis.assimilation_speed.bench_assimilation \\
        --model models/ncep-air --out analysis/assimilation_speed/results/bench_assimilation.md

``--random-decoder`` uses the NCEP VAE architecture with random weights (speed only) when
no trained model is available.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analysis.common.io import ROOT, command, results_dir
from analysis.common.settings import STATED


def _prior(args):
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np

    if not args.random_decoder:
        from bayesda.prior.checkpoint import load_model

        return load_model(args.model)
    from bayesda.data.climatology import Climatology
    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import split_dataset
    from bayesda.geo.grid import Grid
    from bayesda.prior.generative import GenerativePrior
    from bayesda.prior.representation import RepresentationError
    from bayesda.prior.vae import NCEP_AIR, Decoder

    ds = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))
    train, _ = split_dataset(ds)
    clim = Climatology.fit(train["tas"])
    dec = Decoder(NCEP_AIR)
    params = dec.init(jax.random.PRNGKey(0), jnp.zeros((NCEP_AIR.latent_dim,)))

    @jax.jit
    def decode(z):
        return 4.0 * dec.apply(params, z)

    grid = Grid.from_xarray(ds)
    rng = np.random.default_rng(0)
    rep = RepresentationError(
        (0.3 * rng.normal(size=(16, *grid.shape))).astype(np.float32),
        np.full(grid.shape, 0.2, np.float32),
    )
    prior = GenerativePrior(
        decode, NCEP_AIR.latent_dim, grid, rep, climatology=clim, name="random-vae"
    )
    return dataclasses.replace(prior)


def _grad_time(prior, obs_df, n_rep: int = 200) -> dict:
    """Median seconds of one value-and-grad of the potential, alone and inside fori_loop."""
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer.util import initialize_model

    from bayesda.inference.assimilate import prepare_obs
    from bayesda.inference.model import assimilation_model

    obs = prepare_obs(prior, obs_df, options=STATED)
    model = functools.partial(assimilation_model, prior.decode, prior.latent_dim, options=STATED)
    info = initialize_model(jax.random.PRNGKey(0), model, model_args=(obs.arrays,))
    # the potential as a function of z, any other latent site (the learned error scales) held
    # at its initial value
    p0 = info.param_info.z
    pot = lambda z: info.potential_fn({**p0, "z": z})  # noqa: E731
    vg = jax.jit(jax.value_and_grad(pot))
    z = jnp.zeros(prior.latent_dim)
    jax.block_until_ready(vg(z))
    ts = []
    for i in range(n_rep):
        zi = z + 1e-3 * i
        t0 = time.perf_counter()
        jax.block_until_ready(vg(zi))
        ts.append(time.perf_counter() - t0)

    @jax.jit
    def loop(z):
        def body(i, c):
            v, g = jax.value_and_grad(pot)(c)
            return c - 1e-4 * g

        return jax.lax.fori_loop(0, n_rep, body, z)

    jax.block_until_ready(loop(z))
    t0 = time.perf_counter()
    jax.block_until_ready(loop(z + 0.1))
    in_loop = (time.perf_counter() - t0) / n_rep
    dec_only = jax.jit(jax.grad(lambda z: jnp.sum(prior.decode(z) ** 2)))
    jax.block_until_ready(dec_only(z))
    t0 = time.perf_counter()
    for i in range(n_rep):
        jax.block_until_ready(dec_only(z + 1e-3 * i))
    return {
        "potential_grad_s": float(np.median(ts)),
        "potential_grad_in_loop_s": in_loop,
        "decoder_grad_s": (time.perf_counter() - t0) / n_rep,
    }


def run_one(args) -> dict:
    """One process: sampler quality and speed with this process's device count."""
    import jax
    import numpy as np

    from bayesda.data.datasets import load_dataset
    from bayesda.inference.assimilate import assimilate
    from bayesda.inference.fields import posterior_dataset
    from bayesda.obs.table import pseudo_obs
    from bayesda.settings import SamplerSettings
    from bayesda.verify.verdict import diagnose
    from bayesda.workflows.demo import DEMO_N_OBS, DEMO_NETWORK, DEMO_SIGMA, pick_time

    prior = _prior(args)
    data = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))
    t = pick_time(data["time"].values)
    truth = prior.climatology.to_anomaly(data["tas"].sel(time=t))
    obs = pseudo_obs(
        truth, args.n_obs or DEMO_N_OBS, network=DEMO_NETWORK, sigma=DEMO_SIGMA, seed=0
    )
    grad = _grad_time(prior, obs)
    res = {
        "devices": jax.local_device_count(),
        "model": prior.name,
        "time": str(t),
        "n_obs": len(obs),
        **grad,
    }
    for label, kw in (("nuts", {}),):
        sampler = SamplerSettings(
            num_chains=args.chains, num_warmup=args.warmup, num_samples=args.draws, **kw
        )
        t0 = time.perf_counter()
        a = assimilate(
            prior, obs, time=t, sampler=sampler, options=STATED, seed=0, progress_bar=False
        )
        wall = time.perf_counter() - t0
        ds = posterior_dataset(a, prior, time=t)
        v = diagnose(a.idata, field_samples=ds[["anomaly"]])
        # Chains that can really run at once: one per device, at most one per core.
        parallel = min(a.settings["devices"], os.cpu_count() or 1)
        steps = a.grad_evals["sampling"]
        res[label] = {
            "devices_used": a.settings["devices"],
            "timings_s": _rounded(a.timings),
            "assimilate_wall_s": round(wall, 3),
            "grad_evals": a.grad_evals,
            "grads_per_s_sampling": steps / a.timings["sampling"],
            "ess_bulk_field_per_s": v.min_ess_bulk_field / a.timings["sampling"],
            "ratio_sampling_to_grad_floor": a.timings["sampling"]
            / (steps * grad["potential_grad_s"] / parallel),
            "verdict": v.to_dict(),
        }
        # A second call reuses the compiled programs: its warmup time is free of compilation.
        t0 = time.perf_counter()
        a2 = assimilate(
            prior, obs, time=t, sampler=sampler, options=STATED, seed=1, progress_bar=False
        )
        res[label]["second_call_timings_s"] = _rounded(a2.timings)
        res[label]["second_call_grad_evals"] = a2.grad_evals
        res[label]["ratio_second_call"] = a2.timings["sampling"] / (
            a2.grad_evals["sampling"] * grad["potential_grad_s"] / parallel
        )
        res[label]["mean_steps_per_draw"] = float(np.mean(a.idata.sample_stats["n_steps"].values))
    return res


def _subprocess(args, devices: int, extra_env: dict | None = None, demo: bool = False) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env.update(extra_env or {})
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [
        sys.executable,
        "-m",
        __spec__.name,
        "--worker",
        "--json",
        out,
        "--chains",
        str(args.chains),
        "--warmup",
        str(args.warmup),
        "--draws",
        str(args.draws),
        "--model",
        args.model,
    ]
    if args.random_decoder:
        cmd.append("--random-decoder")
    if demo:
        cmd.append("--demo-worker")
    if args.n_obs:
        cmd += ["--n-obs", str(args.n_obs)]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    res = json.loads(Path(out).read_text())
    os.unlink(out)
    return res


def run_demo_worker(args) -> dict:
    from bayesda.workflows.demo import run_demo

    t0 = time.perf_counter()
    prior = _prior(args) if args.random_decoder else None
    with tempfile.TemporaryDirectory() as d:
        info = run_demo(
            Path(d) / "demo", model=args.model, prior=prior, progress_bar=False, verbose=False
        )
    return {
        "process_wall_s": time.perf_counter() - t0 + 0.0,
        "demo_wall_s": info["demo_wall_s"],
        "timings_s": info["timings_s"],
        "verdict": info["verdict"],
        "verification": info["verification"],
        "settings": info["settings"],
    }


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


RUN_COLUMNS = [
    "devices",
    "devices used",
    "warmup+compile s",
    "sampling s",
    "2nd call warmup s",
    "2nd call sampling s",
    "grad evals (sampling)",
    "steps/draw",
    "grads/s",
    "min bulk ESS field",
    "min tail ESS field",
    "max R-hat (z / field)",
    "divergences",
    "ESS/s",
    "ratio to grad floor",
    "ratio (2nd call)",
    "verdict",
]
DEMO_COLUMNS = [
    "cache",
    "demo wall s",
    "MAP s",
    "warmup s",
    "sampling s",
    "fields s",
    "diagnose s",
    "plots s",
    "verdict",
    "RMSE unobs K",
    "CRPS unobs K",
    "cov90 unobs",
]


def _table(results: list[dict], demos: dict, args) -> str:
    r0 = results[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# NUTS assimilation benchmark",
        "",
        f"Command: `BAYESDA_DATA_DIR=... {command(__spec__.name, [])} --model {args.model}"
        f"{' --random-decoder' if args.random_decoder else ''}` ({args.chains} chains x "
        f"{args.warmup} warmup + {args.draws} draws; measured {when} on a "
        f"{os.cpu_count()}-core CPU).",
        "",
        f"Model `{r0['model']}`, held-out time {r0['time']}, {r0['n_obs']} station-like obs.",
        f"Potential value-and-grad alone: {1e3 * r0['potential_grad_s']:.2f} ms; inside "
        f"`lax.fori_loop`: {1e3 * r0['potential_grad_in_loop_s']:.2f} ms; decoder grad alone: "
        f"{1e3 * r0['decoder_grad_s']:.2f} ms.",
        "",
        _row(RUN_COLUMNS),
        _row(["---"] * len(RUN_COLUMNS)),
    ]
    for r in results:
        n = r["nuts"]
        v = n["verdict"]
        t, t2 = n["timings_s"], n["second_call_timings_s"]
        lines.append(
            _row(
                [
                    r["devices"],
                    n["devices_used"],
                    f"{t['warmup']:.1f}",
                    f"{t['sampling']:.1f}",
                    f"{t2['warmup']:.1f}",
                    f"{t2['sampling']:.1f}",
                    n["grad_evals"]["sampling"],
                    f"{n['mean_steps_per_draw']:.1f}",
                    f"{n['grads_per_s_sampling']:.0f}",
                    f"{v['min_ess_bulk_field']:.0f}",
                    f"{v['min_ess_tail_field']:.0f}",
                    f"{v['max_rhat_z']:.3f} / {v['max_rhat_field']:.3f}",
                    v["divergences"],
                    f"{n['ess_bulk_field_per_s']:.1f}",
                    f"{n['ratio_sampling_to_grad_floor']:.2f}",
                    f"{n['ratio_second_call']:.2f}",
                    v["status"],
                ]
            )
        )
    lines += [
        "",
        "Ratio to grad floor = sampling wall / (leapfrog steps x potential value-and-grad time "
        "alone / chains running concurrently, i.e. min(chains, devices, cores)); the first "
        "call's sampling time includes compiling the sampling phase, the second call's "
        "(same shapes, new seed) does not.",
        "",
    ]
    if demos:
        lines += [
            "## Demo (`bayesda demo`) end to end",
            "",
            _row(DEMO_COLUMNS),
            _row(["---"] * len(DEMO_COLUMNS)),
        ]
        for label, d in demos.items():
            t = d["timings_s"]
            u = (d["verification"] or {}).get("unobserved", {})
            lines.append(
                _row(
                    [
                        label,
                        f"{d['demo_wall_s']:.1f}",
                        f"{t['map']:.1f}",
                        f"{t['warmup']:.1f}",
                        f"{t['sampling']:.1f}",
                        f"{t['fields']:.1f}",
                        f"{t['diagnose']:.1f}",
                        f"{t['plots']:.1f}",
                        d["verdict"],
                        f"{u.get('rmse', float('nan')):.2f}",
                        f"{u.get('crps', float('nan')):.2f}",
                        f"{u.get('coverage_90', float('nan')):.2f}",
                    ]
                )
            )
        s = next(iter(demos.values()))["settings"]
        lines += [
            "",
            f"Demo sampler: {s['num_chains']} chains x {s['num_warmup']} warmup + "
            f"{s['num_samples']} draws, chains over {s['devices']} device(s). 'cold' = empty JAX "
            "compilation cache (first run on a machine); 'warm' = cache filled by the cold run "
            "(every later run).",
            "",
        ]
    return "\n".join(lines)


def _rounded(timings: dict) -> dict:
    """Timings to the millisecond (flags such as ``cache_hit`` as they are)."""
    return {k: (round(x, 3) if isinstance(x, float) else x) for k, x in timings.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/ncep-air")
    p.add_argument("--random-decoder", action="store_true")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--n-obs", type=int, default=None)
    p.add_argument("--devices", type=int, nargs="+", default=[2, 4])
    p.add_argument("--no-demo", action="store_true")
    p.add_argument(
        "--out", default=str(results_dir("assimilation_speed") / "bench_assimilation.md")
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--demo-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    p.add_argument("--retable", default=None, help="rewrite the table from a results JSON")
    args = p.parse_args(argv)
    if args.worker:
        import bayesda

        bayesda.set_host_device_count()  # before the first JAX computation
        bayesda.enable_compilation_cache()

        res = run_demo_worker(args) if args.demo_worker else run_one(args)
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
        return 0
    if args.retable:
        saved = json.loads(Path(args.retable).read_text())
        Path(args.out).write_text(_table(saved["runs"], saved["demo"], args) + "\n")
        print(Path(args.out).read_text())
        return 0
    results = []
    for d in args.devices:
        print(f"[bench] {args.chains} chains with {d} host devices ...", flush=True)
        results.append(_subprocess(args, d))
        print(json.dumps(results[-1], indent=1, default=str), flush=True)
    demos = {}
    if not args.no_demo:
        with tempfile.TemporaryDirectory() as cache:
            for label in ("cold", "warm"):
                print(f"[bench] demo, {label} compilation cache ...", flush=True)
                demos[label] = _subprocess(
                    args, max(os.cpu_count() or 1, 4), {"BAYESDA_JAX_CACHE": cache}, demo=True
                )
                print(json.dumps(demos[label], indent=1, default=str), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_table(results, demos, args) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"runs": results, "demo": demos}, indent=2, default=str) + "\n"
    )
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
