"""Collect the perfect-model (OSSE) results into osse.md, osse.csv and osse_summary.json.

Reads analysis/results/osse_stats.json, osse_recon.json and osse_skill*.csv (whichever
exist) and writes the issue's machine-readable summary::

    {"reconstruction": [{"model", "latent_dim", "vae_rmse", "pca_rmse", ...}],
     "skill": [{"experiment", "network", "method", "rmse", "crps", "coverage_90",
                "spread_skill", "n_times"}]}

Usage::

    .venv/bin/python analysis/osse_report.py
"""

from __future__ import annotations

import json
import sys

import pandas as pd

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from osse_common import RESULTS  # noqa: E402

METRICS = {
    "rmse": "rmse",
    "crps": "crps",
    "coverage_90": "coverage_90",
    "spread_skill": "spread_skill",
}


def skill_rows(csv) -> list[dict]:
    df = pd.read_csv(csv)
    df = df[(df.subset == "all") & (df.region == "unobserved")]
    out = []
    for (network, method), g in df.groupby(["network", "method"], sort=False):
        vals = dict(zip(g.metric, g.value, strict=True))
        row = {"experiment": "temperature", "network": network, "method": method}
        for key, name in METRICS.items():
            row[key] = round(float(vals[name]), 4) if name in vals else None
        row["n_times"] = int(g.n_times.iloc[0])
        out.append(row)
    return out


def main() -> None:
    summary: dict = {"reconstruction": [], "skill": []}
    recon_path = RESULTS / "osse_recon.json"
    if recon_path.exists():
        for r in json.loads(recon_path.read_text()):
            summary["reconstruction"].append(
                {
                    "model": f"{r['model']}:{r['tag']}",
                    "latent_dim": r["latent_dim"],
                    "vae_rmse": r["vae_rmse"],
                    "pca_rmse": r["pca_rmse"],
                    "ratio": r["ratio"],
                    "vae_refined_rmse": r.get("vae_refined_rmse"),
                    "pca_symmetrised_rmse": r.get("pca_symmetrised_rmse"),
                    "best_epoch": r["best_epoch"],
                    "epochs_run": r["epochs_run"],
                    "train_wall_s": r["train_wall_s"],
                    "n_fit": r["n_fit"],
                    "command": r["command"],
                }
            )
    for skill_csv in sorted(RESULTS.glob("osse_skill*.csv")):  # one file per run
        summary["skill"] += skill_rows(skill_csv)
    stats_path = RESULTS / "osse_stats.json"
    if stats_path.exists():
        s = json.loads(stats_path.read_text())
        summary["data"] = {"store": s["store"], "n_train": s["n_train"], "n_test": s["n_test"]}
    (RESULTS / "osse_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    rows = [{"table": "reconstruction", **r} for r in summary["reconstruction"]]
    rows += [{"table": "skill", **r} for r in summary["skill"]]
    pd.DataFrame(rows).to_csv(RESULTS / "osse.csv", index=False)
    (RESULTS / "osse.md").write_text(markdown(summary))
    print((RESULTS / "osse.md").read_text())


def markdown(s: dict) -> str:
    lines = ["# Perfect-model experiment (OSSE): Held-Suarez weather, VAE vs PCA vs OI", ""]
    if "data" in s:
        d = s["data"]
        lines += [
            f"Data: {json.dumps(d['store'])}; {d['n_train']} training / {d['n_test']} "
            "test snapshots (7-day blocks, every 4th held out). Gaussianity: "
            "osse_stats.md.",
            "",
        ]
    if s["reconstruction"]:
        lines += [
            "## Held-out reconstruction RMSE (K), temperature at the lowest level",
            "",
            "| model | d | VAE | PCA-d | VAE / PCA (target <= 0.85) | VAE, refined z |"
            " PCA-sym | best / run epochs | train s | n_fit |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in s["reconstruction"]:
            lines.append(
                f"| {r['model']} | {r['latent_dim']} | {r['vae_rmse']:.4f} | "
                f"{r['pca_rmse']:.4f} | {r['ratio']:.3f} | {r.get('vae_refined_rmse') or ''} | "
                f"{r.get('pca_symmetrised_rmse') or ''} | {r['best_epoch']} / "
                f"{r['epochs_run']} | {r['train_wall_s']} | {r['n_fit']} |"
            )
        lines += [
            "",
            "Commands: `osse_recon.json` (one per row). `gpu-*` rows: the GPU sweep "
            "(`osse_gpu_sweep.md`: 9,200 snapshots; H200). Refined z = the decoder's optimum "
            "(Adam on z); PCA-sym = PCA with the covariance averaged over longitude rolls and "
            "the hemisphere flip (the fair baseline for the augmented `aug-*` runs).",
            "",
        ]
    if s["skill"]:
        lines += [
            "## Assimilation at unobserved points (sigma 0.5 K)",
            "",
            "| network | method | RMSE | CRPS | 90% coverage | spread/skill | times |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in s["skill"]:
            f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(
                f"| {r['network']} | {r['method']} | {f(r['rmse'])} | "
                f"{f(r['crps'])} | {f(r['coverage_90'])} | {f(r['spread_skill'])} | "
                f"{r['n_times']} |"
            )
        lines += [
            "",
            "Commands and per-subset detail: `osse_skill*.md` / `osse_skill*.csv` (one per run).",
            "",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
