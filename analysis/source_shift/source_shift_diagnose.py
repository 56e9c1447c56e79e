"""Why one error scale under-covers after a change of source (issue 13, part 5).

For the ``finer`` source of :mod:`analysis.source_shift.source_shift` (NCEP truth plus a Matern-3/2
field, 250 km, SD 1 K over sea and 2 K over land) and without a shift, in the closed-form
linearised posterior at unobserved grid points, means over held-out times:

* ``oracle``: the prior covariance that generated the shifted truth, ``J J^T + C + C_add``
  (can a Gaussian error model with the right covariance cover? what remains is the
  decoder's own miss);
* ``C x s``: the representation error scaled by fixed ``s`` with ``sigma`` as stated (how
  large must the scale be at grid points?);
* the fits of :mod:`bayesda.preflight.calibrate` by the 5-fold withheld log predictive density, in
  error-model families: ``one`` (``sigma`` and ``C`` share a scale: ``calibrate="single"``),
  ``repr`` (``C`` only, ``sigma`` as stated), ``repr+obs`` (both, separately:
  ``calibrate="auto"``), ``low+diag`` (the correlated low-rank part and the per-pixel
  diagonal part of ``C`` separately, ``sigma`` as stated);
* split by land and sea, and the mean error (bias).

Output: ``analysis/source_shift/results/source_shift_diagnosis.{json,md}``.

Usage: python -m analysis.source_shift.source_shift_diagnose [--n-times 12]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time as _time
from typing import NamedTuple

import numpy as np
import scipy.optimize
from scipy import stats

import bayesda  # noqa: F401
from analysis.common.io import SHIPPED_MODEL, command, results_dir, write_text
from analysis.common.linear import LinearisedPosterior, shifted_truth
from bayesda.data.datasets import load_dataset
from bayesda.data.split import block_split
from bayesda.geo.landmask import land_fraction
from bayesda.obs.operator import as_matrix, bilinear_stencil
from bayesda.obs.table import pseudo_obs
from bayesda.preflight.calibrate import holdout_folds
from bayesda.preflight.qc import linearise, observed_jacobian
from bayesda.prior.checkpoint import load_model
from bayesda.sim.grf import GaussianRandomField
from bayesda.verify import metrics

# (low-rank scale, diagonal scale, obs scale) from the free parameters
FAMILIES = {
    "one": (1, lambda p: (p[0], p[0], p[0])),
    "repr": (1, lambda p: (p[0], p[0], 1.0)),
    "repr+obs": (2, lambda p: (p[0], p[0], p[1])),
    "low+diag": (2, lambda p: (p[0], p[1], 1.0)),
}


def _cv_lpd(y, lin, parts, fold, s):
    K = lin.G @ lin.G.T + sum(si**2 * pi for si, pi in zip(s, parts, strict=True))
    r = y - lin.m
    total = 0.0
    for f in np.unique(fold):
        te, tr = fold == f, fold != f
        cho = np.linalg.cholesky(K[np.ix_(tr, tr)])
        a = np.linalg.solve(cho, K[np.ix_(tr, te)])
        b = np.linalg.solve(cho, r[tr])
        var = np.diag(K[np.ix_(te, te)]) - np.sum(a**2, 0)
        total += stats.norm.logpdf(r[te], a.T @ b, np.sqrt(var)).sum()
    return total


def _objective(log_s, fn, y, lin, parts, fold):
    return -_cv_lpd(y, lin, parts, fold, fn(np.exp(log_s)))


class Setup(NamedTuple):
    """What every case needs from the shipped prior: its linearised posterior, the low-rank
    and diagonal parts of ``C``, the land mask, the finer source's field and the Jacobian."""

    lin: LinearisedPosterior
    c_low: np.ndarray
    c_diag: np.ndarray
    land: np.ndarray
    grf: GaussianRandomField
    jac: object


def setup(prior) -> Setup:
    """The :class:`Setup` of ``prior``."""
    lin = LinearisedPosterior(prior)
    re = prior.repr_error
    F = np.asarray(re.factor, np.float64).reshape(re.rank, lin.b.size)
    return Setup(
        lin=lin,
        c_low=F.T @ F,
        c_diag=np.asarray(re.diag_var, np.float64).ravel(),
        land=land_fraction(prior.grid).ravel() > 0.5,
        grf=GaussianRandomField(prior.grid, length_scale_km=250.0, sd=1.0, land_sea_ratio=2.0),
        jac=observed_jacobian(prior),
    )


def score(rows: dict, key: tuple, S: Setup, P, obs_var, H, y, t, mask) -> None:
    """Append the closed-form posterior's scores with prior covariance ``P`` to ``rows``, per
    region (all, land, sea) of the unobserved ``mask``."""
    lin, land = S.lin, S.land
    PHt = P @ H.T
    w = np.linalg.solve(H @ PHt + np.diag(obs_var), np.c_[y - H @ lin.b, PHt.T])
    m = lin.b + PHt @ w[:, 0]
    sd = np.sqrt(np.maximum(np.diag(P) - np.sum(PHt * w[:, 1:].T, 1), 0.0))
    e = m - t
    inside = np.abs(e / sd) <= stats.norm.ppf(0.95)
    for region, sel in (("all", mask), ("land", mask & land), ("sea", mask & ~land)):
        rows.setdefault((*key, region), []).append(
            {
                "coverage_90": float(inside[sel].mean()),
                "rmse": float(np.sqrt(np.mean(e[sel] ** 2))),
                "bias": float(e[sel].mean()),
                "spread": float(np.sqrt(np.mean(sd[sel] ** 2))),
            }
        )


def run_case(rows: dict, prior, S: Setup, base, case: int) -> None:
    """One held-out time: both shifts, both networks, every error model, into ``rows``."""
    lin = S.lin
    npix = lin.b.size
    for shift in ("none", "finer"):
        truth = shifted_truth(base, shift, 1000 + case, S.grf)
        t = truth.values.ravel().astype(np.float64)
        for n in (50, 200):
            obs = pseudo_obs(truth, n, network="station", sigma=0.5, seed=case)
            mask = ~metrics.observed_mask(prior.grid, obs).values.ravel()
            st = bilinear_stencil(prior.grid, obs["lat"].to_numpy(), obs["lon"].to_numpy())
            H = as_matrix(st, npix)
            y = obs["value"].to_numpy(np.float64)
            s2 = obs["sigma"].to_numpy(np.float64) ** 2
            parts = (H @ S.c_low @ H.T, (H * S.c_diag) @ H.T, np.diag(s2))
            lin0 = linearise(prior, st, jac_fn=S.jac)
            z1 = lin0.G.T @ np.linalg.solve(lin0.G @ lin0.G.T + sum(parts), y - lin0.m)
            lin1 = linearise(prior, st, z1, S.jac)
            fold = holdout_folds(n, 5, case)
            net = f"station-{n}"
            extra = S.grf.cov if shift == "finer" else 0.0
            case_data = (s2, H, y, t, mask)
            score(rows, (shift, net, "oracle"), S, lin.JJt + lin.C + extra, *case_data)
            for s in (1.0, 1.4, 1.7, 2.0):
                score(rows, (shift, net, f"C x {s:g}"), S, lin.JJt + s**2 * lin.C, *case_data)
            for fam, (npar, fn) in FAMILIES.items():
                res = scipy.optimize.minimize(
                    _objective,
                    np.zeros(npar),
                    args=(fn, y, lin1, parts, fold),
                    method="L-BFGS-B",
                    bounds=[(np.log(0.1), np.log(10.0))] * npar,
                )
                lo, dg, ob = fn(np.exp(res.x))
                P = lin.JJt + lo**2 * S.c_low + dg**2 * np.diag(S.c_diag)
                score(rows, (shift, net, f"fit {fam}"), S, P, ob**2 * s2, H, y, t, mask)
                r = rows[(shift, net, f"fit {fam}", "all")][-1]
                r.update(lpd=-float(res.fun), s_low=lo, s_diag=dg, s_obs=ob)


def summarise(rows: dict) -> list[dict]:
    """Means over the times, one row per (shift, network, model, region)."""
    out = []
    for (shift, net, model, region), rs in rows.items():
        mean = {k: round(float(np.mean([r[k] for r in rs])), 4) for k in rs[0]}
        out.append({"shift": shift, "network": net, "model": model, "region": region, **mean})
    return out


def markdown(out: list[dict], cmd: str, wall_s: float) -> str:
    """The table: coverage (all / land / sea), RMSE, bias, spread and the fitted scales."""
    lines = [
        "# Why one error scale under-covers after a change of source",
        "",
        f"`{cmd}` "
        f"({wall_s:.0f} s; closed-form linearised posterior, station "
        "networks, sigma 0.5 K, unobserved grid points, unweighted means over the times). "
        "`lpd`: total 5-fold withheld log predictive density at the fit (nats, mean over "
        "times); scales: low-rank part of C / its diagonal / sigma.",
        "",
        "| shift | network | model | cov90 all / land / sea | RMSE | bias all / land | "
        "spread | lpd | scales |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    idx = {(r["shift"], r["network"], r["model"], r["region"]): r for r in out}
    for r in out:
        if r["region"] != "all":
            continue
        key = (r["shift"], r["network"], r["model"])
        la, se = idx[(*key, "land")], idx[(*key, "sea")]
        fit = (
            f"{r['lpd']:.1f} | {r['s_low']:.2f} / {r['s_diag']:.2f} / {r['s_obs']:.2f}"
            if "lpd" in r
            else " | "
        )
        lines.append(
            f"| {r['shift']} | {r['network']} | {r['model']} | {r['coverage_90']:.3f} / "
            f"{la['coverage_90']:.3f} / {se['coverage_90']:.3f} | {r['rmse']:.3f} | "
            f"{r['bias']:+.3f} / {la['bias']:+.3f} | {r['spread']:.3f} | {fit} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-times", type=int, default=12)
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--out", default=str(results_dir("source_shift") / "source_shift_diagnosis"))
    args = ap.parse_args(argv)
    t0 = _time.perf_counter()
    prior = load_model(args.model)
    data = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))
    S = setup(prior)
    _, test = block_split(data["time"].values)
    ti = np.flatnonzero(test)
    picks = ti[np.linspace(7, ti.size - 8, args.n_times).astype(int)]  # as source_shift
    rows: dict = {}
    for case, k in enumerate(picks):
        base = prior.climatology.to_anomaly(data["tas"].isel(time=int(k))).drop_vars("time")
        run_case(rows, prior, S, base, case)
        print(f"time {case + 1}/{len(picks)} ({_time.perf_counter() - t0:.0f} s)", flush=True)
    out = summarise(rows)
    path = pathlib.Path(args.out)
    write_text(path.with_suffix(".json"), json.dumps(out, indent=2) + "\n")
    cmd = f"{command(__spec__.name, [])} --n-times {args.n_times}"
    md = markdown(out, cmd, _time.perf_counter() - t0)
    write_text(path.with_suffix(".md"), md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
