"""Are the held-out fields of the 7-day block split independent of the training fields?

Every benchmark here scores on the test blocks of :func:`bayesda.data.split.block_split`
(7-day blocks, every 4th held out), so a test field is at most 3.5 days from a training
field. That is harmless when the flow forgets its state within days and not otherwise.
For each dataset this measures:

1. the **pattern correlation** of anomalies at lags from 6 h to a year
   (:func:`bayesda.data.split.pattern_correlation`: the mean over pairs of the uncentred
   correlation of two anomaly maps);
2. **reconstruction on near and far test fields**: PCA-d of the training split (and the
   VAE given by ``--model-dir``) scored on the block-split test fields ("near") and on a
   disjoint later period of the same run that training never came close to ("far", only
   for simulations: ``--far``). For the doubly periodic QG fields also the *homogeneous*
   PCA: the d Fourier modes of largest training power (the eigenvectors of the
   translation-averaged covariance, :func:`bayesda.prior.representation.homogeneous`), the
   exact symmetry of that model.

A near score far below the far score means the split leaks: the held-out fields are
neighbours of training fields on one trajectory, and what is measured is memory of that
trajectory rather than knowledge of the climate.

Usage::

    python -m analysis.split_independence.split_independence --dataset qg:q \\
        --train-snapshots 8000 --far 12000:14000 --model-dir ~/.cache/bayesda/osse/models/qg-q-d32
    python -m analysis.split_independence.split_independence --dataset ncep

Writes analysis/split_independence/results/split_independence.{json,md} (one entry per
dataset).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import time

import numpy as np

from analysis.common.io import command, results_dir
from analysis.common.osse import open_field
from analysis.common.prior import reconstruct
from bayesda.data.fieldstats import quadratic_gain, training_eofs
from bayesda.data.split import block_split, pattern_correlation

LAGS_DAYS = (0.25, 1, 3.5, 7, 14, 30, 90, 365)
DIMS = (32, 64, 128, 256)


def pca_rmse(x: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> float:
    """RMSE of projecting ``x [n, ...]`` on the orthonormal rows of ``basis [d, npix]``."""
    f = x.reshape(len(x), -1).astype(np.float64) - mean.reshape(-1)
    return float(np.sqrt(np.mean((f - (f @ basis.T) @ basis) ** 2)))


def homogeneous_basis(train: np.ndarray, d: int) -> np.ndarray:
    """The ``d`` real Fourier modes of largest training power, orthonormal ``[d, npix]``."""
    from bayesda.prior.representation import homogeneous

    rows = homogeneous(train - train.mean(axis=0), rank=d).factor
    rows = rows.reshape(len(rows), -1).astype(np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def load(dataset: str, train_snapshots: int | None, store: str | None = None):
    """``(anomalies of the whole run [n, lat, lon], times, train mask over the first
    train_snapshots)``; anomalies relative to the training climatology."""
    if dataset == "ncep":
        from bayesda.data.climatology import Climatology
        from bayesda.data.datasets import load_dataset

        tas = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))["tas"]
        train, _ = block_split(tas["time"].values)
        clim = Climatology.fit(tas.isel(time=np.flatnonzero(train)))
        return np.asarray(clim.to_anomaly(tas).values, np.float32), tas["time"].values, train
    var = dataset.split(":", 1)[1] if ":" in dataset else "tas"
    da = open_field(var, store, None)
    n = int(train_snapshots or len(da["time"]))
    train = np.zeros(len(da["time"]), bool)
    train[:n] = block_split(da["time"].values[:n])[0]
    x = np.asarray(da.values, np.float32)
    return x - x[train].mean(axis=0), da["time"].values, train


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="ncep, hs (Held-Suarez tas) or qg:VAR")
    p.add_argument("--train-snapshots", type=int, default=None, help="block split of the first N")
    p.add_argument("--store", default=None, help="simulation store (default: the full preset)")
    p.add_argument("--key", default=None, help="name of this entry in the results (--dataset)")
    p.add_argument("--far", default=None, help="START:STOP snapshots of the far test period")
    p.add_argument("--model-dir", type=pathlib.Path, default=None)
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("split_independence"))
    p.add_argument("--every", type=int, default=4, help="score every k-th test field")
    p.add_argument(
        "--probe-dims",
        default="",
        help="comma-separated d: also run the quadratic probe (bayesda.data.fieldstats."
        "quadratic_gain) on each test set with each basis",
    )
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    anom, times, train_mask = load(args.dataset, args.train_snapshots, args.store)
    n_train_span = int(args.train_snapshots or len(anom))
    near_mask = np.zeros(len(anom), bool)
    near_mask[:n_train_span] = ~train_mask[:n_train_span]
    tests = {"near (block-split test)": anom[near_mask][:: args.every]}
    if args.far:
        a, b = (int(v) for v in args.far.split(":"))
        if a < n_train_span:
            raise ValueError(f"--far starts at {a}, inside the training span (< {n_train_span})")
        tests[f"far (snapshots {a}-{b})"] = anom[a:b][:: args.every]
    train = anom[train_mask].astype(np.float64)
    span = slice(0, n_train_span)
    corr = {str(g): pattern_correlation(anom[span], times[span], g) for g in LAGS_DAYS}
    print("pattern correlation by lag (days):", corr, flush=True)

    mean, _, vt = training_eofs(train)
    bases = {"PCA": {d: vt[:d] for d in DIMS}}
    if args.dataset.startswith("qg:"):
        bases["homogeneous PCA"] = {d: homogeneous_basis(train, d) for d in DIMS}
    prior = decoder = None
    if args.model_dir is not None:
        from bayesda.prior.checkpoint import load_model

        prior = load_model(args.model_dir)
        decoder = f"{args.model_dir.name} (d = {prior.latent_dim})"
    rows = []
    for name, x in tests.items():
        # rms: the error of the training mean (d = 0), the scale every RMSE is relative to
        row = {"test": name, "n": int(len(x)), "rms": float(np.sqrt(np.mean(np.square(x))))}
        for kind, by_d in bases.items():
            for d, basis in by_d.items():
                row[f"{kind} {d}"] = pca_rmse(x, mean, basis)
        if prior is not None:
            out = reconstruct(prior, x)
            row[f"VAE {decoder}"] = float(np.sqrt(np.mean((out - x) ** 2)))
        rows.append(row)
        print(row, flush=True)
    probe = []
    for d in (int(v) for v in args.probe_dims.split(",") if v):
        for kind in bases:
            basis = bases[kind].get(d)
            if basis is None:
                basis = vt[:d] if kind == "PCA" else homogeneous_basis(train, d)
            c = train.reshape(len(train), -1) - mean
            sv = np.sqrt(len(train)) * (c @ basis.T).std(axis=0)  # scores' scale, as EOFs
            for name, x in tests.items():
                q = quadratic_gain(train, x, d, eofs=(mean, sv, basis))
                probe.append({"d": d, "basis": kind, "test": name, **q})
                print(probe[-1], flush=True)
    res = {
        "command": command(__spec__.name, argv),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - t0, 1),
        "n_train": int(len(train)),
        "pattern_correlation": corr,
        "reconstruction_rmse": rows,
        "quadratic_probe": probe,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "split_independence.json"
    allres = json.loads(path.read_text()) if path.exists() else {}
    allres[args.key or args.dataset] = res
    path.write_text(json.dumps(allres, indent=1) + "\n")
    (args.out_dir / "split_independence.md").write_text(markdown(allres))
    print(f"wrote {path}", flush=True)


def markdown(allres: dict) -> str:
    lines = [
        "# Are block-split test fields independent of the training fields?",
        "",
        "Generated by `python -m analysis.split_independence.split_independence` (see its "
        "docstring; commands below). "
        "Pattern correlation: mean uncentred correlation of anomaly maps at a lag. "
        "Reconstruction: RMSE of the projection of test anomalies on the first d training "
        "EOFs (PCA), on the d Fourier modes of largest training power (homogeneous PCA, QG "
        "only) and of the VAE's decode(encode_mean(x)); near = the block-split test fields, "
        "far = a later period of the same run, disjoint from training. RMS anomaly: the "
        "RMS of the test anomalies about the training mean (the RMSE of d = 0).",
        "",
    ]
    for key, r in allres.items():
        corr = r["pattern_correlation"]
        lags = [g for g in corr if corr[g] is not None]
        lines += [
            f"## {key}",
            "",
            f"`{r['command']}` ({r['wall_s']:.0f} s, {r['n_train']} training fields)",
            "",
            "| lag (days) | " + " | ".join(lags) + " |",
            "|---|" + "---|" * len(lags),
            "| pattern correlation | " + " | ".join(f"{corr[g]:.3f}" for g in lags) + " |",
            "",
        ]
        cols = [k for k in r["reconstruction_rmse"][0] if k not in ("test", "n", "rms")]
        lines += [
            "| test fields | n | RMS anomaly | " + " | ".join(cols) + " |",
            "|---|---|---|" + "---|" * len(cols),
        ]
        for row in r["reconstruction_rmse"]:
            lines.append(
                f"| {row['test']} | {row['n']} | {row['rms']:.4f} | "
                + " | ".join(f"{row[c]:.4f}" for c in cols)
                + " |"
            )
        lines.append("")
        if r.get("quadratic_probe"):
            lines += [
                "Quadratic probe (`--probe-dims`; `bayesda.data.fieldstats.quadratic_gain` "
                "with this basis, fitted on the training fields): RMSE of the basis's d-term "
                "projection, "
                "after adding a quadratic function of its d scores, and their ratio (< 1: "
                "low-dimensional nonlinear structure a decoder of latent size d could use).",
                "",
                "| d | basis | test fields | linear | + quadratic | ratio |",
                "|---|---|---|---|---|---|",
            ]
            for q in r["quadratic_probe"]:
                lines.append(
                    f"| {q['d']} | {q['basis']} | {q['test']} | {q['pca_rmse']:.4f} | "
                    f"{q['quadratic_rmse']:.4f} | {q['ratio']:.3f} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
