"""Gross errors among 50 station observations: what they do, and what QC undoes (issue 13).

For held-out NCEP times (the test blocks of :func:`bayesda.data.split.block_split`, evenly
spread), 50 station-like pseudo-observations (sigma 0.5 K) of the true anomaly are drawn;
three of them, chosen at random, get a gross error of +15, -15, +15 K. Each case is
assimilated with MAP + Laplace (the shipped model, 4 x 500 draws):

  clean         no gross errors, no QC (the reference)
  errors        with the gross errors, Gaussian likelihood, no QC (today's behaviour)
  errors_qc     with the gross errors, bayesda.preflight.qc.quality_control first
  errors_t      with the gross errors, Student-t likelihood (Matheron step per-draw weighted)
  oracle        the 47 good observations only (the best any QC can do)
  clean_qc      no gross errors, QC on (does QC flag good observations?)

RMSE of the posterior mean is taken at unobserved grid points (no observation nearest) and
within 500 km of a corrupted station (where a gross error does its damage).

Output: ``analysis/gross_error/results/gross_error.json`` and ``gross_error.md``.

Usage: python -m analysis.gross_error.gross_error [--n-times 10]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time as _time

import numpy as np

import bayesda  # noqa: F401  (XLA flags before jax)
from analysis.common.io import SHIPPED_MODEL, command, results_dir
from analysis.common.settings import STATED
from bayesda.data.datasets import load_dataset
from bayesda.data.split import block_split
from bayesda.inference.assimilate import assimilate
from bayesda.inference.fields import posterior_dataset
from bayesda.obs.table import pseudo_obs
from bayesda.preflight.qc import quality_control
from bayesda.prior.checkpoint import load_model
from bayesda.settings import ModelOptions, SamplerSettings
from bayesda.verify import metrics

GROSS = (15.0, -15.0, 15.0)


def _near_mask(grid, lat, lon, km=500.0):
    la, lo = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    mask = np.zeros(grid.shape, bool)
    for a, b in zip(lat, lon, strict=True):
        c = np.sin(np.radians(la)) * np.sin(np.radians(a)) + np.cos(np.radians(la)) * np.cos(
            np.radians(a)
        ) * np.cos(np.radians(lo - b))
        mask |= 6371.0 * np.arccos(np.clip(c, -1, 1)) < km
    return mask


def _scores(prior, a, truth, obs_used, near):
    ds = posterior_dataset(a, prior)
    v = metrics.verify(ds, truth, obs_used)
    err = (ds["mean"] - truth).values
    return {
        "rmse_unobserved": float(v["rmse"].sel(region="unobserved")),
        "coverage_90_unobserved": float(v["coverage_90"].sel(region="unobserved")),
        "rmse_near_gross": float(np.sqrt(np.mean(err[near] ** 2))),
        "max_abs_error_near_gross": float(np.max(np.abs(err[near]))),
    }


LAPLACE = dict(
    sampler=SamplerSettings(method="laplace", num_chains=4, num_samples=500),
    options=STATED,
    progress_bar=False,
)
STUDENT_T = ModelOptions(errors="stated", likelihood="studentt")
VARIANTS = ("clean", "errors", "errors_t", "errors_qc", "oracle", "clean_qc")


def run_case(prior, truth, t, case: int, n_obs: int, old: dict | None) -> dict:
    """One held-out time: every variant's scores, and what QC flagged.

    ``old``: this case from an earlier run (``--reuse``), whose clean/errors/errors_t scores
    are taken instead of recomputed (same inputs); None to compute them.
    """
    kw = LAPLACE
    clean = pseudo_obs(truth, n_obs, network="station", sigma=0.5, seed=case)
    rng = np.random.default_rng([case, 13])
    bad = rng.choice(n_obs, size=len(GROSS), replace=False)
    dirty = clean.copy()
    dirty.loc[bad, "value"] += np.asarray(GROSS)
    near = _near_mask(prior.grid, clean["lat"].to_numpy()[bad], clean["lon"].to_numpy()[bad])
    row = {"time": str(np.datetime64(t, "s")), "gross_rows": bad.tolist()}
    if old:
        assert old["time"] == row["time"] and old["gross_rows"] == row["gross_rows"]
        row.update({v: old[v] for v in ("clean", "errors", "errors_t")})
    else:
        row["clean"] = _scores(prior, assimilate(prior, clean, seed=case, **kw), truth, clean, near)
        row["errors"] = _scores(
            prior, assimilate(prior, dirty, seed=case, **kw), truth, dirty, near
        )
        a_t = assimilate(prior, dirty, seed=case, **{**kw, "options": STUDENT_T})
        row["errors_t"] = _scores(prior, a_t, truth, dirty, near)
    good_only = clean.drop(index=bad).reset_index(drop=True)
    row["oracle"] = _scores(
        prior, assimilate(prior, good_only, seed=case, **kw), truth, dirty, near
    )
    qc_dirty, rep = quality_control(prior, dirty)
    row["errors_qc"] = _scores(
        prior, assimilate(prior, qc_dirty, seed=case, **kw), truth, dirty, near
    )
    flagged = qc_dirty["qc"].to_numpy() != "ok"
    row["flagged_gross"] = int(flagged[bad].sum())
    row["flagged_good"] = int(flagged.sum() - flagged[bad].sum())
    row["p_gross_of_gross"] = qc_dirty["p_gross"].to_numpy()[bad].round(4).tolist()
    good = np.setdiff1d(np.arange(n_obs), bad)
    row["p_gross_max_good"] = float(qc_dirty["p_gross"].to_numpy()[good].max())
    qc_clean, _ = quality_control(prior, clean)
    row["clean_qc_flagged"] = int((qc_clean["qc"] != "ok").sum())
    row["clean_qc"] = _scores(
        prior, assimilate(prior, qc_clean, seed=case, **kw), truth, clean, near
    )
    return row


def progress_line(row: dict) -> str:
    """One line per case: unobserved and near-bad-station RMSEs, what QC flagged."""
    return (
        f"{row['time']}: unobserved RMSE clean {row['clean']['rmse_unobserved']:.3f} "
        f"errors {row['errors']['rmse_unobserved']:.3f} "
        f"t {row['errors_t']['rmse_unobserved']:.3f} "
        f"qc {row['errors_qc']['rmse_unobserved']:.3f} "
        f"oracle {row['oracle']['rmse_unobserved']:.3f}; near: "
        f"{row['clean']['rmse_near_gross']:.2f} {row['errors']['rmse_near_gross']:.2f} "
        f"{row['errors_t']['rmse_near_gross']:.2f} {row['errors_qc']['rmse_near_gross']:.2f}"
        f"; flagged gross {row['flagged_gross']}/3 good {row['flagged_good']}"
        f" (clean run: {row['clean_qc_flagged']})"
    )


def _mean(cases: list[dict], variant: str, key: str) -> float:
    return float(np.mean([c[variant][key] for c in cases]))


def summarise(cases: list[dict], n_obs: int) -> dict:
    """Counts of flagged observations and mean RMSEs over the cases."""
    return {
        "n_obs": n_obs,
        "n_gross": len(GROSS) * len(cases),
        "flagged_gross": int(sum(c["flagged_gross"] for c in cases)),
        "flagged_good": int(sum(c["flagged_good"] for c in cases)),
        "rmse_clean": _mean(cases, "clean", "rmse_unobserved"),
        "rmse_with_errors": _mean(cases, "errors_qc", "rmse_unobserved"),
        "rmse_with_errors_no_qc": _mean(cases, "errors", "rmse_unobserved"),
        "rmse_with_errors_studentt": _mean(cases, "errors_t", "rmse_unobserved"),
        "rmse_without_the_bad_stations": _mean(cases, "oracle", "rmse_unobserved"),
        "n_times": len(cases),
        "flagged_good_without_errors": int(sum(c["clean_qc_flagged"] for c in cases)),
        "note": "n_gross, flagged_* summed over n_times cases of n_obs observations with 3 gross "
        "errors (+15, -15, +15 K); rmse_* are means over cases of the posterior-mean "
        "RMSE at unobserved grid points, K; rmse_with_errors is with bayesda.preflight.qc",
    }


def markdown(result: dict) -> str:
    """The table of mean scores per variant and the QC counts."""
    cases = result["cases"]
    lines = [
        "# Gross errors: 3 of 50 station observations off by +-15 K",
        "",
        f"`{result['command']}` ({result['wall_s']} s, MAP + Laplace, shipped ncep-air model, "
        f"{len(cases)} held-out times). Means over the times:",
        "",
        "| run | RMSE unobserved (K) | RMSE within 500 km of a bad station (K) | "
        "max abs error there (K) | 90% coverage unobserved |",
        "|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        lines.append(
            f"| {v} | {_mean(cases, v, 'rmse_unobserved'):.3f} | "
            f"{_mean(cases, v, 'rmse_near_gross'):.3f}"
            f" | {_mean(cases, v, 'max_abs_error_near_gross'):.2f} | "
            f"{_mean(cases, v, 'coverage_90_unobserved'):.3f} |"
        )
    lines += [
        "",
        f"Flagged: {result['flagged_gross']} of {result['n_gross']} gross errors, "
        f"{result['flagged_good']} good observations with the errors present, "
        f"{result['flagged_good_without_errors']} in the clean runs.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-times", type=int, default=10)
    ap.add_argument("--n-obs", type=int, default=50)
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--out", default=str(results_dir("gross_error") / "gross_error"))
    ap.add_argument(
        "--reuse",
        default=None,
        help="a previous gross_error.json: take its clean/errors/errors_t runs "
        "(same inputs, no QC) instead of recomputing them",
    )
    args = ap.parse_args(argv)
    reuse = json.loads(pathlib.Path(args.reuse).read_text())["cases"] if args.reuse else None
    t_start = _time.perf_counter()
    prior = load_model(args.model)
    data = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))
    times = data["time"].values
    _, test = block_split(times)
    test_idx = np.flatnonzero(test)
    picks = test_idx[np.linspace(0, test_idx.size - 1, args.n_times).astype(int)]
    cases = []
    for case, k in enumerate(picks):
        truth = prior.climatology.to_anomaly(data["tas"].isel(time=int(k))).drop_vars("time")
        old = reuse[case] if reuse else None
        cases.append(run_case(prior, truth, times[k], case, args.n_obs, old))
        print(progress_line(cases[-1]), flush=True)
    result = {
        **summarise(cases, args.n_obs),
        "command": f"{command(__spec__.name, [])} --n-times "
        + str(args.n_times)
        + (f" --reuse {args.reuse}" if args.reuse else ""),
        "wall_s": round(_time.perf_counter() - t_start, 1),
        "cases": cases,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    out.with_suffix(".md").write_text(md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
