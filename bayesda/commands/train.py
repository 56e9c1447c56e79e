"""``bayesda train``: train a VAE prior on a dataset's training split and save it.

Example::

    bayesda train --data ncep-air --out models/ncep-air --latent-dim 100 --epochs 30 --seed 0

The training pipeline is :func:`bayesda.recipe.train_prior` (re-exported here); this module
only parses arguments and calls it.
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import sys

from bayesda.recipe import SHIPPED_LATENT_DIM, _recon_residuals, train_prior  # noqa: F401

__all__ = ["cmd_train", "register", "train_prior"]


def register(subparsers) -> None:
    """Add the ``train`` command to the top-level parser."""
    from bayesda.commands.argtypes import repr_error_structure
    from bayesda.train import TrainConfig
    from bayesda.vae import VAEConfig

    tc, vc = TrainConfig(), VAEConfig(nlat=2, nlon=2)
    p = subparsers.add_parser("train", help="train a VAE prior on a dataset's training split")
    p.add_argument("--data", default="ncep-air", help="named dataset (ncep-air, era5-uk) or path")
    p.add_argument("--data-dir", default=None, help="directory of named datasets")
    p.add_argument("--out", required=True, help="model directory to write, e.g. models/NAME")
    p.add_argument(
        "--latent-dim", type=int, default=SHIPPED_LATENT_DIM, help="as the shipped model"
    )
    p.add_argument(
        "--channels",
        default=",".join(map(str, vc.channels)),
        help="decoder conv channels, coarse to fine, comma-separated",
    )
    p.add_argument("--no-linear-path", action="store_true", help="drop the linear paths")
    p.add_argument("--epochs", type=int, default=tc.epochs)
    p.add_argument("--batch-size", type=int, default=tc.batch_size)
    p.add_argument("--learning-rate", type=float, default=tc.learning_rate)
    p.add_argument("--beta", type=float, default=tc.beta, help="KL weight (1 = ELBO)")
    p.add_argument("--patience", type=int, default=tc.patience)
    p.add_argument("--no-pca-init", action="store_true", help="random init of the linear paths")
    p.add_argument(
        "--freeze-linear", action="store_true", help="train only the conv paths (and noise)"
    )
    p.add_argument("--seed", type=int, default=tc.seed)
    p.add_argument(
        "--repr-error",
        default="matern32",
        type=repr_error_structure,
        help="representation-error structure estimated from the validation residuals: "
        "'matern32' (stationary Matern-3/2, length fitted to the residual correlogram; the "
        "shipped choice, see analysis/repr_error_structure.py), 'sqexp', 'KIND@LENGTH_KM', "
        "or a rank ('0': per-pixel variance only)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from bayesda.data import load_dataset
    from bayesda.train import TrainConfig

    try:
        channels = tuple(int(c) for c in str(args.channels).split(","))
    except ValueError as err:
        raise ValueError(f"--channels {args.channels!r} must be comma-separated ints") from err
    tc = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        beta=args.beta,
        patience=args.patience,
        seed=args.seed,
        pca_init=not (args.no_pca_init or args.no_linear_path),
        freeze_linear=args.freeze_linear,
    )
    out = pathlib.Path(args.out)
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it")
    from bayesda.checkpoint import check_target

    check_target(out, overwrite=args.overwrite)  # a model, never another directory
    ds = load_dataset(args.data, args.data_dir)
    path, summary = train_prior(
        ds["tas"],
        args.out,
        latent_dim=args.latent_dim,
        channels=channels,
        linear_path=not args.no_linear_path,
        train_config=tc,
        dataset=str(args.data),
        repr_error=args.repr_error,
        overwrite=args.overwrite,
        progress=not args.quiet,
        command="bayesda " + shlex.join(sys.argv[1:]) if sys.argv else None,
    )
    print(
        f"wrote {path}: {summary['epochs_run']} epochs (best {summary['best_epoch']}) in "
        f"{summary['wall_time_s']:.0f} s; validation reconstruction RMSE "
        f"{summary['val_recon_rmse_K']:.3f} K"
    )
    return 0
