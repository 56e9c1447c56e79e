"""The one argument helper for sampler settings and model options.

:func:`add_settings_args` adds the flags, with defaults from a preset of
:mod:`bayesda.settings`; :func:`settings_from_args` builds the objects back::

    add_settings_args(parser, DEMO)
    ...
    kw = settings_from_args(args)   # {"seed", "sampler", "options", "progress_bar"}
    assimilate_to_run(prior, obs, out, **kw)
"""

from __future__ import annotations

import argparse

from bayesda.cli.argtypes import non_negative_int, positive_float, positive_int, probability
from bayesda.settings import (
    DEFAULT,
    ERRORS,
    INITS,
    LIKELIHOODS,
    MASSES,
    METHODS,
    ModelOptions,
    SamplerSettings,
)

__all__ = ["add_settings_args", "settings_from_args"]


def add_settings_args(
    parser: argparse.ArgumentParser,
    preset: SamplerSettings = DEFAULT,
    *,
    options: ModelOptions | None = None,
    full: bool = True,
) -> None:
    """Add the sampler and model-option flags to ``parser``.

    Args:
      parser: the (sub)command parser.
      preset: the defaults of the sampler flags.
      options: the defaults of the model flags (default ``ModelOptions()``).
      full: also add ``--errors``, ``--init``, ``--mass``, ``--df`` and ``--infer-sigma``
        (a reanalysis supports only the others; its error model is ``options.errors``).
    """
    o = options or ModelOptions()
    g = parser.add_argument_group("sampler settings (bayesda.settings)")
    g.add_argument("--chains", type=positive_int, default=preset.num_chains, help="NUTS chains")
    g.add_argument(
        "--warmup", type=non_negative_int, default=preset.num_warmup, help="warmup per chain"
    )
    g.add_argument("--draws", type=positive_int, default=preset.num_samples, help="draws per chain")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--method", choices=METHODS, default=preset.method)
    g.add_argument("--target-accept", type=probability, default=preset.target_accept)
    g.add_argument("--max-tree-depth", type=positive_int, default=preset.max_tree_depth)
    if full:
        g.add_argument("--init", choices=INITS, default=preset.init)
        g.add_argument("--mass", choices=MASSES, default=preset.mass)
    if full:
        g.add_argument(
            "--errors",
            choices=ERRORS,
            default=o.errors,
            help="learned: the model learns a site representativeness error, the scale of "
            "its representation error and a uniform offset from the observations (default); "
            "stated: take the stated observation errors and the model's representation "
            "error as given (needed for --likelihood studentt and --infer-sigma)",
        )
    else:
        parser.set_defaults(errors=o.errors)
    g.add_argument("--likelihood", choices=LIKELIHOODS, default=o.likelihood)
    if full:
        g.add_argument(
            "--df", type=positive_float, default=o.df, help="Student-t degrees of freedom"
        )
        g.add_argument(
            "--infer-sigma",
            action="store_true",
            default=o.infer_sigma,
            help="infer a common obs-error scale",
        )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def settings_from_args(args: argparse.Namespace) -> dict:
    """``{"seed", "sampler", "options", "progress_bar"}`` from :func:`add_settings_args` flags.

    Raises:
      ValueError: an invalid combination (from the settings' own checks).
    """
    d = DEFAULT
    sampler = SamplerSettings(
        method=args.method,
        num_chains=args.chains,
        num_warmup=args.warmup,
        num_samples=args.draws,
        target_accept=args.target_accept,
        max_tree_depth=args.max_tree_depth,
        init=getattr(args, "init", d.init),
        mass=getattr(args, "mass", d.mass),
    )
    o = ModelOptions()
    options = ModelOptions(
        errors=args.errors,
        likelihood=args.likelihood,
        df=getattr(args, "df", o.df),
        infer_sigma=getattr(args, "infer_sigma", False),
        offset_sd=getattr(args, "offset_sd", o.offset_sd),
    )
    return {
        "seed": args.seed,
        "sampler": sampler,
        "options": options,
        "progress_bar": not args.no_progress,
    }
