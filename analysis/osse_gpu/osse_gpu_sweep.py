"""A time-budgeted sweep of VAE priors on the simulated weather: reconstruction vs PCA-d.

Reads the split written by :mod:`analysis.osse_gpu.osse_export` (one ``.npz``, no zarr) and
trains, with the project's own code (:func:`bayesda.prior.train.fit`,
:class:`bayesda.prior.vae.VAE`, :func:`bayesda.prior.train.normalisation`, the residuals
``decode(encode_mean(x)) - x`` as :mod:`bayesda.prior.recipe` computes them), the runs of
:data:`RUNS` in that order (most informative first): the base recipe of
:mod:`analysis.osse.osse_train` at latent d in {32, 64, 128, 256}, and ablations that could let a
VAE beat PCA (no PPCA start, no linear path, deeper decoder with residual blocks, beta,
free bits, symmetry augmentation, longer training, learning rate).

For every run, one JSON line (written and fsynced as soon as the run ends, so a timeout
still leaves every finished run) with: held-out reconstruction RMSE in K
(``decode(encode_mean(x))``), the same after refining ``z`` by Adam (the decoder's own
optimum, which separates the decoder from the encoder), PCA-d on the same split, plain and
cos-latitude weighted, PCA-d with the roll/flip-symmetrised covariance (the fair
baseline for the augmented run), best / run epochs, why training stopped, training seconds, and the
learning curves (per-epoch training loss and validation loss / reconstruction / KL).

The whole sweep keeps to ``--budget-s`` of wall time, counted from the start of the script:
each run's training gets what is left minus a reserve for its evaluation
(:func:`bayesda.prior.train.fit` ``max_seconds``: it stops after the epoch that crosses it), and a
run that cannot start with at least ``--min-run-s`` left is written as ``skipped``. The
overshoot is at most one compilation plus one epoch plus one evaluation.

Device-agnostic JAX: the same command runs on CPU (``--tiny``: a few hundred snapshots,
small latent dims, 2 epochs) and on a GPU.

Usage::

    python -m analysis.osse_gpu.osse_gpu_sweep .gpu/osse_tas.npz --budget-s 200
    python -m analysis.osse_gpu.osse_gpu_sweep DATA.npz --tiny --budget-s 60   # CPU smoke run
    python -m analysis.osse_gpu.osse_gpu_sweep DATA.npz --list                 # the plan

Writes ``$OUT/osse_gpu_sweep.jsonl`` when ``$OUT`` is set, else
``analysis/osse_gpu/results/osse_gpu_sweep.jsonl`` (``..._tiny.jsonl`` with ``--tiny``); ``--out``
overrides the folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any, NamedTuple

import numpy as np

from analysis.common.export import load_export
from analysis.common.io import command, results_dir

RESULTS = results_dir("osse_gpu")


class Run(NamedTuple):
    """One configuration: changes from the base recipe (``VAEConfig`` / ``TrainConfig``)."""

    name: str
    latent_dim: int
    why: str
    vae: dict[str, Any] = {}
    train: dict[str, Any] = {}


# The base recipe is that of analysis/osse/osse_train.py (and of the CPU run at d=32 in
# osse_recon.md): channels (16, 16), linear path, PPCA start, beta 0.1, lr 3e-4, 30 epochs,
# patience 8, batch 64.
_SCRATCH = {"pca_init": False, "learning_rate": 1e-3, "epochs": 60, "patience": 15}
RUNS: tuple[Run, ...] = (
    Run("base-d64", 64, "the recipe at a latent size never run on CPU"),
    Run(
        "aug-d256",
        256,
        "longitude-roll and hemisphere-flip augmentation (exact symmetries of Held-Suarez) "
        "from the symmetrised PPCA start: symmetry, not nonlinearity; compare with PCA-sym",
        train={"roll_lon": True, "flip_lat": True, "epochs": 60, "patience": 15},
    ),
    Run(
        "scratch-d64",
        64,
        "no PPCA start: can a VAE trained from random weights find more than PCA?",
        train=_SCRATCH,
    ),
    Run(
        "deepres-d64",
        64,
        "more decoder capacity on top of the PPCA start: 3 stages of 32 channels, 1 residual "
        "block each, lr 1e-3, 60 epochs",
        vae={"channels": (32, 32, 32), "res_blocks": 1},
        train={"learning_rate": 1e-3, "epochs": 60, "patience": 15},
    ),
    Run("base-d128", 128, "the recipe at d=128"),
    Run(
        "aug-d64",
        64,
        "roll/flip augmentation from the symmetrised PPCA start at d=64 (compare with PCA-sym)",
        train={"roll_lon": True, "flip_lat": True, "epochs": 60, "patience": 15},
    ),
    Run(
        "convonly-d64",
        64,
        "no linear path (pure conv decoder and encoder), from scratch",
        vae={"linear_path": False},
        train=_SCRATCH,
    ),
    Run("base-d256", 256, "the recipe at d=256"),
    Run("base-d32", 32, "the recipe at d=32 (the CPU run tied PCA, best epoch 0)"),
    Run("beta001-d64", 64, "beta 0.01: reconstruction over prior fidelity", train={"beta": 0.01}),
    Run(
        "long-d64",
        64,
        "longer training: 200 epochs, patience 40",
        train={"epochs": 200, "patience": 40},
    ),
    Run(
        "freebits-d64",
        64,
        "the full ELBO (beta 1) with 0.5 nats of free bits per latent dimension",
        train={"beta": 1.0, "free_bits": 0.5},
    ),
    Run("lr1e3-d64", 64, "learning rate 1e-3", train={"learning_rate": 1e-3}),
)

TINY = {"max_snapshots": 480, "latent_scale": 16, "epochs": 2, "patience": 2, "refine_steps": 3}
"""``--tiny``: first 480 snapshots (120 days), latent dims / 16, 2 epochs, 3 refine steps."""


def pca_rmse(fit: np.ndarray, test: np.ndarray, dims, weights: np.ndarray) -> dict:
    """RMSE of PCA-d truncation of ``test`` with EOFs of ``fit`` (both ``[n, lat, lon]``).

    Returns ``{d: (rmse, rmse_area_weighted, rmse_symmetrised)}``, centred on the fit mean;
    the last uses the EOFs of the fit fields' covariance averaged over longitude rolls and
    the hemisphere flip (:func:`bayesda.data.fieldstats.symmetrise`; exact symmetries of
    Held-Suarez: the fair linear baseline for an augmented VAE).
    """
    from bayesda.data.fieldstats import symmetrise

    n, nlat, nlon = fit.shape
    a = fit.reshape(n, -1).astype(np.float64)
    mu = a.mean(0)
    _, _, vt = np.linalg.svd(a - mu, full_matrices=False)
    _, cov = symmetrise(mu, (a - mu).T @ (a - mu) / n, nlat, nlon, True, True)
    _, vecs = np.linalg.eigh(cov)
    vs = vecs[:, ::-1].T  # rows = EOFs, largest variance first
    b = test.reshape(len(test), -1).astype(np.float64) - mu
    w = weights.ravel()
    out = {}
    for d in sorted(set(dims)):
        k = min(d, vt.shape[0])
        err = b - (b @ vt[:k].T) @ vt[:k]
        err_s = b - (b @ vs[:d].T) @ vs[:d]
        out[d] = (
            float(np.sqrt(np.mean(err**2))),
            float(np.sqrt(np.mean(err**2 * w))),
            float(np.sqrt(np.mean(err_s**2))),
        )
    return out


def refine_z(params, config, x: np.ndarray, z0: np.ndarray, steps: int) -> np.ndarray:
    """Decoder-optimal latents: minimise ``||decode(z) - x||^2`` over ``z`` by Adam from ``z0``.

    Keeps, per field, the best ``z`` seen (``z0`` included), so the refined error is never
    above the encoder's.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from bayesda.prior.vae import VAE

    model = VAE(config)
    opt = optax.adam(0.05)

    def losses(z, xb):  # [n] squared error of each field
        rec = model.apply({"params": params}, z, method="decode")
        return jnp.sum(jnp.square(rec - xb), axis=(-2, -1))

    def total(z, xb):
        per_field = losses(z, xb)
        return jnp.sum(per_field), per_field

    @jax.jit
    def run(z, xb):
        def body(_, carry):
            z, state, best_z, best = carry
            (_, cur), grad = jax.value_and_grad(total, has_aux=True)(z, xb)
            better = cur < best
            best_z = jnp.where(better[:, None], z, best_z)
            best = jnp.minimum(cur, best)
            upd, state = opt.update(grad, state, z)
            return optax.apply_updates(z, upd), state, best_z, best

        init = (z, opt.init(z), z, jnp.full(z.shape[:1], jnp.inf))
        z, _, best_z, best = jax.lax.fori_loop(0, steps, body, init)
        return jnp.where((losses(z, xb) < best)[:, None], z, best_z)

    return np.asarray(run(jnp.asarray(z0), jnp.asarray(x)))


def recon_residuals(params, config, x_norm: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``decode(encode_mean(x)) - x`` in K for normalised fields ``[n, nlat, nlon]``
    (in batches of 256, as :mod:`bayesda.prior.recipe` computes the residuals)."""
    import jax
    import jax.numpy as jnp

    from bayesda.prior.vae import VAE

    model = VAE(config)

    @jax.jit
    def recon(x):
        mean, _ = model.apply({"params": params}, x, method="encode")
        return model.apply({"params": params}, mean, method="decode")

    out = np.concatenate(
        [np.asarray(recon(jnp.asarray(x_norm[i : i + 256]))) for i in range(0, len(x_norm), 256)]
    )
    return (out - x_norm) * sd


def evaluate(params, config, x_test_norm: np.ndarray, sd: np.ndarray, w, refine_steps: int):
    """Held-out reconstruction errors in K: encoder mean, and refined ``z`` if asked."""
    import jax
    import jax.numpy as jnp

    from bayesda.prior.vae import VAE

    res = recon_residuals(params, config, x_test_norm, sd)
    out = {
        "vae_rmse": float(np.sqrt(np.mean(res**2))),
        "vae_rmse_area_weighted": float(np.sqrt(np.mean(res**2 * w))),
    }
    if refine_steps:
        model = VAE(config)
        enc = jax.jit(lambda x: model.apply({"params": params}, x, method="encode")[0])
        z0 = np.asarray(enc(jnp.asarray(x_test_norm)))
        z = refine_z(params, config, x_test_norm, z0, refine_steps)
        dec = jax.jit(lambda z: model.apply({"params": params}, z, method="decode"))
        res = (np.asarray(dec(jnp.asarray(z))) - x_test_norm) * sd
        out["vae_refined_rmse"] = float(np.sqrt(np.mean(res**2)))
        out["refine_steps"] = refine_steps
    return out


def _environment() -> dict:
    import jax

    dev = jax.devices()[0]
    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing version is recorded, not fatal
            versions[name] = "?"
    return {
        "platform": dev.platform,
        "device_kind": getattr(dev, "device_kind", ""),
        "n_devices": jax.device_count(),
        "python": platform.python_version(),
        "versions": versions,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def _append(path: pathlib.Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _round(history: dict) -> dict:
    return {k: [round(float(v), 5) for v in vals] for k, vals in history.items()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="the .npz written by analysis.osse_gpu.osse_export")
    p.add_argument("--budget-s", type=float, default=200.0, help="total wall budget, seconds")
    p.add_argument(
        "--min-run-s", type=float, default=15.0, help="skip a run with less than this left"
    )
    p.add_argument("--runs", default=None, help="comma-separated run names (default: all)")
    p.add_argument("--max-snapshots", type=int, default=None)
    p.add_argument("--refine-steps", type=int, default=200)
    p.add_argument("--tiny", action="store_true", help="CPU smoke size (see TINY)")
    p.add_argument(
        "--out", default=None, help="output folder (default: $OUT or analysis/osse_gpu/results)"
    )
    p.add_argument("--list", action="store_true", help="print the runs and exit")
    return p.parse_args(argv)


def plan(args) -> list[Run]:
    """The runs to do, in order, scaled down under ``--tiny``."""
    runs = list(RUNS)
    if args.runs:
        names = [n.strip() for n in args.runs.split(",") if n.strip()]
        known = {r.name: r for r in RUNS}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SystemExit(f"unknown run(s) {unknown}; known: {sorted(known)}")
        runs = [known[n] for n in names]
    if args.tiny:
        runs = [
            r._replace(
                latent_dim=max(2, r.latent_dim // TINY["latent_scale"]),
                train={
                    **r.train,
                    "epochs": TINY["epochs"],
                    "patience": TINY["patience"],
                    "warmup_epochs": 1,
                },
            )
            for r in runs
        ]
    return runs


class Split(NamedTuple):
    """The export's fit / validation / test anomalies, normalised as training sees them."""

    x_fit: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    sd: np.ndarray
    w: np.ndarray  # [lat, lon] cos-latitude weights, mean 1
    nlat: int
    nlon: int


def load_split(args, runs: list[Run]):
    """The export (first ``--max-snapshots``), its normalised split, PCA-d of every run's ``d``
    and the first JSON line (``kind: env``: data, sizes, budget, device)."""
    from bayesda.prior.train import normalisation

    max_snap = args.max_snapshots or (TINY["max_snapshots"] if args.tiny else None)
    data = load_export(args.data, max_snap)
    a = data.anomaly
    a_fit, a_val, a_test = a[data.fit], a[data.val], a[data.test]
    mean, sd = normalisation(a_fit)
    x_fit, x_val, x_test = ((v - mean) / sd for v in (a_fit, a_val, a_test))
    nlat, nlon = a.shape[1:]
    w = np.cos(np.radians(data.lat))
    w = np.repeat((w / w.mean())[:, None], nlon, axis=1)
    pca = pca_rmse(a_fit, a_test, [r.latent_dim for r in runs], w)
    env = {
        "kind": "env",
        "data": str(args.data),
        "data_meta": data.meta,
        "n_fit": len(a_fit),
        "n_val": len(a_val),
        "n_test": len(a_test),
        "test_anomaly_sd": float(a_test.std()),
        "grid": [int(nlat), int(nlon)],
        "budget_s": args.budget_s,
    }
    return Split(x_fit, x_val, x_test, sd, w, int(nlat), int(nlon)), pca, env


def train_and_score(run: Run, split: Split, max_seconds: float, refine_steps: int):
    """Train ``run`` for at most ``max_seconds`` and score it on the test fields; returns
    ``(fit result, VAE config, train config, scores, train s, eval s)``."""
    from bayesda.prior.train import TrainConfig, fit
    from bayesda.prior.vae import VAEConfig

    config = VAEConfig(
        nlat=split.nlat, nlon=split.nlon, latent_dim=run.latent_dim, periodic=True, **run.vae
    )
    tc = TrainConfig(**run.train)
    t0 = time.perf_counter()
    result = fit(split.x_fit, split.x_val, config, tc, progress=False, max_seconds=max_seconds)
    train_s = time.perf_counter() - t0
    scores = evaluate(result.params, config, split.x_test, split.sd, split.w, refine_steps)
    eval_s = time.perf_counter() - t0 - train_s
    return result, config, tc, scores, train_s, eval_s


def record_of(base: dict, trained, pca_row, cmd: str, elapsed_s: float) -> dict:
    """The JSON line of one finished run."""
    import jax

    result, config, tc, scores, train_s, eval_s = trained
    p_rmse, p_rmse_w, p_rmse_sym = pca_row
    return {
        **base,
        "vae_rmse": round(scores["vae_rmse"], 4),
        "pca_rmse": round(p_rmse, 4),
        "ratio": round(scores["vae_rmse"] / p_rmse, 4),
        "vae_refined_rmse": round(scores["vae_refined_rmse"], 4)
        if "vae_refined_rmse" in scores
        else None,
        "refine_steps": scores.get("refine_steps", 0),
        "vae_rmse_area_weighted": round(scores["vae_rmse_area_weighted"], 4),
        "pca_rmse_area_weighted": round(p_rmse_w, 4),
        "pca_symmetrised_rmse": round(p_rmse_sym, 4),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stop_reason": result.stop_reason,
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "elapsed_s": round(elapsed_s, 1),
        "n_params": int(sum(np.size(v) for v in jax.tree_util.tree_leaves(result.params))),
        "vae_config": config.to_dict(),
        "train_config": dataclasses.asdict(tc),
        "history": _round(result.history),
        "command": cmd,
    }


def main(argv=None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)
    runs = plan(args)
    if args.list:
        for r in runs:
            print(f"{r.name:14s} d={r.latent_dim:<4d} vae={r.vae} train={r.train}  # {r.why}")
        return 0
    out_dir = pathlib.Path(args.out or os.environ.get("OUT") or RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("osse_gpu_sweep_tiny.jsonl" if args.tiny else "osse_gpu_sweep.jsonl")
    path.write_text("")
    split, pca, data_env = load_split(args, runs)
    refine_steps = TINY["refine_steps"] if args.tiny else args.refine_steps
    cmd = command(__spec__.name, argv)
    env = _environment()
    first = {"kind": "env", "command": cmd, **{k: v for k, v in data_env.items() if k != "kind"}}
    _append(path, {**first, "setup_s": round(time.perf_counter() - t_start, 1), **env})
    print(
        f"{env['platform']} {env['device_kind']}: fit {data_env['n_fit']} val "
        f"{data_env['n_val']} test {data_env['n_test']}; setup "
        f"{time.perf_counter() - t_start:.1f} s",
        flush=True,
    )
    eval_reserve = 10.0 if not args.tiny else 2.0
    for run in runs:
        left = args.budget_s - (time.perf_counter() - t_start)
        base = {"kind": "run", "name": run.name, "latent_dim": run.latent_dim, "why": run.why}
        if left < args.min_run_s:
            _append(path, {**base, "kind": "skipped", "reason": f"budget: {left:.1f} s left"})
            print(f"{run.name}: skipped ({left:.1f} s left)", flush=True)
            continue
        trained = train_and_score(run, split, left - eval_reserve, refine_steps)
        result, train_s, eval_s = trained[0], trained[4], trained[5]
        eval_reserve = max(eval_reserve, 1.5 * eval_s)
        record = record_of(base, trained, pca[run.latent_dim], cmd, time.perf_counter() - t_start)
        _append(path, record)
        print(
            f"{run.name}: VAE {record['vae_rmse']:.4f} refined {record['vae_refined_rmse']} "
            f"PCA {record['pca_rmse']:.4f} ratio {record['ratio']:.3f} best/run "
            f"{result.best_epoch}/{result.epochs_run} ({result.stop_reason}) train "
            f"{train_s:.1f} s eval {eval_s:.1f} s",
            flush=True,
        )
    print(f"wrote {path}; total {time.perf_counter() - t_start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
