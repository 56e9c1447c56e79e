"""A PASS / WARN / FAIL verdict on an MCMC run, from ArviZ's convergence diagnostics.

Checked over the latent ``z`` *and* over every pixel of the posterior field (a field pixel
is a nonlinear function of all of ``z``, and its ESS can be lower than any ``z``'s):

* rank-normalised split R-hat (Vehtari et al. 2021) -- PASS <= :data:`RHAT_PASS`,
  WARN <= :data:`RHAT_WARN`;
* bulk and tail effective sample size -- PASS >= :data:`ESS_PASS`, WARN >= :data:`ESS_WARN`;
* divergent transitions -- PASS: none, WARN: fraction < :data:`DIVERGENCE_WARN`;
* E-BFMI per chain (Betancourt 2016) -- PASS >= :data:`EBFMI_PASS`, WARN >= :data:`EBFMI_WARN`;
* fraction of transitions that used the whole tree-depth budget (``n_steps >=
  2**max_tree_depth - 1``) -- PASS < :data:`TREEDEPTH_PASS`, WARN < :data:`TREEDEPTH_WARN`.

The status is the worst over all checks. A run without sampler statistics (the Laplace
method) is at best WARN: its draws are independent by construction, so R-hat and ESS say
nothing about whether the Gaussian approximation is right.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

with warnings.catch_warnings():  # arviz announces its 1.0 refactor on import
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az
import numpy as np
import xarray as xr

__all__ = [
    "DIVERGENCE_WARN",
    "STATUSES",
    "Verdict",
    "diagnose",
    "field_dataset",
    "format_verdict",
    "plot_sampler_diagnostics",
]

RHAT_PASS, RHAT_WARN = 1.01, 1.05
ESS_PASS, ESS_WARN = 400.0, 100.0
DIVERGENCE_WARN = 0.01
EBFMI_PASS, EBFMI_WARN = 0.3, 0.2
TREEDEPTH_PASS, TREEDEPTH_WARN = 0.01, 0.10
STATUSES = ("PASS", "WARN", "FAIL")


class Verdict(NamedTuple):
    """The diagnosis of a run.

    Attributes:
      status: "PASS", "WARN" or "FAIL".
      reasons: one sentence per missed check, naming the number and the threshold.
      max_rhat_z, min_ess_bulk_z, min_ess_tail_z: over the latent (and ``sigma_scale``).
      max_rhat_field, min_ess_bulk_field, min_ess_tail_field: over every field pixel
        (NaN when no field samples were given).
      divergences: number of divergent transitions after warmup.
      ebfmi: E-BFMI of each chain (empty without sampler statistics).
      treedepth_saturation: fraction of transitions at the maximum tree depth.
      n_draws: chains x draws.
    """

    status: str
    reasons: list
    max_rhat_z: float
    min_ess_bulk_z: float
    min_ess_tail_z: float
    max_rhat_field: float
    min_ess_bulk_field: float
    min_ess_tail_field: float
    divergences: int
    ebfmi: list
    treedepth_saturation: float
    n_draws: int

    def to_dict(self) -> dict:
        out = {}
        for k, v in self._asdict().items():
            if isinstance(v, float) and not np.isfinite(v):
                v = None
            out[k] = v
        return out


def _worse(a: str, b: str) -> str:
    return STATUSES[max(STATUSES.index(a), STATUSES.index(b))]


def _extremes(ds: xr.Dataset) -> tuple[float, float, float]:
    rhat = az.rhat(ds)
    bulk = az.ess(ds, method="bulk")
    tail = az.ess(ds, method="tail")

    def agg(d, fn):
        vals = np.concatenate([np.ravel(d[v].values) for v in d.data_vars])
        vals = vals[np.isfinite(vals)]
        return float(fn(vals)) if vals.size else float("nan")

    return agg(rhat, np.max), agg(bulk, np.min), agg(tail, np.min)


def field_dataset(field_samples: np.ndarray) -> xr.Dataset:
    """Wrap ``[chain, draw, lat, lon]`` samples for ArviZ."""
    return xr.Dataset({"field": (("chain", "draw", "lat", "lon"), np.asarray(field_samples))})


def diagnose(idata, field_samples=None) -> Verdict:
    """Judge convergence of a run.

    Args:
      idata: ArviZ InferenceData with a ``posterior`` group (``z``) and, for MCMC, a
        ``sample_stats`` group (``diverging``, ``energy``, ``n_steps``) and the attribute
        ``max_tree_depth``.
      field_samples: ``[chain, draw, lat, lon]`` field samples or a Dataset of them
        (e.g. ``posterior_dataset(...)[["anomaly"]]``), or None.

    Returns:
      The :class:`Verdict`.
    """
    reasons: list[str] = []
    status = "PASS"

    def check(value, name, pass_ok, warn_ok, pass_txt, warn_txt):
        nonlocal status
        if pass_ok:
            return
        level = "WARN" if warn_ok else "FAIL"
        status = _worse(status, level)
        reasons.append(f"{level}: {name} = {value} ({pass_txt}; {warn_txt})")

    post = idata.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    rz, bz, tz = _extremes(post)
    if field_samples is not None:
        fds = (
            field_samples if isinstance(field_samples, xr.Dataset) else field_dataset(field_samples)
        )
        rf, bf, tf = _extremes(fds)
    else:
        rf = bf = tf = float("nan")
    if n_chain < 2:
        status = _worse(status, "WARN")
        reasons.append(f"WARN: only {n_chain} chain, R-hat cannot compare chains (PASS needs >= 2)")
    for where, r, b, t in (("latent z", rz, bz, tz), ("field", rf, bf, tf)):
        if not np.isfinite(r):
            continue
        check(
            f"{r:.3f}",
            f"max R-hat over {where}",
            r <= RHAT_PASS,
            r <= RHAT_WARN,
            f"PASS <= {RHAT_PASS}",
            f"WARN <= {RHAT_WARN}",
        )
        check(
            f"{b:.0f}",
            f"min bulk ESS over {where}",
            b >= ESS_PASS,
            b >= ESS_WARN,
            f"PASS >= {ESS_PASS:.0f}",
            f"WARN >= {ESS_WARN:.0f}",
        )
        check(
            f"{t:.0f}",
            f"min tail ESS over {where}",
            t >= ESS_PASS,
            t >= ESS_WARN,
            f"PASS >= {ESS_PASS:.0f}",
            f"WARN >= {ESS_WARN:.0f}",
        )

    divergences, ebfmi, saturation = 0, [], 0.0
    stats = getattr(idata, "sample_stats", None)
    if stats is None or "diverging" not in stats:
        status = _worse(status, "WARN")
        reasons.append(
            "WARN: no sampler statistics (e.g. method='laplace'): the draws are independent by "
            "construction, so convergence cannot be checked; cross-check with NUTS"
        )
    else:
        div = np.asarray(stats["diverging"].values, bool)
        divergences = int(div.sum())
        rate = divergences / div.size
        check(
            f"{divergences} ({rate:.2%} of transitions)",
            "divergent transitions",
            divergences == 0,
            rate < DIVERGENCE_WARN,
            "PASS: none",
            f"WARN < {DIVERGENCE_WARN:.0%}",
        )
        if "energy" in stats:
            ebfmi = [float(v) for v in np.atleast_1d(az.bfmi(idata))]
            worst = min(ebfmi)
            check(
                f"{worst:.2f}",
                "min E-BFMI over chains",
                worst >= EBFMI_PASS,
                worst >= EBFMI_WARN,
                f"PASS >= {EBFMI_PASS}",
                f"WARN >= {EBFMI_WARN}",
            )
        max_depth = idata.attrs.get("max_tree_depth", None) if hasattr(idata, "attrs") else None
        if max_depth is None:
            max_depth = stats.attrs.get("max_tree_depth", None)
        if "n_steps" in stats and max_depth is not None:
            saturation = float(
                np.mean(np.asarray(stats["n_steps"].values) >= 2 ** int(max_depth) - 1)
            )
            check(
                f"{saturation:.1%}",
                f"fraction of transitions at max tree depth {int(max_depth)}",
                saturation < TREEDEPTH_PASS,
                saturation < TREEDEPTH_WARN,
                f"PASS < {TREEDEPTH_PASS:.0%}",
                f"WARN < {TREEDEPTH_WARN:.0%}",
            )
    return Verdict(
        status,
        reasons,
        rz,
        bz,
        tz,
        rf,
        bf,
        tf,
        divergences,
        ebfmi,
        saturation,
        int(n_chain * n_draw),
    )


def format_verdict(v: Verdict) -> str:
    """A human-readable multi-line report of a :class:`Verdict`."""
    lines = [
        f"max R-hat: z {v.max_rhat_z:.3f}, field {v.max_rhat_field:.3f}",
        f"min ESS bulk/tail: z {v.min_ess_bulk_z:.0f}/{v.min_ess_tail_z:.0f}, "
        f"field {v.min_ess_bulk_field:.0f}/{v.min_ess_tail_field:.0f} (of {v.n_draws} draws)",
        f"divergences: {v.divergences}",
        "E-BFMI per chain: " + (", ".join(f"{e:.2f}" for e in v.ebfmi) or "n/a"),
        f"transitions at max tree depth: {v.treedepth_saturation:.1%}",
        f"verdict: {v.status}",
    ]
    lines += [f"  - {r}" for r in v.reasons]
    return "\n".join(lines)


def plot_sampler_diagnostics(idata, out, *, n_dims: int = 4) -> Path:
    """Trace plots (``out``) and rank plots (``out`` with ``_rank`` before the suffix) for the
    first ``n_dims`` latent dimensions (and ``sigma_scale`` when inferred), saved to PNG.

    Returns:
      The trace plot's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    coords = {"latent": list(range(min(n_dims, idata.posterior.sizes["latent"])))}
    names = ["z"] + (["sigma_scale"] if "sigma_scale" in idata.posterior else [])
    axes = az.plot_trace(idata, var_names=names, coords=coords, compact=False, show=False)
    fig = np.ravel(axes)[0].figure
    fig.suptitle(
        "posterior density per chain (left) and trace (right) of the first latent dimensions"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    axes = az.plot_rank(idata, var_names=names, coords=coords, show=False)
    fig = np.ravel(axes)[0].figure
    fig.suptitle("rank plots: uniform bars in every chain = chains agree")
    fig.tight_layout()
    fig.savefig(out.with_name(f"{out.stem}_rank{out.suffix}"), dpi=90)
    plt.close(fig)
    return out
