"""Synthetic check of the whole method against an exact Gaussian posterior (issue 5).

The truth is a Gaussian random field (:class:`bayesda.sim.grf.GaussianRandomField`) on the
NCEP grid, so the posterior given point observations is known exactly
(:func:`bayesda.sim.grf.gaussian_posterior`). The check runs the whole bayesda pipeline on
it and compares:

1. Draw training, validation and test fields from the GRF (fixed seeds).
2. Train a VAE on the training draws with :func:`bayesda.prior.train.fit` (the same settings and
   domain-wide normalisation as ``bayesda train``), estimate the representation error from
   the validation residuals ``decode(encode_mean(x)) - x`` with
   :func:`bayesda.prior.representation.estimate` (rank 0 by default, as the shipped model), save
   and reload it with :mod:`bayesda.prior.checkpoint` to get the :class:`GenerativePrior`.
3. For each test field and each network of uniform pseudo-observations (sigma 0.5 K, fresh
   locations per field), run :func:`bayesda.inference.assimilate.assimilate` (NUTS; the ``field``
   samples
   include the conditioned representation error) and the exact posterior of the GRF.
4. Score (cos-latitude weighted over unobserved grid points and over all points): RMSE of
   the bayesda posterior mean against the exact posterior mean; ratio of the bayesda
   posterior SD to the exact SD per pixel; 90% coverage of the truth and CRPS (fair ensemble
   CRPS for bayesda, closed form for the Gaussians) against the truth.

Two Gaussian references help to say *why* bayesda differs from the exact answer:

* ``learned-linear``: the trained prior linearised at ``z = 0``,
  ``x ~ N(g(0), J J^T + C)`` with ``J = dg/dz(0)`` and ``C`` the representation error; its
  exact posterior is what NUTS would give if the decoder were linear. bayesda close to it
  and far from ``exact`` means the gap is the prior, not the sampler.
* ``oracle-dK``: the best prior of the same structure, built from the true covariance:
  its top ``K`` eigenpairs plus the remaining per-pixel variance on the diagonal
  (PPCA-``K`` with a rank-0 representation error, fitted perfectly). With ``K`` the VAE's
  latent size, what is left between it and ``exact`` is the cost of the structure (latent
  size, diagonal representation error), which no amount of training removes; the sweep
  over ``K`` (``--oracle-dims``) shows how much a larger latent would recover.

Outputs: ``analysis/synthetic_check/results/synthetic_check.{md,json,png}``
(``synthetic_check_quick.*`` with ``--quick``).

Usage (from the repository root)::

    python -m analysis.synthetic_check.synthetic_check            # full
    python -m analysis.synthetic_check.synthetic_check --quick    # ~1.5 min, smaller everything

Measured on the 2-core machine while others loaded it (load average 6-10): full 1037 s
(training 126 s, then ~16 s per NUTS analysis x 40); ``--quick`` 96 s. ``--n-test 10``
roughly halves the assimilation part.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import pathlib
import platform
import tempfile
import time as _time
from dataclasses import dataclass

import numpy as np
import xarray as xr

import bayesda
from analysis.common.io import SHIPPED_MODEL, command, results_dir
from analysis.common.prior import reconstruct
from analysis.common.settings import STATED
from bayesda.geo.grid import Grid
from bayesda.verify import metrics

REGIONS = ("unobserved", "all")
LEVEL = 0.9


@dataclass(frozen=True)
class CheckConfig:
    """Settings of the synthetic check.

    Attributes:
      length_scale_km, sd, land_sea_ratio, kind: the GRF (sea SD ``sd`` K, land
        ``land_sea_ratio * sd``).
      n_train, n_val, n_test: fields for training, validation (early stopping and the
        representation error) and assimilation.
      n_recon: extra test fields for the reconstruction RMSE.
      latent_dim, channels, epochs, patience: the VAE and its training (other settings:
        :class:`bayesda.prior.train.TrainConfig` defaults, as ``bayesda train``).
      repr_error: representation-error structure estimated from the validation residuals
        (:func:`bayesda.prior.representation.from_residuals`; the shipped recipe is matern32).
      networks: numbers of uniform observations.
      sigma: observation error SD, K.
      chains, warmup, draws: NUTS settings.
      seed: master seed.
    """

    length_scale_km: float = 1000.0
    sd: float = 1.5
    land_sea_ratio: float = 2.0
    kind: str = "matern32"
    n_train: int = 3000
    n_val: int = 500
    n_test: int = 20
    n_recon: int = 500
    latent_dim: int = 100
    channels: tuple[int, ...] = (16, 16)
    epochs: int = 30
    patience: int = 8
    repr_error: str = "matern32"
    networks: tuple[int, ...] = (20, 200)
    sigma: float = 0.5
    chains: int = 4
    warmup: int = 200
    draws: int = 300
    seed: int = 0


QUICK = dict(
    n_train=600,
    n_val=150,
    n_test=3,
    n_recon=150,
    epochs=3,
    patience=2,
    chains=2,
    warmup=150,
    draws=150,
)


# --------------------------------------------------------------------------------------
# Prior
# --------------------------------------------------------------------------------------


def ncep_grid() -> Grid:
    """The grid of the shipped NCEP model (2.5 deg, 25 x 53, North America)."""
    from bayesda.prior.checkpoint import read_card

    return Grid.from_dict(read_card(SHIPPED_MODEL)["grid"])


def train_prior(
    x_train: np.ndarray,
    x_val: np.ndarray,
    grid: Grid,
    cfg: CheckConfig,
    workdir: pathlib.Path,
    progress: bool = True,
):
    """Train a VAE prior on anomaly fields ``[n, nlat, nlon]`` (K), as ``bayesda train`` does.

    Returns:
      ``(prior, summary)``: the reloaded :class:`bayesda.prior.generative.GenerativePrior` with its
      representation error, and a JSON-able training summary.
    """
    from bayesda.prior.checkpoint import load_model, save_model
    from bayesda.prior.representation import from_residuals, zero_error
    from bayesda.prior.train import TrainConfig, fit, normalisation
    from bayesda.prior.vae import VAEConfig

    config = VAEConfig(
        nlat=grid.shape[0],
        nlon=grid.shape[1],
        latent_dim=cfg.latent_dim,
        channels=cfg.channels,
        periodic=grid.periodic,
    )
    tc = TrainConfig(epochs=cfg.epochs, patience=cfg.patience, seed=cfg.seed)
    mean, sd = normalisation(x_train)
    result = fit((x_train - mean) / sd, (x_val - mean) / sd, config, tc, progress=progress)
    common = dict(params=result.params, config=config, grid=grid, norm_mean=mean, norm_sd=sd)
    path = save_model(workdir / "grf-vae", repr_error=zero_error(grid.shape), **common)
    prior = load_model(path)
    residuals = reconstruct(prior, x_val) - x_val
    repr_error = from_residuals(residuals, grid, cfg.repr_error)
    prior = dataclasses.replace(prior, repr_error=repr_error, name="grf-vae")
    summary = {
        "train_config": tc.to_dict(),
        "vae_config": config.to_dict(),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "wall_time_s": round(result.wall_time_s, 1),
        "val_recon_rmse_K": round(float(np.sqrt(np.mean(residuals**2))), 4),
        "repr_error_rank": repr_error.rank,
        "repr_error_mean_sd_K": round(float(np.mean(repr_error.sd)), 4),
    }
    return prior, summary


def linearised_prior(prior) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [npix], cov [npix, npix])`` of the prior linearised at ``z = 0``, K / K^2.

    ``x ~ N(g(0), J J^T + C)`` with ``J = dg/dz`` at 0 (reverse mode: the decoder has a
    custom VJP) and ``C`` the representation error.
    """
    import jax
    import jax.numpy as jnp

    z0 = jnp.zeros(prior.latent_dim, jnp.float32)
    J = np.asarray(jax.jacrev(lambda z: prior.decode(z).ravel())(z0), np.float64)  # [npix, d]
    b = np.asarray(prior.decode(z0), np.float64).ravel()
    F = np.asarray(prior.repr_error.factor, np.float64).reshape(prior.repr_error.rank, b.size)
    C = F.T @ F + np.diag(np.asarray(prior.repr_error.diag_var, np.float64).ravel())
    return b, J @ J.T + C


def oracle_rank_d(cov: np.ndarray, dims) -> dict[int, np.ndarray]:
    """Top-``d`` eigen truncation of ``cov`` plus the rest of each pixel's variance on the
    diagonal, for each ``d`` in ``dims``: the best PPCA-``d`` + per-pixel-error prior (same
    marginal variances as ``cov``)."""
    w, v = np.linalg.eigh(cov)
    w, v = w[::-1], v[:, ::-1]
    out = {}
    for d in dims:
        low = (v[:, :d] * w[:d]) @ v[:, :d].T
        out[int(d)] = low + np.diag(np.maximum(np.diag(cov) - np.diag(low), 0.0))
    return out


# --------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------


def _da(grid: Grid, values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(
        np.asarray(values, np.float64).reshape(grid.shape),
        dims=("lat", "lon"),
        coords=grid.coords(),
    )


def gaussian_scores(mean, sd, truth, mask=None, level: float = LEVEL) -> dict:
    """RMSE of the mean, CRPS and central-interval coverage of a Gaussian posterior.

    Args:
      mean, sd, truth: ``(lat, lon)`` DataArrays, K.
      mask: optional boolean ``(lat, lon)``: points scored.
      level: nominal interval level.
    """
    return {
        "rmse": float(metrics.rmse(mean, truth, mask=mask)),
        "crps": float(metrics.crps_gaussian(mean, sd, truth, mask=mask)),
        "cov90": float(metrics.coverage_gaussian(mean, sd, truth, level, mask=mask)),
        "spread": float(np.sqrt(metrics.spatial_mean(sd**2, mask=mask))),
    }


def ensemble_scores(members: xr.DataArray, truth, mask=None, level: float = LEVEL) -> dict:
    """The same scores for posterior draws ``(sample, lat, lon)`` (fair ensemble CRPS)."""
    return {
        "rmse": float(metrics.rmse(members.mean("sample"), truth, mask=mask)),
        "crps": float(metrics.crps_ensemble(members, truth, mask=mask)),
        "cov90": float(metrics.coverage(members, truth, level, mask=mask)),
        "spread": float(np.sqrt(metrics.spatial_mean(members.var("sample", ddof=1), mask=mask))),
    }


def versus_exact(mean, sd, exact_mean, exact_sd, mask=None) -> dict:
    """RMSE of a posterior mean against the exact one and the SD ratio to the exact SD."""
    ratio = sd / exact_sd
    return {
        "rmse_vs_exact": float(metrics.rmse(mean, exact_mean, mask=mask)),
        "sd_ratio": float(metrics.spatial_mean(ratio, mask=mask)),
    }


def exact_coverage_check(grf, n_fields: int, n_obs: int, sigma: float, seed: int) -> float:
    """Mean 90% coverage of the truth by the exact GRF posterior over ``n_fields`` draws.

    A sanity check of the reference itself: with truth and observations drawn from the
    model, it is 0.9 up to Monte Carlo error.
    """
    from bayesda.obs.operator import as_matrix, bilinear_stencil
    from bayesda.obs.table import pseudo_obs
    from bayesda.sim.grf import gaussian_posterior

    grid = grf.grid
    truths = grf.sample(seed, n_fields)
    cov = []
    for i, x in enumerate(truths):
        obs = pseudo_obs(_da(grid, x), n_obs, network="uniform", sigma=sigma, seed=seed + 1 + i)
        H = as_matrix(bilinear_stencil(grid, obs["lat"], obs["lon"]), grid.size)
        m, P = gaussian_posterior(np.zeros(grid.size), grf.cov, H, obs["value"], sigma**2)
        sd = np.sqrt(np.maximum(np.diag(P), 0.0))
        cov.append(float(metrics.coverage_gaussian(_da(grid, m), _da(grid, sd), _da(grid, x))))
    return float(np.mean(cov))


# --------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------


def run_case(prior, grid, truth, n_obs, refs, cfg: CheckConfig, seed: int) -> dict:
    """Assimilate one test field with one network; every method's scores and maps."""
    from bayesda.inference.assimilate import assimilate
    from bayesda.obs.operator import as_matrix, bilinear_stencil
    from bayesda.obs.table import pseudo_obs
    from bayesda.settings import SamplerSettings
    from bayesda.sim.grf import gaussian_posterior

    truth_da = _da(grid, truth)
    obs = pseudo_obs(truth_da, n_obs, network="uniform", sigma=cfg.sigma, seed=seed)
    H = as_matrix(bilinear_stencil(grid, obs["lat"], obs["lon"]), grid.size)
    y = obs["value"].to_numpy()
    post = {}
    for name, (m0, P0) in refs.items():
        m, P = gaussian_posterior(m0, P0, H, y, cfg.sigma**2)
        post[name] = (_da(grid, m), _da(grid, np.sqrt(np.maximum(np.diag(P), 0.0))))

    t0 = _time.perf_counter()
    sampler = SamplerSettings(num_chains=cfg.chains, num_warmup=cfg.warmup, num_samples=cfg.draws)
    res = assimilate(prior, obs, sampler=sampler, options=STATED, seed=seed, progress_bar=False)
    wall = _time.perf_counter() - t0
    field = res.field.reshape(-1, *grid.shape).astype(np.float64)
    members = xr.DataArray(field, dims=("sample", "lat", "lon"), coords=grid.coords())
    b_mean, b_sd = members.mean("sample"), members.std("sample", ddof=1)

    unobserved = ~metrics.observed_mask(grid, obs)
    masks = {"unobserved": unobserved, "all": None}
    e_mean, e_sd = post["exact"]
    scores = {}
    for region, mask in masks.items():
        s = {
            "bayesda": {
                **ensemble_scores(members, truth_da, mask),
                **versus_exact(b_mean, b_sd, e_mean, e_sd, mask),
            }
        }
        for name, (m, sd) in post.items():
            s[name] = gaussian_scores(m, sd, truth_da, mask)
            if name != "exact":
                s[name].update(versus_exact(m, sd, e_mean, e_sd, mask))
        scores[region] = s
    ratios = {"bayesda": (b_sd / e_sd).values}
    ratios.update({k: (sd / e_sd).values for k, (_, sd) in post.items() if k != "exact"})
    import arviz as az

    rhat = float(az.rhat(res.idata, var_names=["z"])["z"].max())
    diag = {
        "wall_s": round(wall, 2),
        "divergences": int(np.asarray(res.idata.sample_stats["diverging"]).sum()),
        "steps_per_draw": round(res.grad_evals["sampling"] / (cfg.chains * cfg.draws), 1),
        "max_rhat_z": round(rhat, 4),
    }
    maps = {
        "truth": truth_da,
        "exact_mean": e_mean,
        "exact_sd": e_sd,
        "bayesda_mean": b_mean,
        "bayesda_sd": b_sd,
        "obs": obs,
    }
    return {
        "scores": scores,
        "ratios": ratios,
        "unobserved": unobserved.values,
        "diag": diag,
        "maps": maps,
    }


def summarise(cases: list[dict]) -> dict:
    """Mean and standard error over cases; RMSEs as the root of the mean square; SD-ratio
    quantiles over all pixels of all cases (unweighted)."""
    out = {}
    for region in REGIONS:
        out[region] = {}
        for method in cases[0]["scores"][region]:
            keys = cases[0]["scores"][region][method].keys()
            row = {}
            for k in keys:
                v = np.array([c["scores"][region][method][k] for c in cases])
                if k.startswith("rmse") or k == "spread":
                    row[k] = float(np.sqrt(np.mean(v**2)))
                else:
                    row[k] = float(v.mean())
                row[k + "_se"] = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else None
            if method in cases[0]["ratios"]:
                pooled = np.concatenate(
                    [
                        c["ratios"][method][c["unobserved"]]
                        if region == "unobserved"
                        else c["ratios"][method].ravel()
                        for c in cases
                    ]
                )
                row["sd_ratio_p10"], row["sd_ratio_p50"], row["sd_ratio_p90"] = (
                    float(q) for q in np.quantile(pooled, [0.1, 0.5, 0.9])
                )
            out[region][method] = row
    d = [c["diag"] for c in cases]
    out["sampler"] = {
        "wall_s_mean": float(np.mean([x["wall_s"] for x in d])),
        "divergences_total": int(sum(x["divergences"] for x in d)),
        "steps_per_draw_mean": float(np.mean([x["steps_per_draw"] for x in d])),
        "max_rhat_z": float(max(x["max_rhat_z"] for x in d)),
    }
    return out


def recon_scores(prior, grf, x_train, x_recon, d: int) -> dict:
    """Reconstruction RMSE (K, unweighted over pixels) of held-out GRF draws: the VAE,
    PCA-``d`` of the training draws, and the true covariance's top ``d`` eigenvectors."""

    def rmse(a, b):
        return float(np.sqrt(np.mean(np.square(a - b))))

    flat = x_recon.reshape(len(x_recon), -1)
    a = x_train.reshape(len(x_train), -1).astype(np.float64)
    mu = a.mean(0)
    _, _, vt = np.linalg.svd(a - mu, full_matrices=False)
    pca = (flat - mu) @ vt[:d].T @ vt[:d] + mu
    w, v = np.linalg.eigh(grf.cov)
    v = v[:, ::-1][:, :d]
    eig = flat @ v @ v.T
    tail = np.sort(w)[::-1][d:]
    cum = np.cumsum(np.sort(w)[::-1]) / w.sum()
    return {
        "vae_K": rmse(reconstruct(prior, x_recon), x_recon),
        "pca_train_K": rmse(pca.reshape(x_recon.shape), x_recon),
        "true_eig_K": rmse(eig.reshape(x_recon.shape), x_recon),
        "true_eig_expected_K": float(np.sqrt(tail.sum() / w.size)),
        "field_rms_K": float(np.sqrt(np.mean(np.square(x_recon)))),
        "latent_dim": d,
        "variance_explained_true_eig": float(cum[d - 1]),
        "modes_for_variance": {str(p): int(np.searchsorted(cum, p) + 1) for p in (0.9, 0.95, 0.99)},
    }


def prior_sd_ratio(prior, grf, seed: int) -> dict:
    """Pixel SD of the learned prior (``decode(z)``, and with ``C``) over the GRF's SD."""
    import jax

    z = jax.random.normal(jax.random.key(seed), (4000, prior.latent_dim))
    s = np.concatenate([np.asarray(prior.decode(z[i : i + 500])) for i in range(0, 4000, 500)])
    var = s.var(axis=0)
    true = np.sqrt(np.diag(grf.cov)).reshape(grf.grid.shape)
    return {
        "decoder_only": float(np.mean(np.sqrt(var) / true)),
        "with_repr_error": float(np.mean(np.sqrt(var + prior.repr_error.variance) / true)),
    }


# --------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------

LABELS = {
    "bayesda": "bayesda NUTS",
    "exact": "exact GRF posterior",
    "learned-linear": "learned prior, linearised",
}


def _fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def _label(method: str) -> str:
    if method.startswith("oracle-d"):
        return f"oracle PPCA-{method[8:]} + diag"
    return LABELS[method]


def _row(net, method, row) -> str:
    vs = "0" if method == "exact" else _fmt(row["rmse_vs_exact"], 3)
    if method == "exact":
        ratio = "1"
    else:
        ratio = (
            f"{row['sd_ratio']:.2f} [{row['sd_ratio_p10']:.2f}, "
            f"{row['sd_ratio_p50']:.2f}, {row['sd_ratio_p90']:.2f}]"
        )
    return (
        f"| uniform-{net} | {_label(method)} | {vs} | {ratio} | "
        f"{row['cov90']:.3f} +- {_fmt(row['cov90_se'], 3)} | "
        f"{row['crps']:.3f} +- {_fmt(row['crps_se'], 3)} | {row['rmse']:.3f} |"
    )


HEADER = [
    "| network | method | mean RMSE vs exact (K) | SD ratio mean [p10, p50, p90] | "
    "90% cov. | CRPS (K) | RMSE vs truth (K) |",
    "|---|---|---|---|---|---|---|",
]


def markdown(result: dict) -> str:
    cfg = result["config"]
    main = ("bayesda", "exact", "learned-linear", f"oracle-d{cfg['latent_dim']}")
    lines = [
        "# Synthetic check: bayesda against the exact Gaussian posterior",
        "",
        f"Generated by `{result['command']}` on {result['created_at']} "
        f"({result['machine']}), total wall time {result['wall_s']:.0f} s.",
        "",
        f"- truth: `GaussianRandomField` on the NCEP grid {result['grid_shape']}, "
        f"{cfg['kind']}, length scale {cfg['length_scale_km']:.0f} km, SD {cfg['sd']} K over "
        f"sea, {cfg['sd'] * cfg['land_sea_ratio']} K over land; {cfg['n_train']} training, "
        f"{cfg['n_val']} validation, {cfg['n_test']} test fields (seed {cfg['seed']})",
        f"- prior: VAE latent {cfg['latent_dim']}, channels {cfg['channels']}, trained with "
        f"`bayesda.prior.train.fit` ({result['training']['epochs_run']} epochs, best epoch "
        f"{result['training']['best_epoch']}, {result['training']['wall_time_s']} s); "
        f"representation error {cfg.get('repr_error', 'rank ' + str(cfg.get('repr_rank')))} "
        "from the validation residuals "
        f"(mean SD {result['training']['repr_error_mean_sd_K']} K)",
        f"- observations: uniform, sigma {cfg['sigma']} K, new locations and noise per test "
        f"field; NUTS {cfg['chains']} chains x ({cfg['warmup']} warmup + {cfg['draws']} "
        "draws), `field` samples (decoder + conditioned representation error)",
        "- scores: cos(lat)-weighted over unobserved grid points (no observation nearest) and "
        "all points, mean over test fields (RMSEs: root mean square over fields) +- standard "
        "error; SD ratio = posterior SD / exact posterior SD per pixel, mean and "
        "10/50/90% quantiles over all pixels of all fields",
        "",
        "## Reconstruction of held-out GRF draws",
        "",
    ]
    r = result["reconstruction"]
    lines += [
        "| | RMSE (K) |",
        "|---|---|",
        f"| VAE, latent {r['latent_dim']} | {r['vae_K']:.4f} |",
        f"| PCA-{r['latent_dim']} of the training draws | {r['pca_train_K']:.4f} |",
        f"| top {r['latent_dim']} eigenvectors of the true covariance | {r['true_eig_K']:.4f} "
        f"(expected {r['true_eig_expected_K']:.4f}) |",
        f"| field RMS (no reconstruction) | {r['field_rms_K']:.4f} |",
        "",
        f"The top {r['latent_dim']} true modes hold {100 * r['variance_explained_true_eig']:.1f}%"
        f" of the variance; 90/95/99% need {r['modes_for_variance']['0.9']}/"
        f"{r['modes_for_variance']['0.95']}/{r['modes_for_variance']['0.99']} modes. "
        "Prior-sample SD / GRF SD, mean over pixels: "
        f"{result['prior_sd_ratio']['decoder_only']:.3f} (decoder), "
        f"{result['prior_sd_ratio']['with_repr_error']:.3f} (with representation "
        "error).",
        "",
        f"Reference check: the exact posterior's 90% coverage over "
        f"{result['exact_check']['n_fields']} extra draws ({result['exact_check']['n_obs']} obs) "
        f"is {result['exact_check']['cov90']:.3f}.",
        "",
    ]
    for region in REGIONS:
        lines += [f"## {region.capitalize()} grid points", "", *HEADER]
        for net, s in result["summary"].items():
            lines += [_row(net, m, s[region][m]) for m in main]
        lines.append("")
    lines += [
        "## Why: the best prior of the same structure, by latent size (unobserved points)",
        "",
        "Exact posteriors under `oracle PPCA-K + diag`: the true covariance's top K eigenpairs "
        "plus the rest of each pixel's variance as a diagonal representation error, i.e. "
        "what a perfectly trained VAE of latent size K with the shipped rank-0 "
        "representation error could reach (same test fields and observations).",
        "",
        *HEADER,
    ]
    for net, s in result["summary"].items():
        oracles = sorted(
            (m for m in s["unobserved"] if m.startswith("oracle-d")), key=lambda m: int(m[8:])
        )
        lines += [_row(net, m, s["unobserved"][m]) for m in oracles]
    lines.append("")
    lines += [
        "## Sampler",
        "",
        "| network | s / field | divergences | leapfrog steps / draw | max R-hat (z) |",
        "|---|---|---|---|---|",
    ]
    for net, s in result["summary"].items():
        d = s["sampler"]
        lines.append(
            f"| uniform-{net} | {d['wall_s_mean']:.1f} | {d['divergences_total']} | "
            f"{d['steps_per_draw_mean']:.1f} | {d['max_rhat_z']:.3f} |"
        )
    lines.append("")
    return "\n".join(lines)


def draw_coastlines(ax, lat, lon) -> None:
    """Coastlines over the box of ``lat``, ``lon`` (nothing without a land mask)."""
    from matplotlib.collections import LineCollection

    try:
        from bayesda.geo.landmask import coastlines

        lines = coastlines(
            (float(lat.min()), float(lat.max())), (float(lon.min()), float(lon.max()))
        )
    except (ImportError, ValueError):  # no land mask available: maps without coastlines
        return
    ax.add_collection(LineCollection(lines, colors="0.15", linewidths=0.6, zorder=2))


def figure(maps: dict, path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, lon = maps["truth"]["lat"].values, maps["truth"]["lon"].values
    vmax = float(np.abs(maps["truth"]).max())
    smax = float(max(maps["exact_sd"].max(), maps["bayesda_sd"].max()))
    ratio = maps["bayesda_sd"] / maps["exact_sd"]
    panels = [
        ("truth and observations", maps["truth"], "RdBu_r", -vmax, vmax, "K"),
        ("exact posterior mean", maps["exact_mean"], "RdBu_r", -vmax, vmax, "K"),
        ("bayesda posterior mean", maps["bayesda_mean"], "RdBu_r", -vmax, vmax, "K"),
        ("bayesda SD / exact SD", ratio, "PuOr_r", 0.5, 1.5, "1"),
        ("exact posterior SD", maps["exact_sd"], "viridis", 0.0, smax, "K"),
        ("bayesda posterior SD", maps["bayesda_sd"], "viridis", 0.0, smax, "K"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 6.8), constrained_layout=True)
    obs = maps["obs"]
    for ax, (name, v, cmap, lo, hi, unit) in zip(axes.ravel(), panels, strict=True):
        mesh = ax.pcolormesh(lon, lat, v.values, cmap=cmap, vmin=lo, vmax=hi, shading="nearest")
        draw_coastlines(ax, lat, lon)
        ax.scatter(obs["lon"], obs["lat"], s=6, c="k", marker=".")
        ax.set_title(name)
        ax.set_aspect(1.0 / np.cos(np.deg2rad(lat.mean())))
        fig.colorbar(mesh, ax=ax, shrink=0.8, label=unit)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, ~1-2 min")
    types = {"int": int, "float": float, "str": str}
    for f in dataclasses.fields(CheckConfig):
        if f.type in types:
            p.add_argument("--" + f.name.replace("_", "-"), type=types[f.type], default=None)
    p.add_argument("--networks", default=None, help="comma-separated numbers of observations")
    p.add_argument(
        "--oracle-dims",
        default="32,64,100,200,400",
        help="latent sizes of the oracle PPCA + diagonal priors (Gaussian, exact)",
    )
    p.add_argument("--tag", default=None, help="suffix of the output names")
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("synthetic_check"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_from_args(args) -> tuple[CheckConfig, str]:
    """The check's settings (``--quick`` sizes, then single overrides) and the output stem."""
    over = dict(QUICK) if args.quick else {}
    for f in dataclasses.fields(CheckConfig):
        v = getattr(args, f.name, None)
        if v is not None and f.name != "networks":
            over[f.name] = v
    if args.networks:
        over["networks"] = tuple(int(n) for n in args.networks.split(","))
    tag = args.tag or ("quick" if args.quick else "")
    return CheckConfig(**over), "synthetic_check" + (f"_{tag}" if tag else "")


def run(
    cfg: CheckConfig, oracle_dims: list[int], n_check: int, progress: bool
) -> tuple[dict, dict]:
    """Draw the GRF fields, train the prior, score every network and test field.

    Returns:
      ``(result, example)``: the result record (config, training, reconstruction, prior SD
      ratio, the exact posterior's own coverage check over ``n_check`` fields, summaries per
      network, every case) and the maps of the first field at the largest network.
    """
    from bayesda.sim.grf import GaussianRandomField

    t_start = _time.perf_counter()
    grid = ncep_grid()
    grf = GaussianRandomField(
        grid,
        length_scale_km=cfg.length_scale_km,
        sd=cfg.sd,
        land_sea_ratio=cfg.land_sea_ratio,
        kind=cfg.kind,
    )
    rng = np.random.default_rng(cfg.seed)
    x_train = grf.sample(rng, cfg.n_train).astype(np.float32)
    x_val = grf.sample(rng, cfg.n_val).astype(np.float32)
    x_test = grf.sample(rng, cfg.n_test)
    x_recon = grf.sample(rng, cfg.n_recon)
    print(
        f"GRF {grf!r}: {cfg.n_train} train / {cfg.n_val} val / {cfg.n_test} test fields "
        f"({_time.perf_counter() - t_start:.0f} s)",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        prior, training = train_prior(x_train, x_val, grid, cfg, pathlib.Path(tmp), progress)
    print(
        f"VAE: {training['epochs_run']} epochs (best {training['best_epoch']}) in "
        f"{training['wall_time_s']} s, val recon RMSE {training['val_recon_rmse_K']} K, "
        f"repr error mean SD {training['repr_error_mean_sd_K']} K",
        flush=True,
    )
    recon = recon_scores(prior, grf, x_train, x_recon, cfg.latent_dim)
    sd_ratio = prior_sd_ratio(prior, grf, cfg.seed + 7)
    exact_check = {
        "n_fields": n_check,
        "n_obs": max(cfg.networks),
        "cov90": exact_coverage_check(
            grf, n_check, max(cfg.networks), cfg.sigma, cfg.seed + 10_000
        ),
    }
    print(
        f"reconstruction RMSE: VAE {recon['vae_K']:.4f} K, PCA {recon['pca_train_K']:.4f} K, "
        f"true eigen {recon['true_eig_K']:.4f} K; exact-posterior coverage check "
        f"{exact_check['cov90']:.3f}",
        flush=True,
    )

    dims = sorted({cfg.latent_dim, *oracle_dims})
    refs = {"exact": (np.zeros(grid.size), grf.cov), "learned-linear": linearised_prior(prior)}
    refs.update(
        {f"oracle-d{d}": (np.zeros(grid.size), P) for d, P in oracle_rank_d(grf.cov, dims).items()}
    )
    summary, example, per_case = {}, None, []
    for n_obs in cfg.networks:
        cases = []
        for i, truth in enumerate(x_test):
            seed = cfg.seed + 1000 * n_obs + i
            c = run_case(prior, grid, truth, n_obs, refs, cfg, seed)
            cases.append(c)
            s = c["scores"]["unobserved"]
            print(
                f"  n={n_obs:4d} field {i:2d}: wall {c['diag']['wall_s']:5.1f} s, "
                f"mean vs exact {s['bayesda']['rmse_vs_exact']:.3f} K, SD ratio "
                f"{s['bayesda']['sd_ratio']:.2f}, cov90 bayesda {s['bayesda']['cov90']:.2f} "
                f"exact {s['exact']['cov90']:.2f}",
                flush=True,
            )
            per_case.append(
                {"n_obs": n_obs, "field": i, "seed": seed, **c["diag"], "scores": c["scores"]}
            )
        summary[n_obs] = summarise(cases)
        if n_obs == max(cfg.networks):
            example = cases[0]["maps"]

    result = {
        "config": dataclasses.asdict(cfg),
        "oracle_dims": dims,
        "grid_shape": list(grid.shape),
        "training": training,
        "reconstruction": recon,
        "prior_sd_ratio": sd_ratio,
        "exact_check": exact_check,
        "summary": summary,
        "cases": per_case,
    }
    return result, example


def write(result: dict, example: dict, cfg: CheckConfig, out: pathlib.Path, stem: str) -> str:
    """``<stem>.md``, ``<stem>.json`` and the figure ``<stem>.png`` in ``out``; the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(result)
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps(_jsonable(result), indent=1))
    figure(
        example,
        out / f"{stem}.png",
        f"GRF test field 0, {max(cfg.networks)} uniform obs (sigma {cfg.sigma} K): "
        "exact posterior vs bayesda",
    )
    return md


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg, stem = config_from_args(args)
    t_start = _time.perf_counter()
    oracle_dims = [int(d) for d in args.oracle_dims.split(",")]
    n_check = 10 if args.quick else 100
    result, example = run(cfg, oracle_dims, n_check, progress=not args.no_progress)
    result = {
        "command": command(__spec__.name, argv),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, "
        f"bayesda {bayesda.__version__}",
        **result,
    }
    result["wall_s"] = _time.perf_counter() - t_start
    print(write(result, example, cfg, args.out_dir, stem))


if __name__ == "__main__":
    bayesda.set_host_device_count()  # one CPU device per chain, before any JAX computation
    bayesda.enable_compilation_cache()
    main()
