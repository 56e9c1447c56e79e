"""``bayesda train``: train a VAE prior on a dataset's training split and save it.

Example::

    bayesda train --data ncep-air --out models/ncep-air --latent-dim 100 --epochs 30 --seed 0

The training pipeline is :func:`bayesda.prior.recipe.train_prior` (re-exported here); this module
only parses arguments and calls it.
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bayesda.prior.recipe import train_prior

__all__ = ["cmd_train", "register", "train_prior"]

_FROM_RECIPE = ("SHIPPED_LATENT_DIM", "_recon_residuals", "train_prior")


def __getattr__(name: str):
    """The recipe's names, re-exported lazily: importing the recipe imports jax and flax,
    which every ``bayesda`` command line (even ``--help``) would otherwise pay for."""
    if name in _FROM_RECIPE:
        import bayesda.prior.recipe as recipe

        return getattr(recipe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(subparsers) -> None:
    """Add the ``train`` command to the top-level parser.

    Options left unset are None here and take the defaults of
    :class:`bayesda.prior.train.TrainConfig`, :class:`bayesda.prior.vae.VAEConfig` and
    :data:`bayesda.prior.recipe.SHIPPED_LATENT_DIM` when the command runs, so that building the
    parser imports no JAX.
    """
    from bayesda.cli.argtypes import repr_error_structure

    p = subparsers.add_parser("train", help="train a VAE prior on a dataset's training split")
    p.add_argument("--data", default="ncep-air", help="named dataset (ncep-air, era5-uk) or path")
    p.add_argument("--data-dir", default=None, help="directory of named datasets")
    p.add_argument("--out", required=True, help="model directory to write, e.g. models/NAME")
    p.add_argument("--latent-dim", type=int, help="default: as the shipped model")
    p.add_argument(
        "--channels", help="decoder conv channels, coarse to fine, comma-separated (default 16,16)"
    )
    p.add_argument("--no-linear-path", action="store_true", help="drop the linear paths")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--beta", type=float, help="KL weight (1 = ELBO)")
    p.add_argument("--patience", type=int)
    p.add_argument("--no-pca-init", action="store_true", help="random init of the linear paths")
    p.add_argument(
        "--freeze-linear", action="store_true", help="train only the conv paths (and noise)"
    )
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--repr-error",
        default="matern32",
        type=repr_error_structure,
        help="representation-error structure estimated from the validation residuals: "
        "'matern32' (stationary Matern-3/2, length fitted to the residual correlogram; the "
        "shipped choice, see analysis/repr_error/repr_error_structure.py), 'sqexp', "
        "'KIND@LENGTH_KM', "
        "or a rank ('0': per-pixel variance only)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from bayesda.data.datasets import load_dataset
    from bayesda.prior.recipe import SHIPPED_LATENT_DIM, train_prior
    from bayesda.prior.train import TrainConfig
    from bayesda.prior.vae import VAEConfig

    spec = args.channels or ",".join(map(str, VAEConfig(nlat=2, nlon=2).channels))
    try:
        channels = tuple(int(c) for c in str(spec).split(","))
    except ValueError as err:
        raise ValueError(f"--channels {args.channels!r} must be comma-separated ints") from err
    given = {
        name: getattr(args, name)
        for name in ("epochs", "batch_size", "learning_rate", "beta", "patience", "seed")
        if getattr(args, name) is not None
    }
    tc = TrainConfig(
        **given,
        pca_init=not (args.no_pca_init or args.no_linear_path),
        freeze_linear=args.freeze_linear,
    )
    out = pathlib.Path(args.out)
    from bayesda.prior.checkpoint import check_target

    check_target(out, overwrite=args.overwrite)  # a model, never another directory
    if args.data and pathlib.Path(args.data).exists():
        import bayesda.runtime.files as files

        files.check_inputs_outside(out, [args.data])
    ds = load_dataset(args.data, args.data_dir)
    path, summary = train_prior(
        ds["tas"],
        args.out,
        latent_dim=SHIPPED_LATENT_DIM if args.latent_dim is None else args.latent_dim,
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
