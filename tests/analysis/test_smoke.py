"""Every script under ``analysis/`` runs with tiny arguments and writes its outputs.

Each script runs in a fresh process, as its results record it, ``python -m
analysis.<study>.<script> ...`` from the repository root, with arguments that make it small
(a few times, a few draws, one network, one epoch) and every output in a temporary folder,
never over the committed results or the user's caches of simulations and models. A case
passes when the process exits 0 and the files it should write exist and are not empty.

What the cases need, and skip without: the NCEP data (``BAYESDA_DATA_DIR``) and the shipped
model for the real-data studies; the ``osse`` extra (dinosaur) for the Held-Suarez studies
and pyqg-jax for the QG ones, which run on tiny stores simulated here (160 snapshots, 40
days: enough for the 7-day block split); the r-cran-fields station file for
``elevation``. ``analysis/gpu/*.sh`` (the prepared GPU benchmark, which needs a device and
wheels from a registry) and ``analysis/osse/osse_full.sh`` (which simulates into the user's
cache; each of its steps is a case here) are not run.

Slow: ``python -m pytest -m slow tests/analysis/test_smoke.py`` took 1710 s (29 minutes) of
wall time on the project's shared 2-core machine at a load average of 8-10 (48 cases;
elevation skipped without its station file); the longest cases: real_obs.cv 376 s, bench_gpu
130 s. One case alone: ``-k <script>``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import NamedTuple

import pytest

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "ncep-air"
TIMEOUT_S = 1200
SNAPSHOTS = 160  # 40 days of 6-hourly snapshots: train, validation and test blocks


class Case(NamedTuple):
    """One script run: its module, arguments (``{name}`` fields filled from fixtures and
    ``{out}``, the case's own folder) and the files (under ``{out}``) it must write."""

    module: str
    args: tuple[str, ...]
    outputs: tuple[str, ...]
    needs: tuple[str, ...] = ()


def _data_dir() -> pathlib.Path | None:
    d = os.environ.get("BAYESDA_DATA_DIR")
    return pathlib.Path(d) if d and (pathlib.Path(d) / "ncep-air").is_dir() else None


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _rda() -> pathlib.Path | None:
    from analysis.elevation.elevation import DEFAULT_RDA

    return next((p for p in DEFAULT_RDA if p.is_file()), None)


NEEDS = {
    "ncep": (lambda: _data_dir() is not None and MODEL.is_dir(), "no NCEP data or shipped model"),
    "dinosaur": (lambda: _have("dinosaur"), "the osse extra (dinosaur) is not installed"),
    "pyqg": (lambda: _have("pyqg_jax"), "pyqg-jax is not installed"),
    "rda": (lambda: _rda() is not None, "r-cran-fields' COmonthlyMet.rda is not available"),
}


def run_script(module: str, args: list[str], log: pathlib.Path) -> float:
    """Run ``python -m module args`` from the repository root; fail with its output's tail."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.setdefault("MPLBACKEND", "Agg")
    env.pop("OUT", None)  # osse_gpu_sweep writes to $OUT when it is set
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    wall = time.perf_counter() - t0
    log.write_text(f"{module} {' '.join(args)}\n{wall:.1f} s\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode != 0:
        pytest.fail(
            f"python -m {module} {' '.join(args)} exited {proc.returncode}:\n"
            f"{(proc.stdout + proc.stderr)[-4000:]}"
        )
    return wall


# --------------------------------------------------------------------------------------------
# Shared inputs: tiny simulated stores, models trained on them, the GPU sweep's files
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("analysis_smoke")


@pytest.fixture(scope="session")
def hs(work) -> pathlib.Path:
    """A Held-Suarez store of the tiny preset, 160 snapshots (with its restart states)."""
    if not NEEDS["dinosaur"][0]():
        pytest.skip(NEEDS["dinosaur"][1])
    from bayesda.sim.heldsuarez import PRESETS, simulate

    cfg = dataclasses.replace(PRESETS["tiny"], n_snapshots=SNAPSHOTS, chunk=80)
    return simulate(cfg, work / "hs.zarr").path


@pytest.fixture(scope="session")
def qg(work) -> pathlib.Path:
    """A QG store of the tiny preset (16 x 16), 160 snapshots."""
    if not NEEDS["pyqg"][0]():
        pytest.skip(NEEDS["pyqg"][1])
    from bayesda.sim.qg import PRESETS, simulate_qg

    cfg = dataclasses.replace(PRESETS["tiny"], n_snapshots=SNAPSHOTS, chunk=80)
    return simulate_qg(cfg, work / "qg.zarr").path


def _train(work: pathlib.Path, store: pathlib.Path, var: str, tag: str) -> pathlib.Path:
    out = work / f"train-{tag}"
    out.mkdir(exist_ok=True)
    args = ["--store", str(store), "--var", var, "--dims", "4", "--epochs", "1", "--patience"]
    args += ["1", "--warmup-epochs", "0", "--tag", tag, "--models-dir", str(out / "models")]
    run_script("analysis.osse.osse_train", [*args, "--out-dir", str(out)], out / "log.txt")
    return out / "models" / f"{tag}-d4"


@pytest.fixture(scope="session")
def hs_model(work, hs) -> pathlib.Path:
    """A latent-4 VAE trained for one epoch on the tiny Held-Suarez store (osse_train)."""
    return _train(work, hs, "tas", "smoke")


@pytest.fixture(scope="session")
def qg_model(work, qg) -> pathlib.Path:
    """A latent-4 VAE trained for one epoch on the tiny QG store's q (osse_train)."""
    return _train(work, qg, "q", "qg-smoke")


@pytest.fixture(scope="session")
def hs_export(work, hs) -> pathlib.Path:
    """The tiny Held-Suarez store's tas in the GPU sweep's file (osse_export)."""
    out = work / "export.npz"
    args = ["--store", str(hs), "--var", "tas", "--out", str(out)]
    run_script("analysis.osse_gpu.osse_export", args, work / "export.log")
    return out


@pytest.fixture(scope="session")
def sweep_lines(work, hs_export) -> pathlib.Path:
    """One tiny run of the GPU sweep on CPU (osse_gpu_sweep --tiny)."""
    out = work / "sweep"
    args = [str(hs_export), "--tiny", "--runs", "base-d32", "--budget-s", "120"]
    args += ["--min-run-s", "1", "--refine-steps", "2", "--out", str(out)]
    run_script("analysis.osse_gpu.osse_gpu_sweep", args, work / "sweep.log")
    return out / "osse_gpu_sweep_tiny.jsonl"


@pytest.fixture(scope="session")
def model_copy(work) -> pathlib.Path:
    """A copy of the shipped model (train_ncep rewrites the card of the model it evaluates)."""
    if not MODEL.is_dir():
        pytest.skip(NEEDS["ncep"][1])
    dst = work / "ncep-air-copy"
    if not dst.exists():
        shutil.copytree(MODEL, dst)
    return dst


# --------------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------------

NCEP = ("ncep",)
HS = ("dinosaur",)
QG = ("pyqg",)
CASES = [
    # real data, shipped model
    Case(
        "analysis.skill.benchmark_skill",
        ("--quick", "--n-times", "2", "--networks", "uniform-10", "--warmup", "10", "--draws")
        + ("10", "--out-dir", "{out}", "--fig-dir", "{out}"),
        ("skill_quick.md", "skill_quick.csv", "calibration_quick_coverage.png"),
        NCEP,
    ),
    Case(
        "analysis.window.fit_dynamics",
        ("--model", "{model_copy}", "--members", "2", "--mlp-steps", "10", "--out")
        + ("{out}/dynamics.json",),
        ("dynamics.json",),
        NCEP,
    ),
    Case(
        "analysis.window.evaluate",
        ("--windows", "1", "--tune-windows", "1", "--networks", "20", "--layouts", "fixed,gap")
        + ("--draws", "20", "--out", "{out}/window.json"),
        ("window.json", "window.csv"),
        NCEP,
    ),
    Case(
        "analysis.window.target_accept",
        ("0.6", "--chains", "2", "--warmup", "10", "--draws", "10", "--out", "{out}/t.json"),
        ("t.json",),
        NCEP,
    ),
    Case(
        "analysis.synthetic_check.synthetic_check",
        ("--quick", "--n-train", "60", "--n-val", "20", "--n-test", "1", "--n-recon", "10")
        + ("--epochs", "1", "--latent-dim", "4", "--networks", "10", "--warmup", "10")
        + ("--draws", "10", "--no-progress", "--out-dir", "{out}"),
        ("synthetic_check_quick.md", "synthetic_check_quick.json", "synthetic_check_quick.png"),
        NCEP,
    ),
    Case(
        "analysis.ncep_prior.train_ncep",
        ("--skip-train", "--out", "{model_copy}", "--results", "{out}/vae", "--figure")
        + ("{out}/vae.png",),
        ("vae.json", "vae.md", "vae_maps.npz", "vae.png"),
        NCEP,
    ),
    Case(
        "analysis.repr_error.repr_error_structure",
        ("--structures", "0", "--networks", "uniform-20", "--n-times", "2", "--max-rank")
        + ("20", "--out", "{out}/repr"),
        ("repr.md", "repr.json"),
        NCEP,
    ),
    Case(
        "analysis.decoder.bench_decoder",
        ("--model", str(MODEL), "--out", "{out}/decoder.json"),
        ("decoder.json",),
        NCEP,
    ),
    Case(
        "analysis.assimilation_speed.bench_assimilation",
        ("--devices", "2", "--chains", "2", "--warmup", "10", "--draws", "10", "--no-demo")
        + ("--out", "{out}/bench.md"),
        ("bench.md", "bench.json"),
        NCEP,
    ),
    Case(
        "analysis.demo.bench_demo",
        ("--root", f"here={ROOT}", "--repeats", "1", "--out", "{out}/demo"),
        ("demo.md", "demo.json"),
        NCEP,
    ),
    Case(
        "analysis.demo.bench_demo_inprocess",
        ("--calls", "1", "--out", "{out}/inprocess.json"),
        ("inprocess.json",),
        NCEP,
    ),
    Case(
        "analysis.model_load.bench_model_load",
        ("--root", f"here={ROOT}", "--repeats", "1", "--out", "{out}/load"),
        ("load.md", "load.json"),
        NCEP,
    ),
    Case(
        "analysis.compiled_growth.bench_compiled_growth",
        ("--n-calls", "2", "--every", "1", "--chains", "2", "--warmup", "5", "--draws", "5")
        + ("--out", "{out}/growth"),
        ("growth.md", "growth.json"),
        NCEP,
    ),
    Case(
        "analysis.throughput.bench_reanalysis",
        ("--n-times", "2", "--chains", "2", "--warmup", "10", "--draws", "10")
        + ("--batch-times", "2", "--out", "{out}/rean"),
        ("rean.md", "rean.json"),
        NCEP,
    ),
    Case(
        "analysis.throughput.bench_reanalysis_commits",
        ("--root", f"here={ROOT}", "--n-times", "1", "--repeats", "1", "--chains", "2")
        + ("--warmup", "10", "--draws", "10", "--out", "{out}/commits.json"),
        ("commits.json",),
        NCEP,
    ),
    Case(
        "analysis.throughput.bench_gpu",
        ("--k", "1,2", "--warmup", "10", "--draws", "10", "--verdict-k", "1", "--ref-draws")
        + ("20", "--out", "{out}/throughput.json", "--verdict-out", "{out}/verdict.json"),
        ("throughput.json", "verdict.json"),
        NCEP,
    ),
    Case(
        "analysis.profile_phases.profile_phases",
        ("--n-times", "1", "--warmup", "10", "--draws", "10", "--sweep", "10")
        + ("--sweep-times", "1", "--out", "{out}/phases"),
        ("phases.json",),
        NCEP,
    ),
    Case(
        "analysis.warmup.warmup_sweep",
        ("--warmups", "10", "--n-times", "1", "--seeds", "1", "--ref-draws", "20")
        + ("--out", "{out}/warmup"),
        ("warmup.md", "warmup.json"),
        NCEP,
    ),
    Case(
        "analysis.resonance.resonance",
        ("--shipped", "1", "--out-dir", "{out}"),
        ("resonance.md", "resonance.json"),
        NCEP,
    ),
    Case(
        "analysis.lockstep.lockstep_tail",
        ("--k", "1", "--draws", "5", "--out", "{out}/lockstep"),
        ("lockstep.md", "lockstep.json"),
        NCEP,
    ),
    Case(
        "analysis.verdict_rates.verdict_rates",
        ("--n-linear", "1", "--n-far", "1", "--n-short", "1", "--n-shipped", "1")
        + ("--ref-draws", "20", "--batch", "1", "--warmup", "10", "--draws", "10")
        + ("--out", "{out}/verdict", "--rows", "{out}/rows.json"),
        ("verdict.md", "verdict.json", "rows.json"),
        NCEP,
    ),
    Case(
        "analysis.gross_error.gross_error",
        ("--n-times", "1", "--out", "{out}/gross"),
        ("gross.md", "gross.json"),
        NCEP,
    ),
    Case(
        "analysis.gross_error.studentt_matheron",
        ("--out", "{out}/studentt.json"),
        ("studentt.json",),
        NCEP,
    ),
    Case(
        "analysis.source_shift.source_shift",
        ("--n-times", "1", "--shifts", "none,finer", "--modes", "off,auto", "--networks")
        + ("50", "--out", "{out}/shift"),
        ("shift.md", "shift.json"),
        NCEP,
    ),
    Case(
        "analysis.source_shift.learned",
        ("--n-times", "1", "--shifts", "finer", "--networks", "20", "--out", "{out}/learned"),
        ("learned.md", "learned.json"),
        NCEP,
    ),
    Case(
        "analysis.real_obs.speed",
        ("--repeats", "1", "--out", "{out}/speed.json"),
        ("speed.json", "speed.md"),
    ),
    Case(
        "analysis.source_shift.source_shift_diagnose",
        ("--n-times", "1", "--out", "{out}/diagnosis"),
        ("diagnosis.md", "diagnosis.json"),
        NCEP,
    ),
    Case(
        "analysis.climate_offset.climate_offset",
        ("--n-times", "1", "--out", "{out}/offset"),
        ("offset.md", "offset.json"),
        NCEP,
    ),
    Case(
        "analysis.elevation.elevation",
        ("--n-times", "1", "--n-stations", "20", "--n-withheld", "5", "--out", "{out}/elev"),
        ("elev.md", "elev.json"),
        ("ncep", "rda"),
    ),
    Case(
        "analysis.real_obs.cv",
        ("--networks", "50", "--out", "{out}/real_obs.json"),
        ("real_obs.json", "real_obs.md"),
        NCEP,
    ),
    Case(
        "analysis.calibrate_enough.calibrate_enough",
        ("--trials", "2", "--n", "8", "--hostile-trials", "1", "--n-boot", "5")
        + ("--out", "{out}/enough"),
        ("enough.json", "enough.md"),
    ),
    Case(
        "analysis.gaussianity.ncep_structure",
        ("--out-dir", "{out}"),
        ("ncep_structure.md", "ncep_structure.json"),
        NCEP,
    ),
    # simulated weather (tiny stores)
    Case(
        "analysis.gaussianity.osse_stats",
        ("--store", "{hs}", "--variables", "tas", "--out-dir", "{out}"),
        ("osse_stats.md", "osse_stats.json", "osse_moments.png"),
        HS,
    ),
    Case(
        "analysis.gaussianity.osse_nongauss",
        ("--store", "{hs}", "--only", "tas,wind_speed", "--dims", "2", "--no-null")
        + ("--out-dir", "{out}"),
        ("osse_nongauss.md", "osse_nongauss.json"),
        HS,
    ),
    Case(
        "analysis.gaussianity.osse_variants",
        ("--timing", "T21", "60", "--out-dir", "{out}"),
        ("osse_variants.md", "osse_variants.json"),
        HS,
    ),
    Case(
        "analysis.gaussianity.qg_stats",
        ("--store", "{qg}", "--variables", "q", "--null-dims", "2", "--quad-dims", "2,4")
        + ("--out-dir", "{out}"),
        ("qg_stats.md", "qg_stats.json"),
        QG,
    ),
    Case(
        "analysis.osse.osse_train",
        (),  # run by the hs_model fixture
        (),
        HS,
    ),
    Case(
        "analysis.osse.osse_pca",
        ("--store", "{hs}", "--dims", "2,4", "--out-dir", "{out}"),
        ("osse_pca_tas.json",),
        HS,
    ),
    Case(
        "analysis.osse.osse_prior_check",
        ("--model-dir", "{hs_model}", "--store", "{hs}", "--n", "20", "--out-dir", "{out}"),
        ("osse_prior_check.json",),
        HS,
    ),
    Case(
        "analysis.osse.osse_assimilate",
        ("--model-dir", "{hs_model}", "--store", "{hs}", "--n-times", "2", "--networks")
        + ("uniform-10", "--methods", "nuts", "laplace", "oi", "climatology", "--stride", "1")
        + ("--chains", "2", "--warmup", "10", "--draws", "10", "--out-dir", "{out}"),
        ("osse_skill.md", "osse_skill.csv", "osse_calibration_coverage.png"),
        HS,
    ),
    Case(
        "analysis.osse.osse_maps",
        ("--model-dir", "{hs_model}", "--store", "{hs}", "--max-snapshots", str(SNAPSHOTS))
        + ("--network", "uniform-10", "--n-times", "2", "--which", "0", "--out")
        + ("{out}/maps.png",),
        ("maps.png",),
        HS,
    ),
    Case(
        "analysis.osse.osse_report",
        ("--out-dir", "{out}"),
        ("osse.md", "osse.csv", "osse_summary.json"),
    ),
    Case(
        "analysis.osse.osse_ship",
        ("--model-dir", "{hs_model}", "--out", "{out}/hs-smoke"),
        ("hs-smoke/model.json", "hs-smoke/MODEL_CARD.md"),
        HS,
    ),
    Case(
        "analysis.osse.osse_bench_simulator",
        ("T21", "2", "60", "1", "1"),
        (),
        HS,
    ),
    Case(
        "analysis.osse_gpu.osse_export",
        (),  # run by the hs_export fixture
        (),
        HS,
    ),
    Case(
        "analysis.osse_gpu.osse_gpu_sweep",
        (),  # run by the sweep_lines fixture
        (),
        HS,
    ),
    Case(
        "analysis.osse_gpu.osse_gpu_fold",
        ("{sweep_lines}", "--out-dir", "{out}", "--recon-dir", "{out}"),
        ("osse_gpu_sweep.md", "osse_recon.json", "osse_recon.md", "osse.md"),
        HS,
    ),
    Case(
        "analysis.winds_pressure.osse_winds_pressure",
        ("--store", "{hs}", "--max-snapshots", str(SNAPSHOTS), "--n-times", "2", "--dims")
        + ("2", "--n-samples", "20", "--out-dir", "{out}"),
        ("osse_winds_pressure.md", "osse_winds_pressure.json"),
        HS,
    ),
    Case(
        "analysis.qg_selfcheck.qg_selfcheck",
        ("--model-dir", "{qg_model}", "--store", "{qg}", "--max-snapshots", "120", "--far")
        + ("120:160", "--networks", "uniform-10", "--n-times", "2", "--assimilate")
        + ("--out-dir", "{out}"),
        ("qg_selfcheck.md", "qg_selfcheck.json"),
        QG,
    ),
    Case(
        "analysis.split_independence.split_independence",
        ("--dataset", "qg:q", "--store", "{qg}", "--train-snapshots", "120", "--far")
        + ("120:160", "--model-dir", "{qg_model}", "--probe-dims", "2", "--out-dir", "{out}"),
        ("split_independence.md", "split_independence.json"),
        QG,
    ),
]
FIXTURE_OUTPUTS = {  # cases whose script a fixture runs: the fixture and what it must leave
    "analysis.osse.osse_train": ("hs_model", ("model.json", "params.npz")),
    "analysis.osse_gpu.osse_export": ("hs_export", ()),
    "analysis.osse_gpu.osse_gpu_sweep": ("sweep_lines", ()),
}
FIELDS = ("hs", "qg", "hs_model", "qg_model", "model_copy", "sweep_lines")


def test_every_script_has_a_case():
    scripts = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "analysis").rglob("*.py")
        if p.name != "__init__.py" and p.parent.name != "common"
    }
    assert scripts == {c.module for c in CASES}


@pytest.mark.parametrize(
    "script", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "analysis").rglob("*.sh"))
)
def test_shell_script_parses(script):
    """The shell scripts that are not run here (see the module docstring) at least parse."""
    proc = subprocess.run(["bash", "-n", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.module.rsplit(".", 1)[1] for c in CASES])
def test_script_runs_with_tiny_arguments(case: Case, request, tmp_path):
    for need in case.needs:
        ok, why = NEEDS[need]
        if not ok():
            pytest.skip(why)
    if case.module in FIXTURE_OUTPUTS:
        name, files = FIXTURE_OUTPUTS[case.module]
        path = pathlib.Path(request.getfixturevalue(name))
        assert path.exists() and all((path / f).stat().st_size > 0 for f in files)
        return
    text = " ".join(case.args)
    values = {k: request.getfixturevalue(k) for k in FIELDS if "{" + k + "}" in text}
    args = [a.format(out=tmp_path, **values) for a in case.args]
    run_script(case.module, args, tmp_path / "log.txt")
    for name in case.outputs:
        path = tmp_path / name
        assert path.is_file() and path.stat().st_size > 0, f"{case.module} did not write {name}"
