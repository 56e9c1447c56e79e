"""Does bayesda's own withheld-observation check notice a prior that does not fit the data?

On QG, a VAE trained on one 5.5-year trajectory is confidently wrong on fields from a later
period (``analysis/osse/results/osse.md``: 90% coverage 0.39 at uniform-50 against 0.90 on
the block-split test fields), and the convergence verdict cannot see that, since the chains
sample the wrong posterior correctly. The check that can see it is
:func:`bayesda.preflight.calibrate.holdout_check`, which predicts each fold of withheld
observations from the rest and needs no truth. This runs it at held-out times of both kinds,
with networks and noise drawn as in the skill benchmark (same seeding rule), and reports its
90% coverage and mean squared standardised residual ``z2`` (1 when calibrated).

Usage::

    python -m analysis.qg_selfcheck.qg_selfcheck \\
        --model-dir ~/.cache/bayesda/osse/models/qg-q-d32 \\
        --max-snapshots 8000 --far 12000:14000 --repr-error homogeneous

Writes analysis/qg_selfcheck/results/qg_selfcheck.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import time

import numpy as np

import analysis.common.skill as bs
import bayesda
from analysis.common.io import command, results_dir
from analysis.common.osse import open_field
from analysis.common.prior import with_repr_error
from analysis.common.settings import STATED


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=pathlib.Path, required=True)
    p.add_argument("--var", default="q")
    p.add_argument("--store", default=None, help="QG zarr store (default: the full preset)")
    p.add_argument("--max-snapshots", type=int, required=True)
    p.add_argument("--far", required=True, metavar="START:STOP")
    p.add_argument("--repr-error", default=None)
    p.add_argument("--networks", nargs="+", default=["uniform-20", "uniform-50"])
    p.add_argument("--n-times", type=int, default=20)
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--assimilate",
        action="store_true",
        help="also run Laplace as is and after calibrate='auto' (bayesda.preflight.calibrate."
        "calibrate: the representation and observation error scales refitted on withheld "
        "observations) and score both against the truth at unobserved points",
    )
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("qg_selfcheck"))
    return p.parse_args(argv)


def load_case(args):
    """The prior (with the re-estimated representation error when asked), its grid and the
    near (block-split test) and far (a later period) anomalies."""
    from bayesda.data.split import split_dataset
    from bayesda.geo.grid import Grid
    from bayesda.prior.checkpoint import load_model

    start, stop = (int(v) for v in args.far.split(":"))
    prior = load_model(args.model_dir)
    da = open_field(args.var, args.store, stop)
    train_t, near_t = split_dataset(da.isel(time=slice(0, args.max_snapshots)))
    train = prior.climatology.to_anomaly(train_t)
    grid = Grid.from_xarray(train)
    if args.repr_error:
        prior = with_repr_error(prior, train, grid, args.repr_error)
    sets = {
        "near": prior.climatology.to_anomaly(near_t),
        "far": prior.climatology.to_anomaly(da.isel(time=slice(start, stop))),
    }
    return prior, grid, sets


def check_time(prior, obs, truth, seed: int, assimilate_too: bool) -> dict:
    """The withheld-observation check at one time; with ``assimilate_too``, Laplace as is and
    after ``calibrate="auto"`` scored against the truth at unobserved points."""
    from bayesda.inference.assimilate import assimilate
    from bayesda.inference.fields import posterior_dataset
    from bayesda.preflight.calibrate import calibrate, holdout_check
    from bayesda.settings import SamplerSettings

    laplace = SamplerSettings(method="laplace", num_chains=2, num_samples=200)
    c = holdout_check(prior, obs)
    row = {"coverage_90": c.coverage_90, "z2": c.z2}
    if assimilate_too:
        fitted, obs_fit, report = calibrate(prior, obs, "auto")
        row["scale_repr"] = report["fit"]["scale"]
        row["scale_obs"] = report["fit"]["scale_obs"]
        for tag, pr, ob in (("as_is", prior, obs), ("auto", fitted, obs_fit)):
            a = assimilate(pr, ob, seed=seed, sampler=laplace, options=STATED, progress_bar=False)
            scores, _, _ = bs.score_one(posterior_dataset(a, pr), truth, obs)
            for metric in ("rmse", "crps", "coverage_90"):
                row[f"{tag}_{metric}"] = scores[("unobserved", metric)]
    return row


def run(args, prior, grid, sets) -> list[dict]:
    """Every network, test set and held-out time: one row each."""
    rows = []
    for k, net in enumerate(args.networks):
        kind, n = net.split("-")
        lat, lon = bs.network_locations(grid, kind, int(n), seed=args.seed + 1000 * k)
        for name, test in sets.items():
            for i in bs.held_out_times(test, args.n_times):
                noise_seed = args.seed * 1_000_003 + 1000 * k + int(i)
                obs = bs.observe(test.isel(time=i), lat, lon, args.sigma, noise_seed)
                truth = test.isel(time=i)
                row = check_time(prior, obs, truth, int(i), args.assimilate)
                rows.append({"network": net, "test": name, **row})
            sel = [r for r in rows if r["network"] == net and r["test"] == name]
            print(
                f"{net} {name}: coverage {np.mean([r['coverage_90'] for r in sel]):.3f} "
                f"z2 {np.median([r['z2'] for r in sel]):.2f}",
                flush=True,
            )
    return rows


def summarise(rows: list[dict], networks, sets) -> list[dict]:
    """Per network and test set: mean coverage, median z2, the share of times with z2 > 2 and
    the means of the assimilation scores."""
    summary = []
    for net in networks:
        for name in sets:
            sel = [r for r in rows if r["network"] == net and r["test"] == name]
            cov = np.array([r["coverage_90"] for r in sel])
            z2 = np.array([r["z2"] for r in sel])
            summary.append(
                {
                    "network": net,
                    "test": name,
                    "times": len(sel),
                    "coverage_90_mean": float(cov.mean()),
                    "z2_median": float(np.median(z2)),
                    "share_z2_above_2": float(np.mean(z2 > 2)),
                    **{
                        key: float(np.mean([r[key] for r in sel]))
                        for key in sel[0]
                        if key.startswith(("as_is_", "auto_"))
                    },
                    **{
                        f"{key}_median": float(np.median([r[key] for r in sel]))
                        for key in ("scale_repr", "scale_obs")
                        if key in sel[0]
                    },
                }
            )
    return summary


def markdown(out: dict, assimilated: bool) -> str:
    """The check's table and, when assimilated, the Laplace scores as is and calibrated."""
    summary = out["summary"]
    lines = [
        "# bayesda's withheld-observation check on near and far QG fields",
        "",
        f"`{out['command']}` ({out['wall_s']:.0f} s). Per time, "
        "`bayesda.preflight.calibrate.holdout_check` (5 folds, no truth needed): the 90% "
        "coverage of the withheld observations and their mean squared standardised residual z2 "
        "(1 when the prior and error model fit the data). near = block-split test fields "
        "(neighbours of training fields); far = a later period of the run.",
        "",
        "| network | test fields | times | withheld 90% coverage (mean) | z2 (median) "
        "| times with z2 > 2 |",
        "|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['network']} | {s['test']} | {s['times']} | {s['coverage_90_mean']:.3f} | "
            f"{s['z2_median']:.2f} | {s['share_z2_above_2']:.2f} |"
        )
    if assimilated:
        lines += [
            "",
            "Laplace (400 draws) as is and after `calibrate='auto'`, scored against the truth "
            "at unobserved grid points (`bayesda.verify.metrics.verify`; means over times): RMSE, "
            "CRPS, 90% coverage; median fitted scales of the representation error (b) and the "
            "observation error (a).",
            "",
            "| network | test fields | RMSE as is / auto | CRPS as is / auto "
            "| 90% coverage as is / auto | b | a |",
            "|---|---|---|---|---|---|---|",
        ]
        for s_ in summary:
            lines.append(
                f"| {s_['network']} | {s_['test']} | {s_['as_is_rmse']:.3f} / "
                f"{s_['auto_rmse']:.3f} | {s_['as_is_crps']:.3f} / {s_['auto_crps']:.3f} | "
                f"{s_['as_is_coverage_90']:.3f} / {s_['auto_coverage_90']:.3f} | "
                f"{s_['scale_repr_median']:.2f} | {s_['scale_obs_median']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    prior, grid, sets = load_case(args)
    rows = run(args, prior, grid, sets)
    out = {
        "command": command(__spec__.name, argv),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - t0, 1),
        "summary": summarise(rows, args.networks, sets),
        "rows": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "qg_selfcheck.json").write_text(json.dumps(out, indent=1) + "\n")
    md = markdown(out, args.assimilate)
    (args.out_dir / "qg_selfcheck.md").write_text(md)
    print(md, end="")


if __name__ == "__main__":
    bayesda.enable_compilation_cache()
    main()
