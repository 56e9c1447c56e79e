"""Fold the GPU sweep's results (:mod:`analysis.osse_gpu.osse_gpu_sweep`) into the OSSE results.

Reads the sweep's JSON lines and writes, under analysis/osse_gpu/results:

* ``osse_gpu_sweep.jsonl``: the lines as they came back (learning curves included);
* ``osse_gpu_sweep.md``: one row per run (VAE, refined-z, PCA-d, symmetrised PCA-d,
  ratio, epochs, stop reason, seconds, a digest of the learning curve) and the runs the
  budget skipped;

and under analysis/osse/results:

* ``osse_recon.json`` / ``osse_recon.md``: one record per run, tag ``gpu-<run>``
  (replacing earlier ones of the same tag and d), in the schema of
  :mod:`analysis.osse.osse_train`;

then reruns ``python -m analysis.osse.osse_report`` (osse_summary.json, osse.md, osse.csv).

Usage::

    python -m analysis.osse_gpu.osse_gpu_fold .gpu/results/osse_gpu_sweep.jsonl
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

from analysis.common.io import ROOT, results_dir
from analysis.common.osse import recon_markdown

RESULTS = results_dir("osse_gpu")
RECON = results_dir("osse")


def read_lines(path: str | pathlib.Path) -> tuple[dict, list[dict], list[dict]]:
    """``(env, runs, skipped)`` from a sweep's JSON lines; a torn last line is ignored."""
    env, runs, skipped = {}, [], []
    for i, line in enumerate(pathlib.Path(path).read_text().splitlines()):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            print(f"{path}:{i + 1}: unreadable line ignored (a run cut off?)", file=sys.stderr)
            continue
        {"env": lambda r: env.update(r), "run": runs.append, "skipped": skipped.append}[r["kind"]](
            r
        )
    return env, runs, skipped


def _curve(h: dict) -> str:
    v = h["val_recon"]
    if not v:
        return ""
    best = min(range(len(v)), key=v.__getitem__)
    return f"{v[0]:.4f} -> {v[best]:.4f} (ep {best}) -> {v[-1]:.4f}"


def sweep_markdown(env: dict, runs: list[dict], skipped: list[dict], source: str) -> str:
    lines = [
        "# GPU sweep: VAE vs PCA-d on the simulated weather (lowest-level T)",
        "",
        f"Command: `{env.get('command', '?')}` on {env.get('platform', '?')} "
        f"{env.get('device_kind', '')} (jax {env.get('versions', {}).get('jax', '?')}); data "
        f"`{env.get('data', '?')}`: {env.get('data_meta', {}).get('n_snapshots', '?')} "
        f"snapshots, fit {env.get('n_fit')} / val {env.get('n_val')} / test "
        f"{env.get('n_test')}, test anomaly SD {env.get('test_anomaly_sd', float('nan')):.3f} K;"
        f" budget {env.get('budget_s')} s. Results: `{source}`.",
        "",
        "RMSE in K on the held-out test blocks. VAE = decode(encoder mean); refined = decoder"
        " optimum (Adam on z from the encoder mean); PCA-sym = PCA with the covariance averaged"
        " over longitude rolls and the hemisphere flip (exact symmetries of Held-Suarez; the"
        " fair linear baseline for the augmented run). Ratio = VAE / PCA (target <= 0.85)."
        " Curve: validation reconstruction term (nats per pixel) at epoch 0 -> best -> last.",
        "",
        "| run | d | VAE | refined | PCA | PCA-sym | ratio | best / run | stop | train s |"
        " curve | what it tests |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['name']} | {r['latent_dim']} | {r['vae_rmse']:.4f} | "
            f"{r.get('vae_refined_rmse') or ''} | {r['pca_rmse']:.4f} | "
            f"{r.get('pca_symmetrised_rmse', '')} | {r['ratio']:.3f} | {r['best_epoch']} / "
            f"{r['epochs_run']} | {r['stop_reason']} | {r['train_s']} | {_curve(r['history'])}"
            f" | {r['why']} |"
        )
    if skipped:
        lines += ["", "Not reached within the budget: " + ", ".join(r["name"] for r in skipped)]
    return "\n".join(lines) + "\n"


def recon_records(env: dict, runs: list[dict]) -> list[dict]:
    """The runs in the schema of osse_recon.json (analysis.osse.osse_train)."""
    out = []
    for r in runs:
        tc = r["train_config"]
        vc = r["vae_config"]
        out.append(
            {
                "tag": f"gpu-{r['name']}",
                "model": "vae-tas",
                "latent_dim": r["latent_dim"],
                "vae_rmse": r["vae_rmse"],
                "pca_rmse": r["pca_rmse"],
                "ratio": r["ratio"],
                "vae_refined_rmse": r.get("vae_refined_rmse"),
                "refine_steps": r.get("refine_steps"),
                "pca_symmetrised_rmse": r.get("pca_symmetrised_rmse"),
                "vae_rmse_area_weighted": r["vae_rmse_area_weighted"],
                "pca_rmse_area_weighted": r["pca_rmse_area_weighted"],
                "test_anomaly_sd": env.get("test_anomaly_sd"),
                "n_fit": env.get("n_fit"),
                "n_test": env.get("n_test"),
                "epochs_run": r["epochs_run"],
                "best_epoch": r["best_epoch"],
                "stop_reason": r["stop_reason"],
                "train_wall_s": r["train_s"],
                "load_avg_1min": env.get("load_avg_1min"),
                "device": f"{env.get('platform', '?')} {env.get('device_kind', '')}".strip(),
                "val_recon_history": r["history"]["val_recon"],
                "train_config": tc,
                "channels": ",".join(str(c) for c in vc["channels"])
                + (f" +{vc['res_blocks']} res" if vc.get("res_blocks") else ""),
                "linear_path": vc["linear_path"],
                "command": r["command"],
            }
        )
    return out


def fold(
    path: str | pathlib.Path, results: pathlib.Path = RESULTS, recon: pathlib.Path = RECON
) -> list[dict]:
    """Write the sweep's files into ``results`` and merge its runs into
    ``recon/osse_recon.json`` (and ``osse_recon.md``)."""
    env, runs, skipped = read_lines(path)
    results.mkdir(parents=True, exist_ok=True)
    recon.mkdir(parents=True, exist_ok=True)
    (results / "osse_gpu_sweep.jsonl").write_text(pathlib.Path(path).read_text())
    (results / "osse_gpu_sweep.md").write_text(
        sweep_markdown(env, runs, skipped, "osse_gpu_sweep.jsonl")
    )
    recon_path = recon / "osse_recon.json"
    records = json.loads(recon_path.read_text()) if recon_path.exists() else []
    new = recon_records(env, runs)
    keys = {(r["tag"], r["latent_dim"]) for r in new}
    records = [r for r in records if (r["tag"], r["latent_dim"]) not in keys] + new
    recon_path.write_text(json.dumps(records, indent=1) + "\n")
    (recon / "osse_recon.md").write_text(recon_markdown(records))
    return new


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("jsonl", help="osse_gpu_sweep.jsonl as it came back from the device")
    p.add_argument("--out-dir", type=pathlib.Path, default=RESULTS, help="the sweep's files")
    p.add_argument("--recon-dir", type=pathlib.Path, default=RECON, help="osse_recon.*, osse.*")
    args = p.parse_args(argv)
    new = fold(args.jsonl, args.out_dir, args.recon_dir)
    print(f"folded {len(new)} runs")
    report = [sys.executable, "-m", "analysis.osse.osse_report"]
    report += ["--in-dir", str(args.recon_dir), "--out-dir", str(args.recon_dir)]
    subprocess.run(report, check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
