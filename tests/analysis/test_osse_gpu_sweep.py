"""The GPU sweep's data path (analysis.common.export) and its budgeted runner
(analysis.osse_gpu.osse_gpu_sweep) at tiny size on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.common import export
from analysis.osse_gpu import osse_gpu_fold, osse_gpu_sweep
from bayesda.data.split import block_split, validation_split

sweep = osse_gpu_sweep


def make_fields(*, n=240, nlat=8, nlon=16, seed=0):
    """Six-hourly ``[n, nlat, nlon]`` fields near 280 K: 3 smooth patterns plus noise."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(-80, 80, nlat)
    lon = np.arange(nlon) * 360.0 / nlon - 180.0
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    patterns = np.stack([np.cos(la) * np.cos(k * lo + k) for k in (1, 2, 3)])
    coef = rng.normal(size=(n, 3)) * np.array([4.0, 2.0, 1.0])
    field = (
        280.0 + np.einsum("nk,kij->nij", coef, patterns) + 0.3 * rng.normal(size=(n, nlat, nlon))
    )
    times = np.datetime64("2001-01-01T00") + np.arange(n) * np.timedelta64(6, "h")
    return field, times.astype("datetime64[ns]"), lat, lon


def test_export_round_trip_is_the_block_split_within_the_quantisation(tmp_path):
    field, times, lat, lon = make_fields()
    path = export.export_arrays(field, times, lat, lon, tmp_path / "x.npz", meta={"var": "tas"})
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]  # no temporary left behind
    e = export.load_export(path)
    train, test = block_split(times)
    fit_in_train, val_in_train = validation_split(times[train])
    np.testing.assert_array_equal(e.train, train)
    np.testing.assert_array_equal(e.test, test)
    np.testing.assert_array_equal(e.fit[train], fit_in_train)
    np.testing.assert_array_equal(e.val[train], val_in_train)
    assert not e.fit[test].any()
    np.testing.assert_allclose(e.mean, field[train].mean(0), rtol=1e-6)
    # int16 at 0.01 K: every value within half a step (plus float32 rounding)
    np.testing.assert_allclose(e.anomaly + e.mean, field, atol=0.005 + 1e-4)
    assert e.meta["var"] == "tas" and "value = anomaly_q * scale + mean" in e.meta["scale_note"]
    # a shorter series is split afresh, as a fresh export of it would be
    short = export.load_export(path, max_snapshots=150)
    fresh = export.load_export(
        export.export_arrays(field[:150], times[:150], lat, lon, tmp_path / "s.npz")
    )
    for name in ("train", "test", "fit"):
        np.testing.assert_array_equal(getattr(short, name), getattr(fresh, name))


def test_export_refuses_anomalies_beyond_int16_and_names_a_scale(tmp_path):
    field, times, lat, lon = make_fields(n=60)
    with pytest.raises(ValueError, match=r"does not fit int16 at scale=0.0001; pass --scale"):
        export.export_arrays(field, times, lat, lon, tmp_path / "x.npz", scale=1e-4)
    with pytest.raises(ValueError, match=r"field shape \(60, 8, 16\) != \(time, lat, lon\)"):
        export.export_arrays(field, times, lat[:-1], lon, tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError, match="osse_export --out"):
        export.load_export(tmp_path / "missing.npz")


@pytest.mark.slow  # about 40 s on 2 busy cores, nearly all of it compilation
def test_tiny_sweep_writes_each_run_with_pca_of_the_same_split(tmp_path):
    field, times, lat, lon = make_fields()
    data = export.export_arrays(field, times, lat, lon, tmp_path / "x.npz")
    out = tmp_path / "out"
    argv = [str(data), "--tiny", "--runs", "base-d64", "--budget-s", "600", "--out", str(out)]
    assert sweep.main(argv) == 0
    lines = [json.loads(s) for s in (out / "osse_gpu_sweep_tiny.jsonl").read_text().splitlines()]
    env, run = lines
    assert env["kind"] == "env" and env["platform"] == "cpu" and env["grid"] == [8, 16]
    assert run["kind"] == "run" and run["name"] == "base-d64" and run["latent_dim"] == 4
    # PCA-4 of the fit fields, computed independently here
    e = export.load_export(data)
    a_fit, a_test = e.anomaly[e.fit].reshape(e.fit.sum(), -1), e.anomaly[e.test]
    mu = a_fit.mean(0)
    _, _, vt = np.linalg.svd(a_fit - mu, full_matrices=False)
    b = a_test.reshape(len(a_test), -1) - mu
    pca4 = np.sqrt(np.mean((b - b @ vt[:4].T @ vt[:4]) ** 2))
    assert run["pca_rmse"] == pytest.approx(pca4, abs=1e-4)
    # 3 patterns + 0.3 K noise: PCA-4 leaves about the noise, and the PPCA-started VAE
    # reconstructs about as well (it is PPCA at the start)
    assert 0.25 < run["pca_rmse"] < 0.35
    assert run["vae_rmse"] < 1.5 * run["pca_rmse"]
    assert run["vae_refined_rmse"] <= run["vae_rmse"] + 1e-3
    h = run["history"]
    assert len(h["val_loss"]) == len(h["time_s"]) == run["epochs_run"] == 2
    assert run["stop_reason"] == "epochs" and run["train_config"]["pca_init"] is True


def test_sweep_skips_what_the_budget_cannot_fit(tmp_path, capsys):
    field, times, lat, lon = make_fields(n=120)
    data = export.export_arrays(field, times, lat, lon, tmp_path / "x.npz")
    argv = [str(data), "--tiny", "--budget-s", "0", "--out", str(tmp_path)]
    assert sweep.main(argv) == 0
    lines = [
        json.loads(s) for s in (tmp_path / "osse_gpu_sweep_tiny.jsonl").read_text().splitlines()
    ]
    assert [r["kind"] for r in lines] == ["env"] + ["skipped"] * len(sweep.RUNS)
    assert [r["name"] for r in lines[1:]] == [r.name for r in sweep.RUNS]
    with pytest.raises(SystemExit, match="unknown run"):
        sweep.main([str(data), "--runs", "nope", "--list"])


def test_fold_merges_runs_into_the_recon_table_and_ignores_a_torn_line(tmp_path):
    run = {
        "kind": "run",
        "name": "base-d64",
        "latent_dim": 64,
        "why": "w",
        "vae_rmse": 3.0,
        "pca_rmse": 3.1,
        "ratio": 0.9677,
        "vae_refined_rmse": 2.9,
        "refine_steps": 200,
        "pca_symmetrised_rmse": 2.95,
        "vae_rmse_area_weighted": 3.2,
        "pca_rmse_area_weighted": 3.3,
        "best_epoch": 4,
        "epochs_run": 13,
        "stop_reason": "patience",
        "train_s": 12.5,
        "history": {"val_recon": [1.0, 0.9, 0.95]},
        "vae_config": {"channels": [16, 16], "linear_path": True, "res_blocks": 0},
        "train_config": {
            "beta": 0.1,
            "learning_rate": 3e-4,
            "pca_init": True,
            "roll_lon": False,
            "flip_lat": False,
            "epochs": 30,
        },
        "command": "c",
    }
    env = {"kind": "env", "n_fit": 5868, "n_test": 2296, "platform": "gpu"}
    skipped = {"kind": "skipped", "name": "long-d64", "latent_dim": 64}
    lines = [json.dumps(r) for r in (env, run, skipped)] + ['{"kind": "run", "na']
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    old = {"tag": "gpu-base-d64", "latent_dim": 64, "vae_rmse": 9.0}
    (tmp_path / "osse_recon.json").write_text(json.dumps([old]))
    new = osse_gpu_fold.fold(src, tmp_path, tmp_path)
    records = json.loads((tmp_path / "osse_recon.json").read_text())
    assert records == new and records[0]["vae_rmse"] == 3.0 and records[0]["n_fit"] == 5868
    md = (tmp_path / "osse_gpu_sweep.md").read_text()
    assert "| base-d64 | 64 | 3.0000 | 2.9 | 3.1000 | 2.95 | 0.968 | 4 / 13 | patience" in md
    assert "1.0000 -> 0.9000 (ep 1) -> 0.9500" in md and "budget: long-d64" in md
    assert (
        "| gpu-base-d64 | 64 | 3.0000 | 3.1000 | 0.968 | 2.9 | 4 / 13 |"
        in (tmp_path / "osse_recon.md").read_text()
    )
