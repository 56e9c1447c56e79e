"""Train temperature-only VAE priors on the simulated weather; reconstruction vs PCA-d.

For each latent dimension ``d``: train with :func:`bayesda.cli.train.train_prior`
(time-block split, every 4th 7-day block held out for testing; validation blocks of the
training period for early stopping; climatology = the training time mean, no harmonics)
into ``~/.cache/bayesda/osse/models/<tag>-d<d>``, then on the held-out test fields compute

* the VAE reconstruction RMSE ``decode(encode_mean(x)) - x`` (K), and optionally the
  decoder-optimal one (``z`` refined by Adam from the encoder mean, ``--refine-steps``);
* the RMSE of PCA/EOF truncation with ``d`` modes fitted on the same fit fields;
* both also cos-latitude weighted.

Each run appends one record per ``d`` to ``analysis/osse/results/osse_recon.json`` (keyed by
``tag`` and ``d``, so ablations accumulate) and rewrites ``osse_recon.md``.

Usage (the shipped-size recipe and the ablations are in the README)::

    python -m analysis.osse.osse_train --dims 32,64,128 --epochs 30 --tag base
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np

import bayesda
from analysis.common.io import command, results_dir
from analysis.common.osse import (
    QG_UNITS,
    cos_weights,
    default_qg_store,
    default_store,
    open_field,
    recon_markdown,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None, help="OSSE zarr store (default: the full preset)")
    p.add_argument(
        "--var",
        default="tas",
        help="variable: tas (Held-Suarez) or q, q_upper, psi, u, v (the QG store, bayesda.sim.qg)",
    )
    p.add_argument("--max-snapshots", type=int, default=None)
    p.add_argument("--dims", default="32,64,128")
    p.add_argument("--tag", default="base", help="name of this configuration in the results")
    p.add_argument("--channels", default="16,16")
    p.add_argument("--no-linear-path", action="store_true")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--warmup-epochs", type=int, default=5)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--no-pca-init", action="store_true")
    p.add_argument("--freeze-linear", action="store_true")
    p.add_argument("--roll-lon", action="store_true", help="augment by longitude shifts")
    p.add_argument("--flip-lat", action="store_true", help="augment by hemisphere mirroring")
    p.add_argument(
        "--refine-steps",
        type=int,
        default=0,
        help="also report decoder-optimal reconstruction after N Adam steps on z",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models-dir", default=None)
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="evaluate the models already in --models-dir (<tag>-d<d>) without training",
    )
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("osse"))
    return p.parse_args(argv)


def rmse(a, b, w=None) -> float:
    e = np.square(np.asarray(a, np.float64) - b)
    if w is not None:
        e = e * w
    return float(np.sqrt(np.mean(e)))


def pca_reconstruct(train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    a = train.reshape(len(train), -1).astype(np.float64)
    mu = a.mean(0)
    _, _, vt = np.linalg.svd(a - mu, full_matrices=False)
    b = test.reshape(len(test), -1) - mu
    return (b @ vt[:k].T @ vt[:k] + mu).reshape(test.shape)


def refine(prior, x: np.ndarray, z0: np.ndarray, steps: int) -> np.ndarray:
    """Decoder-optimal reconstruction: minimise ||decode(z) - x||^2 over z by Adam."""
    import jax
    import jax.numpy as jnp
    import optax

    opt = optax.adam(0.05)

    def loss(z, xb):
        return jnp.sum(jnp.square(prior.decode(z) - xb))

    @jax.jit
    def run(z, xb):
        state = opt.init(z)

        def body(_, carry):
            z, state = carry
            g = jax.grad(loss)(z, xb)
            upd, state = opt.update(g, state, z)
            return optax.apply_updates(z, upd), state

        return jax.lax.fori_loop(0, steps, body, (z, state))[0]

    out = [
        np.asarray(prior.decode(run(jnp.asarray(z0[i : i + 256]), jnp.asarray(x[i : i + 256]))))
        for i in range(0, len(x), 256)
    ]
    return np.concatenate(out)


def train_config(args):
    """The :class:`bayesda.prior.train.TrainConfig` of these arguments."""
    from bayesda.prior.train import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_epochs=args.warmup_epochs,
        beta=args.beta,
        patience=args.patience,
        seed=args.seed,
        pca_init=not args.no_pca_init,
        freeze_linear=args.freeze_linear,
        roll_lon=args.roll_lon,
        flip_lat=args.flip_lat,
    )


def train_or_read(args, tas, out: pathlib.Path, d: int, tc, store: str, cmd: str) -> dict:
    """Train the latent-``d`` model into ``out`` (or, with ``--eval-only``, read its card);
    its training summary (epochs run, best epoch, wall time, validation history)."""
    from bayesda.prior.recipe import train_prior

    if args.eval_only:
        card = json.loads((out / "model.json").read_text())["training"]
        return {
            "epochs_run": card["epochs_run"],
            "best_epoch": card["best_epoch"],
            "wall_time_s": card["wall_time_s"],
            "history": {"val_recon": card.get("history", {}).get("val_recon", [])},
        }
    _, summary = train_prior(
        tas,
        out,
        latent_dim=d,
        channels=tuple(int(c) for c in args.channels.split(",")),
        linear_path=not args.no_linear_path,
        train_config=tc,
        dataset=str(store),
        overwrite=True,
        command=cmd,
        n_harmonics=0,
        progress=False,
    )
    return summary


def evaluate(args, tas, out: pathlib.Path, d: int, masks) -> dict:
    """Held-out reconstruction of the model in ``out``: VAE, PCA-d (and refined ``z``)."""
    import jax
    import jax.numpy as jnp

    from bayesda.prior.checkpoint import load_model

    train_mask, test_mask, fit_mask = masks
    prior = load_model(out)
    clim = prior.climatology
    a_train = np.asarray(clim.to_anomaly(tas.isel(time=np.flatnonzero(train_mask))).values)
    a_test = np.asarray(clim.to_anomaly(tas.isel(time=np.flatnonzero(test_mask))).values)
    a_fit = a_train[fit_mask]
    enc = jax.jit(lambda x, p=prior: p.encode(x)[0])
    z_test = np.concatenate(
        [np.asarray(enc(jnp.asarray(a_test[i : i + 256]))) for i in range(0, len(a_test), 256)]
    )
    rec = np.concatenate(
        [
            np.asarray(prior.decode(jnp.asarray(z_test[i : i + 256])))
            for i in range(0, len(z_test), 256)
        ]
    )
    pca = pca_reconstruct(a_fit, a_test, d)
    w = cos_weights(tas["lat"].values, tas.sizes["lon"])
    out_ = {
        "vae_rmse": round(rmse(rec, a_test), 4),
        "pca_rmse": round(rmse(pca, a_test), 4),
        "vae_rmse_area_weighted": round(rmse(rec, a_test, w), 4),
        "pca_rmse_area_weighted": round(rmse(pca, a_test, w), 4),
        "test_anomaly_sd": round(float(a_test.std()), 4),
    }
    if args.refine_steps:
        ref = refine(prior, a_test, z_test, args.refine_steps)
        out_["vae_refined_rmse"] = round(rmse(ref, a_test), 4)
    return out_


def main(argv=None) -> None:
    args = parse_args(argv)
    from bayesda.data.split import block_split, validation_split

    tas = open_field(args.var, args.store, args.max_snapshots)
    store = args.store or str(default_qg_store() if args.var in QG_UNITS else default_store())
    times = tas["time"].values
    train_mask, test_mask = block_split(times)
    fit_mask, _ = validation_split(times[train_mask])
    models_dir = pathlib.Path(args.models_dir or (default_store().parent / "models"))
    cmd = command(__spec__.name, argv)
    tc = train_config(args)
    path_json = args.out_dir / "osse_recon.json"
    records = json.loads(path_json.read_text()) if path_json.exists() else []
    for d in (int(v) for v in args.dims.split(",")):
        out = models_dir / f"{args.tag}-d{d}"
        t0 = time.perf_counter()
        summary = train_or_read(args, tas, out, d, tc, store, cmd)
        wall = time.perf_counter() - t0
        scores = evaluate(args, tas, out, d, (train_mask, test_mask, fit_mask))
        rec_entry = {
            "tag": args.tag,
            "model": f"vae-{args.var}",
            "latent_dim": d,
            **{k: v for k, v in scores.items() if k != "vae_refined_rmse"},
            "n_fit": int(fit_mask.sum()),
            "n_test": int(test_mask.sum()),
            "epochs_run": summary["epochs_run"],
            "best_epoch": summary["best_epoch"],
            "train_wall_s": summary["wall_time_s"],
            "wall_s": round(wall, 1),
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "val_recon_history": summary["history"]["val_recon"],
            "train_config": tc.to_dict(),
            "channels": args.channels,
            "linear_path": not args.no_linear_path,
            "command": cmd,
            "model_dir": str(out),
        }
        rec_entry["ratio"] = round(rec_entry["vae_rmse"] / rec_entry["pca_rmse"], 4)
        if args.refine_steps:
            rec_entry["vae_refined_rmse"] = scores["vae_refined_rmse"]
            rec_entry["refine_steps"] = args.refine_steps
        records = [r for r in records if not (r["tag"] == args.tag and r["latent_dim"] == d)]
        records.append(rec_entry)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path_json.write_text(json.dumps(records, indent=1) + "\n")
        (args.out_dir / "osse_recon.md").write_text(recon_markdown(records))
        print(
            json.dumps(
                {
                    k: v
                    for k, v in rec_entry.items()
                    if k not in ("val_recon_history", "train_config")
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    bayesda.set_host_device_count()  # one CPU device per chain, before any JAX computation
    bayesda.enable_compilation_cache()
    main()
