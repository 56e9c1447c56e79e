"""Winds only -> surface pressure on the simulated weather (issue 10, "winds_to_pressure").

The lowest-level winds ``ua``, ``va`` are observed at 50 station-like points (fixed network,
fresh N(0, sigma^2) noise per time); the surface-pressure field ``ps`` is never observed and
is inferred through the cross-variable covariance of a *joint* prior over (tas, ps, ua, va).
Scored at ``n_times`` held-out times with :func:`bayesda.verify.metrics.verify` (the ps field; the
"unobserved" region excludes the grid points nearest to a wind station).

Methods (all exact Gaussian posteriors, 400 exact draws):

* ``laplace`` -- the joint linear prior ``x = W z + e`` over the four variables, each
  standardised by its domain-wide SD and stacked as one long vector (8,192 values):
  ``W`` = the leading ``d`` principal components of the training fields (the VAE recipe's
  PPCA start; item 1 and the GPU sweep found that every trained VAE ties that start on this
  simulator, so no nonlinear joint decoder was trained), ``z ~ N(0, I_d)``, ``e`` a
  per-pixel, per-variable residual variance (diagonal representation error). The decoder is
  linear, so MAP + Laplace in ``z`` is the exact posterior; it is computed in closed form.
* ``oi`` -- optimal interpolation with the joint sample covariance of the same training
  fields, shrunk 2% to its diagonal (as :class:`bayesda.verify.baselines.BackgroundCovariance`).
* ``climatology`` -- anomaly 0 with the per-pixel training SD of ps.

Usage::

    python -m analysis.winds_pressure.osse_winds_pressure --max-snapshots 6000 --n-times 60

Writes analysis/winds_pressure/results/osse_winds_pressure.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import time as _time
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.linalg as sla

import analysis.common.skill as bs
from analysis.common.io import atomic_write, command, results_dir
from analysis.common.osse import load

__all__ = [
    "JointData",
    "pca_basis",
    "joint_linear_prior",
    "laplace_posterior",
    "oi_posterior",
    "main",
]

VARS = ("tas", "ps", "ua", "va")
TARGET = "ps"
OBSERVED = ("ua", "va")


class JointData:
    """Train / test anomalies of the four variables, ``[n, 4, nlat, nlon]`` float64, and the
    domain-wide SD of each (RMS of the per-pixel training SDs)."""

    def __init__(self, max_snapshots: int | None, store=None):
        parts = [load(v, store=store, max_snapshots=max_snapshots) for v in VARS]
        self.lat, self.lon = parts[0].lat, parts[0].lon
        self.times_test = parts[0].times_test
        self.train = np.stack([p.train for p in parts], axis=1).astype(np.float64)
        self.test = np.stack([p.test for p in parts], axis=1).astype(np.float64)
        self.scale = np.sqrt((self.train.var(axis=0, ddof=1)).mean(axis=(1, 2)))  # [4]


def pca_basis(train_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Singular values ``s``, right singular vectors ``vt`` of the centred standardised
    training vectors ``[n, p]`` divided by ``sqrt(n - 1)``, and their per-pixel variance."""
    n = train_std.shape[0]
    xc = train_std - train_std.mean(axis=0)
    _, s, vt = np.linalg.svd(xc / np.sqrt(n - 1), full_matrices=False)
    return s, vt, (xc**2).sum(axis=0) / (n - 1)


def joint_linear_prior(s, vt, var, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``W`` ``[p, d]`` (the leading ``d`` PCs scaled by their SDs) and the per-pixel
    residual variance ``[p]``, so that ``W W^T + diag(resid)`` keeps every pixel's training
    variance exactly (a linear prior with a diagonal representation error)."""
    W = (vt[:d] * s[:d, None]).T
    return W, np.maximum(var - (W**2).sum(axis=1), 1e-6)


def laplace_posterior(W, resid, H, r_obs, W_t, resid_t):
    """Posterior of the target block of ``x = W z + e`` given ``y = H x + noise``.

    Args:
      W: ``[p, d]``; resid: ``[p]`` diagonal residual variance; H: ``[m, p]`` observation
        operator; r_obs: ``[m]`` observation-error variances; W_t, resid_t: the target
        variable's rows of ``W`` and ``resid``.

    Returns:
      ``(gain, cov)``: the target's posterior mean is ``gain @ y`` and its covariance ``cov``
      (the residual ``e`` of the target is independent of the observed variables' residual).
    """
    A = H @ W  # [m, d]
    S = (H * resid) @ H.T + np.diag(r_obs)  # residual + noise covariance of y given z
    Si_A = np.linalg.solve(S, A)
    P = np.linalg.inv(np.eye(W.shape[1]) + A.T @ Si_A)  # posterior covariance of z
    gain_z = P @ Si_A.T  # [d, m]: posterior mean of z = gain_z @ y
    cov = W_t @ P @ W_t.T + np.diag(resid_t)
    return W_t @ gain_z, cov


def oi_posterior(X, H, r_obs, target: slice, shrinkage: float):
    """OI with the (shrunk) joint sample covariance ``B`` of ``X`` ``[n, p]``: the target
    block's gain ``[p_t, m]`` and posterior covariance ``[p_t, p_t]``."""
    n = X.shape[0]
    Xc = X - X.mean(axis=0)
    var = (Xc**2).sum(axis=0) / (n - 1)
    XH = Xc @ H.T  # [n, m]
    HBH = (1 - shrinkage) * XH.T @ XH / (n - 1) + shrinkage * (H * var) @ H.T
    Xt = Xc[:, target]
    C = (1 - shrinkage) * Xt.T @ XH / (n - 1)  # [p_t, m]; the diagonal target adds no cross terms
    C += shrinkage * (H[:, target] * var[target]).T
    Btt = (1 - shrinkage) * Xt.T @ Xt / (n - 1) + shrinkage * np.diag(var[target])
    gain = np.linalg.solve(HBH + np.diag(r_obs), C.T).T
    return gain, Btt - gain @ C.T


def _sampler(cov, n_samples, seed):
    L = sla.cholesky(cov + 1e-9 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0]), lower=True)
    rng = np.random.default_rng(seed)

    def draw(mean):
        eps = rng.standard_normal((n_samples, cov.shape[0]))
        return mean + eps @ L.T

    return draw, np.sqrt(np.diag(cov))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None)
    p.add_argument("--max-snapshots", type=int, default=6000)
    p.add_argument("--n-times", type=int, default=60)
    p.add_argument("--n-obs", type=int, default=50)
    p.add_argument("--network", default="station", choices=bs.NETWORK_KINDS)
    p.add_argument("--sigma", type=float, default=1.0, help="wind observation error SD, m/s")
    p.add_argument("--dims", default="32,64,256", help="latent sizes of the joint linear prior")
    p.add_argument("--n-samples", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("winds_pressure"))
    return p.parse_args(argv)


class Problem(NamedTuple):
    """The fixed network's observation operator over the four standardised variables and the
    target (ps) slice of the state."""

    grid: object
    lat: np.ndarray
    lon: np.ndarray
    H: np.ndarray  # [2 n_obs, nv npix]
    target: slice
    r_obs: np.ndarray  # [2 n_obs] observation error variances


def problem(data, network: str, n_obs: int, sigma: float, seed: int) -> Problem:
    """The station-like network (fixed locations) observing ``ua`` and ``va``."""
    from bayesda.geo.grid import Grid
    from bayesda.obs.operator import as_matrix, bilinear_stencil

    nv, nlat, nlon = data.train.shape[1:]
    npix = nlat * nlon
    grid = Grid(lat=data.lat, lon=data.lon)
    lat, lon = bs.network_locations(grid, network, n_obs, seed=seed)
    H1 = as_matrix(bilinear_stencil(grid, lat, lon), npix)  # [n_obs, npix]
    H = np.zeros((2 * n_obs, nv * npix))
    for k, v in enumerate(OBSERVED):
        j = VARS.index(v)
        H[k * n_obs : (k + 1) * n_obs, j * npix : (j + 1) * npix] = H1
    jt = VARS.index(TARGET)
    target = slice(jt * npix, (jt + 1) * npix)
    return Problem(grid, lat, lon, H, target, np.full(H.shape[0], sigma**2))


def posteriors(data, pb: Problem, dims: list[int]) -> dict:
    """Closed-form gains and covariances of each method (the network is fixed, so once for
    all times): OI, the joint linear prior at each latent size, climatology."""
    from bayesda.verify import baselines

    npix = data.train.shape[2] * data.train.shape[3]
    jt = VARS.index(TARGET)
    H, target, r_obs = pb.H, pb.target, pb.r_obs
    scale_vec = np.repeat(data.scale, npix)  # physical = standardised * scale
    X = data.train.reshape(data.train.shape[0], -1)
    methods = {}
    gain, cov = oi_posterior(X, H, r_obs, target, baselines.DEFAULT_SHRINKAGE)
    methods["oi"] = (gain, cov)
    Xs = X / scale_vec
    obs_scale = H @ scale_vec  # each obs row is one variable, so its scale
    basis = pca_basis(Xs)
    del Xs
    for d in dims:
        W, resid = joint_linear_prior(*basis, d)
        g, c = laplace_posterior(W, resid, H, r_obs / obs_scale**2, W[target], resid[target])
        st = data.scale[jt]
        methods[f"laplace-d{d}"] = ((g / obs_scale[None, :]) * st, c * st**2)
    clim_sd = np.sqrt(data.train[:, jt].reshape(-1, npix).var(axis=0, ddof=1))
    methods["climatology"] = (np.zeros((npix, H.shape[0])), np.diag(clim_sd**2))
    return methods


def samplers_of(methods: dict, n_samples: int, seed: int) -> dict:
    """Each method's exact posterior sampler (:func:`_sampler` of its covariance)."""
    return {m: _sampler(c, n_samples, seed + k) for k, (m, (_, c)) in enumerate(methods.items())}


def score_times(data, pb: Problem, methods: dict, samplers: dict, args) -> tuple[dict, np.ndarray]:
    """Every method at every held-out time: ``({method: [scores per time]}, time indices)``."""
    from bayesda.verify import baselines, metrics

    nlat, nlon = data.train.shape[2:]
    H, target = pb.H, pb.target
    tidx = np.unique(np.round(np.linspace(0, data.test.shape[0] - 1, args.n_times)).astype(int))
    rows = {m: [] for m in methods}
    for i, ti in enumerate(tidx):
        truth_all = data.test[ti].reshape(-1)
        rng = np.random.default_rng(args.seed * 1_000_003 + i)
        y = H @ truth_all + args.sigma * rng.standard_normal(H.shape[0])
        truth = pb.grid.template(TARGET).copy(data=truth_all[target].reshape(nlat, nlon))
        obs = pd.DataFrame({"lat": pb.lat, "lon": pb.lon, "value": y[: args.n_obs]})
        for m, (g, _) in methods.items():
            draw, sd = samplers[m]
            mean = g @ y
            post = baselines.ensemble_dataset(
                draw(mean).reshape(1, args.n_samples, nlat, nlon),
                pb.grid,
                mean=mean.reshape(nlat, nlon),
                sd=sd.reshape(nlat, nlon),
                method=m,
            )
            v = metrics.verify(post, truth, obs)
            rows[m].append(
                {
                    (str(r), k): float(v[k].sel(region=r))
                    for r in v["region"].values
                    for k in ("rmse", "crps", "coverage_90", "spread", "spread_skill")
                }
            )
    return rows, tidx


def summarise(rows: dict, n_times: int, network: str) -> list[dict]:
    """Per method and region: RMSE (root mean square over times), CRPS and its standard
    error, coverage, and the pooled spread/skill ratio."""
    out = []
    for m, per_time in rows.items():
        for region in ("unobserved", "all"):
            get = {k: np.array([r[k] for r in per_time]) for k in per_time[0] if k[0] == region}
            rmse = float(np.sqrt(np.mean(get[(region, "rmse")] ** 2)))
            spread = get[(region, "spread")]
            skill = spread / get[(region, "spread_skill")]
            out.append(
                {
                    "experiment": "winds_to_pressure",
                    "network": network,
                    "method": m.split("-")[0],
                    "model": m,
                    "region": region,
                    "rmse": round(rmse, 4),
                    "crps": round(float(get[(region, "crps")].mean()), 4),
                    "crps_se": round(
                        float(get[(region, "crps")].std(ddof=1) / np.sqrt(n_times)), 4
                    ),
                    "coverage_90": round(float(get[(region, "coverage_90")].mean()), 4),
                    "spread_skill": round(
                        float(np.sqrt((spread**2).mean() / (skill**2).mean())), 4
                    ),
                    "n_times": n_times,
                }
            )
    return out


def markdown(result: dict, args) -> str:
    """The table of ps scores per region and method."""
    meta, out = result["meta"], result["rows"]
    cmd = meta["command"]
    lines = [
        "# Winds only -> surface pressure (joint prior), held-out Held-Suarez fields",
        "",
        f"Generated by `{cmd}` on {meta['created_at']} (load {meta['load']:.1f}), "
        f"{meta['wall_s']} s. ua, va observed at {args.n_obs} {args.network}-like points, "
        f"sigma {args.sigma} m/s; ps never observed. Joint linear prior `laplace-dD`: leading D "
        "PCs of the four standardised variables + per-pixel residual variance (exact posterior). "
        "OI: joint sample covariance, 2% shrinkage. 400 exact draws each. Scores of ps, hPa.",
        "",
        "| region | method | RMSE | CRPS | 90% coverage | spread/skill | times |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in out:
        lines.append(
            f"| {r['region']} | {r['model']} | {r['rmse']:.3f} | {r['crps']:.3f} +- "
            f"{r['crps_se']:.3f} | {r['coverage_90']:.3f} | {r['spread_skill']:.3f} | "
            f"{r['n_times']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    t0 = _time.perf_counter()
    data = JointData(args.max_snapshots, args.store)
    pb = problem(data, args.network, args.n_obs, args.sigma, args.seed)
    methods = posteriors(data, pb, [int(d) for d in args.dims.split(",")])
    samplers = samplers_of(methods, args.n_samples, args.seed)
    t_setup = _time.perf_counter() - t0
    rows, tidx = score_times(data, pb, methods, samplers, args)
    out = summarise(rows, len(tidx), f"{args.network}-{args.n_obs}")
    meta = {
        "command": command(__spec__.name, argv),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load": os.getloadavg()[0],
        "wall_s": round(_time.perf_counter() - t0, 1),
        "setup_s": round(t_setup, 1),
        "n_train": int(data.train.shape[0]),
        "scales": dict(zip(VARS, np.round(data.scale, 4).tolist(), strict=True)),
        "sigma_wind": args.sigma,
        "target": TARGET,
        "observed": list(OBSERVED),
    }
    result = {"meta": meta, "rows": out}
    path = args.out_dir / "osse_winds_pressure.json"
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(json.dumps(result, indent=1)))
    md = markdown(result, args)
    atomic_write(
        args.out_dir / "osse_winds_pressure.md", lambda tmp: pathlib.Path(tmp).write_text(md)
    )
    print(md, end="", flush=True)
    return result


if __name__ == "__main__":
    main()
