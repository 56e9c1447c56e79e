"""Hostile and careless use (issue 14): one case per failure found, each refused cleanly.

Every case here failed on main at 5d0ee61 (data lost, a silent wrong answer, an empty or
torn output, or a traceback instead of one line) and must pass now. The ids name the
issue's items. Everything runs on tiny synthetic models (MAP + Laplace where a run is
needed), so the table is fast.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesda.cli import assim
from bayesda.cli import main as cli
from bayesda.settings import ModelOptions, SamplerSettings
from bayesda.testing import make_linear_prior, make_obs

FAST = ["--method", "laplace", "--chains", "2", "--warmup", "50", "--draws", "50", "--no-progress"]
TIME = "2014-01-07T12:00"
LAPLACE = SamplerSettings(method="laplace")


# --------------------------------------------------------------------------------------
# fixtures: a tiny prior with a climatology, its observations, a finished run
# --------------------------------------------------------------------------------------


def _tiny_tas(grid, times, seed=0):
    rng = np.random.default_rng(seed)
    t = pd.DatetimeIndex(times)
    season = -12.0 * np.cos(2 * np.pi * (t.day_of_year.to_numpy() - 15) / 365.25)
    base = 275.0 - 0.6 * (grid.lat[:, None] - 38.0) + 0.0 * grid.lon[None, :]
    values = base[None] + season[:, None, None]
    values = values + 3.0 * rng.standard_normal((t.size, *grid.shape))
    return xr.DataArray(
        values.astype(np.float32),
        dims=("time", "lat", "lon"),
        coords={"time": t.values, **grid.coords()},
        name="tas",
        attrs={"units": "K"},
    )


@pytest.fixture(scope="module")
def clim_prior():
    from bayesda.data.climatology import Climatology

    prior = make_linear_prior()
    times = pd.date_range("2013-01-01", "2014-12-31 18:00", freq="6h")
    clim = Climatology.fit(_tiny_tas(prior.grid, times))
    return dataclasses.replace(prior, climatology=clim)


@pytest.fixture()
def tiny(monkeypatch, tmp_path, clim_prior):
    monkeypatch.setattr(assim, "load_prior", lambda path: clim_prior)
    obs = make_obs(clim_prior.grid, 10, seed=4)
    path = tmp_path / "obs.csv"
    obs.to_csv(path, index=False)
    return clim_prior, path


def _assimilate(obs_path, out, *extra):
    return cli.main(
        ["assimilate", "--model", "m", "--obs", str(obs_path), "--out", str(out), *FAST, *extra]
    )


@pytest.fixture(scope="module")
def _finished_run(clim_prior, tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    obs = make_obs(clim_prior.grid, 10, seed=4)
    assim.assimilate_to_run(
        clim_prior, obs, run, time=np.datetime64(TIME), sampler=LAPLACE, progress_bar=False
    )
    return run


@pytest.fixture()
def run_dir(_finished_run, tiny, tmp_path):
    """A copy of one finished run (made once per module)."""
    return Path(shutil.copytree(_finished_run, tmp_path / "run"))


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert "error:" in last
    for needle in needles:
        assert needle.lower() in last.lower(), (needle, last)
    return last


def _user_dir(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    (d / "chunk.partial").write_text("not bayesda's")
    return d


# --------------------------------------------------------------------------------------
# Data loss
# --------------------------------------------------------------------------------------


def test_demo_out_refuses_a_directory_that_is_not_a_run(tiny, tmp_path, capsys):
    """`bayesda demo --out DIR` replaced any directory: the demo calls this with force=True."""
    prior, obs_path = tiny
    mine = _user_dir(tmp_path)
    obs = make_obs(prior.grid, 10, seed=4)
    with pytest.raises(ValueError, match="not a bayesda run"):
        assim.assimilate_to_run(prior, obs, mine, force=True, sampler=LAPLACE, progress_bar=False)
    assert sorted(p.name for p in mine.iterdir()) == ["chunk.partial", "thesis.tex"]
    assert cli.main(["demo", "--out", str(mine)]) == 1  # refused before any work
    _one_line_error(capsys, str(mine), "--force")
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_reanalyse_out_refuses_an_ordinary_directory(clim_prior, tmp_path):
    """`reanalyse --out DIR` deleted every *.partial under DIR, then failed."""
    from bayesda.workflows.reanalysis import ReanalysisSettings, reanalyse

    mine = _user_dir(tmp_path)
    obs = make_obs(clim_prior.grid, 6, seed=1).assign(time=pd.Timestamp(TIME))
    with pytest.raises(ValueError, match="not a bayesda store"):
        reanalyse(
            clim_prior, obs, mine, settings=ReanalysisSettings(method="laplace"), progress=False
        )
    assert sorted(p.name for p in mine.iterdir()) == ["chunk.partial", "thesis.tex"]


def test_reanalyse_never_deletes_a_live_writers_temporary_chunks(finished_store):
    """The *.partial clean-up could delete another live process's chunks: now it runs only
    under the store's lock, so a second process is refused and deletes nothing."""
    from bayesda.runtime import files

    out, run = finished_store
    live = out / "mean" / "c" / "0" / "0" / "0.0123abc.partial"
    live.write_bytes(b"being written by a live process")
    with files.lock(out), pytest.raises(files.LockedError, match=f"pid {os.getpid()}"):
        run()
    assert live.exists()


# --------------------------------------------------------------------------------------
# Silent wrong answers: units and kinds
# --------------------------------------------------------------------------------------


def _obs_values(prior, kind):
    """Observations at TIME: anomalies (K), or absolute temperatures in K."""
    from bayesda.obs.table import climatology_at

    obs = make_obs(prior.grid, 12, seed=3)
    if kind == "absolute":
        clim = climatology_at(prior.climatology, obs["lat"], obs["lon"], np.datetime64(TIME))
        obs["value"] = clim + obs["value"]
    return obs


UNIT_CASES = [
    # (id, true kind, conversion of K values, declared units, declared kind, expected hint)
    ("celsius-read-as-kelvin", "absolute", lambda v: v - 273.15, "K", "absolute", "--units degC"),
    ("kelvin-declared-celsius", "absolute", lambda v: v, "degC", "absolute", "--units K"),
    ("absolute-given-as-anomaly", "absolute", lambda v: v, "K", "anomaly", "--kind absolute"),
    ("anomaly-given-as-absolute", "anomaly", lambda v: v, "K", "absolute", "--kind anomaly"),
]


@pytest.mark.parametrize(
    "kind, convert, units, declared, hint",
    [pytest.param(*c[1:], id=c[0]) for c in UNIT_CASES],
)
def test_wrong_units_or_kind_is_refused_with_the_likely_mistake(
    clim_prior, tmp_path, kind, convert, units, declared, hint
):
    from bayesda.obs.table import read_obs

    obs = _obs_values(clim_prior, kind)
    obs["value"] = convert(obs["value"])
    path = tmp_path / "obs.csv"
    obs.to_csv(path, index=False)
    with pytest.raises(ValueError, match="row 0") as err:
        read_obs(
            path,
            units=units,
            kind=declared,
            climatology=clim_prior.climatology,
            time=TIME,
            grid=clim_prior.grid,
        )
    assert hint in str(err.value) and str(path) in str(err.value)


def test_assimilate_takes_units_and_kind(tiny, tmp_path):
    """`assimilate` had no --units: Celsius temperatures can now be declared."""
    prior, _ = tiny
    obs = _obs_values(prior, "absolute")
    obs["value"] -= 273.15
    path = tmp_path / "celsius.csv"
    obs.to_csv(path, index=False)
    run = tmp_path / "run"
    rc = _assimilate(path, run, "--time", TIME, "--units", "degC", "--kind", "absolute")
    assert rc == 0
    used = pd.read_csv(run / "obs.csv")
    assert np.abs(used["value"]).max() < 15.0  # anomalies in K, not -273 K


# --------------------------------------------------------------------------------------
# Silent wrong answers: model files, runs, stores, size
# --------------------------------------------------------------------------------------


@pytest.fixture()
def tiny_model(tmp_path, clim_prior):
    from bayesda.data.climatology import Climatology
    from bayesda.geo.grid import Grid
    from bayesda.prior.checkpoint import save_model
    from bayesda.prior.representation import RepresentationError
    from bayesda.testing import TINY_VAE as CONFIG
    from bayesda.testing import vae_params as make_params

    grid = Grid(lat=np.linspace(40.0, 50.0, 5), lon=np.linspace(-10.0, 2.0, 7))
    times = pd.date_range("2013-01-01", "2013-12-31 18:00", freq="6h")
    clim = Climatology.fit(_tiny_tas(grid, times))
    rep = RepresentationError(
        np.zeros((1, *grid.shape), np.float32), np.full(grid.shape, 0.1, np.float32)
    )
    path = save_model(
        tmp_path / "model",
        params=make_params(),
        config=CONFIG,
        grid=grid,
        norm_mean=np.zeros(grid.shape),
        norm_sd=np.ones(grid.shape),
        repr_error=rep,
        climatology=clim,
    )
    return path, clim


def test_model_file_missing_from_the_hash_list_is_refused(tiny_model):
    """A climatology shifted by 10 K, its hash dropped from model.json, was used silently."""
    from bayesda.data.climatology import Climatology
    from bayesda.prior.checkpoint import CheckpointError, load_model

    path, clim = tiny_model
    ds = clim.dataset.copy(deep=True)
    ds["mean_coef"][:, 0] += 10.0
    (path / "climatology.nc").unlink()
    Climatology(ds).to_netcdf(path / "climatology.nc")
    card = json.loads((path / "model.json").read_text())
    del card["files"]["climatology.nc"]
    (path / "model.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="climatology.nc.*not covered"):
        load_model(path)


def test_shipped_model_hashes_every_file_it_loads():
    from bayesda.prior.checkpoint import LOADED_FILES, read_card

    model = Path(__file__).resolve().parents[1] / "models" / "ncep-air"
    files = read_card(model)["files"]  # verifies every listed hash too
    assert set(LOADED_FILES) | {"climatology.nc"} <= set(files)


def test_keep_samples_negative_is_refused_by_the_settings_too():
    from bayesda.workflows.reanalysis import ReanalysisSettings

    with pytest.raises(ValueError, match="keep_samples must be >= 0"):
        ReanalysisSettings(keep_samples=-1)


def test_two_runs_with_the_same_out_cannot_both_win(tiny, tmp_path, monkeypatch, capsys):
    """Two `assimilate` runs with one --out both reported success; the second replaced the
    first. Here the second starts while the first is working: it is refused."""
    import bayesda.inference.assimilate
    from bayesda.runtime import files

    _, obs_path = tiny
    run = tmp_path / "run"
    real = bayesda.inference.assimilate.assimilate
    inner = {}

    def assimilate_while_another_starts(*args, **kwargs):
        # preflight fits the model too (QC, the check): start the second run only once the
        # first holds its lock, i.e. is writing its run
        if not inner and (run.parent / f".{run.name}.lock").exists():
            inner["rc"] = _assimilate(obs_path, run)
            inner["err"] = capsys.readouterr().err
        return real(*args, **kwargs)

    monkeypatch.setattr(bayesda.inference.assimilate, "assimilate", assimilate_while_another_starts)
    assert _assimilate(obs_path, run) == 0
    assert inner["rc"] == 1 and "another bayesda process" in inner["err"]
    assert (run / files.MARKER).is_file()


def test_force_replaces_only_a_run(tiny, run_dir, tmp_path, capsys):
    """`--force` replaced any directory, not only a run directory as its help says."""
    _, obs_path = tiny
    mine = _user_dir(tmp_path)
    assert _assimilate(obs_path, mine, "--force") == 1
    _one_line_error(capsys, "not a bayesda run", "even with --force")
    assert (mine / "thesis.tex").read_text() == "years of work"
    run = run_dir
    assert _assimilate(obs_path, run) == 1  # a run: only with --force
    assert _assimilate(obs_path, run, "--force", "--seed", "3") == 0
    assert json.loads((run / "run.json").read_text())["settings"]["seed"] == 3


STORE_OBS_TIMES = pd.date_range(TIME, periods=3, freq="6h")


@pytest.fixture(scope="module")
def store_obs_csv(clim_prior, tmp_path_factory):
    """Observations of three times, as a CSV (what the command line reads)."""
    frames = [
        make_obs(clim_prior.grid, 6 + k, seed=k).assign(time=t)
        for k, t in enumerate(STORE_OBS_TIMES)
    ]
    path = tmp_path_factory.mktemp("store-obs") / "obs.csv"
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path


def _store_obs(csv, prior):
    from bayesda.workflows.reanalysis import read_obs_source

    return read_obs_source(csv, climatology=prior.climatology, grid=prior.grid)


@pytest.fixture(scope="module")
def _store_once(clim_prior, store_obs_csv, tmp_path_factory):
    from bayesda.workflows.reanalysis import ReanalysisSettings, reanalyse

    out = tmp_path_factory.mktemp("store") / "r.zarr"
    reanalyse(
        clim_prior,
        _store_obs(store_obs_csv, clim_prior),
        out,
        settings=ReanalysisSettings(method="laplace"),
        progress=False,
    )
    return out


@pytest.fixture()
def finished_store(_store_once, clim_prior, store_obs_csv, tmp_path):
    """A copy of one finished 3-time store (made once per module), and a rerun of it."""
    from bayesda.workflows.reanalysis import ReanalysisSettings, reanalyse

    out = Path(shutil.copytree(_store_once, tmp_path / "r.zarr"))
    obs = _store_obs(store_obs_csv, clim_prior)

    def run(**kw):
        return reanalyse(
            clim_prior,
            obs,
            out,
            settings=ReanalysisSettings(method="laplace"),
            progress=False,
            **kw,
        )

    return out, run


@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
def test_damaged_chunk_of_a_finished_store_is_found_and_redone(finished_store, damage):
    """A deleted chunk read back as all NaN and the rerun said 12/12 done."""
    from bayesda.outputs import store

    out, run = finished_store
    before = xr.open_zarr(out, consolidated=False)["mean"].values
    chunk = out / "mean" / "c" / "1" / "0" / "0"
    if damage == "deleted":
        chunk.unlink()
    else:
        chunk.write_bytes(os.urandom(chunk.stat().st_size))
    assert list(store.verify(out)) == [1]
    found = {}
    run(report=found.update)
    assert list(found) == [1]
    after = xr.open_zarr(out, consolidated=False)["mean"].values
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    assert store.verify(out) == {}


def test_reanalyse_verify_reports_and_redoes_a_damaged_time(
    finished_store, clim_prior, store_obs_csv, monkeypatch, capsys
):
    import bayesda.prior.checkpoint
    import bayesda.workflows.reanalysis

    out, _ = finished_store
    monkeypatch.setattr(bayesda.prior.checkpoint, "load_model", lambda path: clim_prior)
    monkeypatch.setattr(bayesda.workflows.reanalysis, "cached_prior", lambda path: clim_prior)
    obs = store_obs_csv
    (out / "sd" / "c" / "2" / "0" / "0").unlink()
    argv = [
        "reanalyse",
        "--model",
        "m",
        "--obs",
        str(obs),
        "--out",
        str(out),
        "--method",
        "laplace",
        "--no-progress",
        "--verify",
    ]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "verify: time 2 (2014-01-08T00:00:00) damaged" in captured.err
    assert "3/3 times done" in captured.out
    assert np.isfinite(xr.open_zarr(out, consolidated=False)["sd"].values).all()
    assert cli.main(argv) == 0
    assert "every finished time matches its checksum" in capsys.readouterr().err


@pytest.mark.parametrize("part", ["done-chunk", "zarr.json"])
def test_corrupted_store_metadata_is_one_line_naming_the_store(finished_store, part):
    out, run = finished_store
    target = out / "done" / "c" / "1" if part == "done-chunk" else out / "zarr.json"
    target.write_bytes(b"\x00garbage" + target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(ValueError, match="is damaged") as err:
        run()
    assert str(out) in str(err.value) and "\n" not in str(err.value)


def test_two_processes_creating_one_store_leave_nothing_behind(clim_prior, tmp_path, monkeypatch):
    """The loser of the creation race crashed and left a hidden `.creating` directory."""
    from bayesda.runtime import files
    from bayesda.workflows.reanalysis import ReanalysisSettings, reanalyse

    obs = make_obs(clim_prior.grid, 6, seed=1).assign(time=pd.Timestamp(TIME))
    out = tmp_path / "r.zarr"
    real = xr.Dataset.to_zarr

    def other_process_wins(self, path, *args, **kwargs):
        result = real(self, path, *args, **kwargs)
        if not out.exists():  # the winner renames its store into place first
            out.mkdir()
            (out / "zarr.json").write_text('{"attributes": {"bayesda_signature": "{}"}}')
        return result

    monkeypatch.setattr(xr.Dataset, "to_zarr", other_process_wins)
    with pytest.raises(files.OutputError, match="another process"):
        reanalyse(
            clim_prior, obs, out, settings=ReanalysisSettings(method="laplace"), progress=False
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr"]


def test_too_many_observations_are_refused_before_work_with_an_estimate(monkeypatch, clim_prior):
    """20,000 observations were killed by the OOM killer in prepare_obs, with no message."""
    from bayesda.inference.assimilate import prepare_obs
    from bayesda.obs import capacity

    monkeypatch.setattr(capacity, "available_memory", lambda: 2**20)
    obs = make_obs(clim_prior.grid, 400, seed=0)
    with pytest.raises(capacity.ObservationSizeError, match=r"GiB.*--superob"):
        prepare_obs(clim_prior, obs, options=ModelOptions(errors="stated"))
    # learned errors group the stations by cell: the size is bounded by the grid
    assert prepare_obs(clim_prior, obs).rows <= clim_prior.grid.size


def test_superobbing_many_observations(clim_prior):
    """The remedy: one observation per grid cell, inverse-variance weights."""
    from bayesda.obs.capacity import superob
    from bayesda.obs.operator import nearest_index

    grid = clim_prior.grid
    obs = make_obs(grid, 20_000, seed=0, sigma=0.5)
    out = superob(obs, grid)
    assert len(out) <= grid.size
    cell = nearest_index(grid, obs["lat"].to_numpy(), obs["lon"].to_numpy())
    counts = np.bincount(cell, minlength=grid.size)
    means = np.bincount(cell, weights=obs["value"], minlength=grid.size) / np.maximum(counts, 1)
    out_cell = nearest_index(grid, out["lat"].to_numpy(), out["lon"].to_numpy())
    np.testing.assert_allclose(out["value"], means[out_cell], rtol=1e-10)
    np.testing.assert_allclose(out["sigma"], 0.5 / np.sqrt(counts[out_cell]), rtol=1e-10)
    assert out.attrs["superob"] == {"n_in": 20_000, "n_out": len(out)}


# --------------------------------------------------------------------------------------
# Wrong or empty outputs
# --------------------------------------------------------------------------------------


def _capture_figure(monkeypatch):
    import matplotlib.figure

    seen = {}
    real = matplotlib.figure.Figure.savefig

    def savefig(self, *args, **kwargs):
        seen["fig"] = self
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return seen


def test_maps_without_truth_have_no_empty_panel_and_a_90_interval(run_dir, monkeypatch):
    seen = _capture_figure(monkeypatch)
    assert cli.main(["plot", str(run_dir)]) == 0
    maps = [ax for ax in seen["fig"].axes if ax.get_label() != "<colorbar>"]
    assert all(ax.collections for ax in maps), [ax.get_title() for ax in maps]
    assert any("90%" in ax.get_title() for ax in maps)


def test_coverage_skips_nan_truth_like_rmse_and_crps():
    from bayesda.geo.grid import Grid
    from bayesda.verify import metrics

    grid = Grid(lat=np.linspace(30.0, 45.0, 8), lon=np.linspace(-110.0, -90.0, 10))
    rng = np.random.default_rng(0)
    ens = xr.DataArray(
        rng.standard_normal((400, *grid.shape)), dims=("sample", "lat", "lon"), coords=grid.coords()
    )
    truth = xr.DataArray(rng.standard_normal(grid.shape), dims=("lat", "lon"), coords=grid.coords())
    half = truth.where(truth["lon"] < -100)
    mask = (truth["lon"] < -100).broadcast_like(truth)
    full = float(metrics.coverage(ens, truth, 0.9, mask=mask))
    assert float(metrics.coverage(ens, half, 0.9)) == pytest.approx(full, abs=1e-12)
    assert float(metrics.coverage_gaussian(ens.mean("sample"), ens.std("sample"), half)) == (
        pytest.approx(
            float(
                metrics.coverage_gaussian(ens.mean("sample"), ens.std("sample"), truth, mask=mask)
            ),
            abs=1e-12,
        )
    )
    post = xr.Dataset({"anomaly": ens})
    v = metrics.verify(post, half, pd.DataFrame({"lat": [30.0], "lon": [-90.0]}))
    assert float(v["coverage_90"].sel(region="all")) == pytest.approx(full, abs=1e-12)
    assert float(v["spread"].sel(region="all")) == pytest.approx(
        float(metrics.spread_skill(ens, truth, mask=mask)["spread"]), abs=1e-12
    )


@pytest.fixture()
def odd_data_file(tmp_path, tiny_model):
    """A dataset on the tiny model's grid with one all-NaN field and a few odd hours."""
    from bayesda.geo.grid import Grid
    from bayesda.prior.checkpoint import read_card

    path, _ = tiny_model
    grid = Grid.from_dict(read_card(path)["grid"])
    times = pd.date_range("2013-01-01", "2013-12-31 18:00", freq="6h")
    times = times.append(pd.DatetimeIndex(["2013-03-01T03:00", "2013-05-01T21:00"]))
    tas = _tiny_tas(grid, times.sort_values())
    tas[10] = np.nan
    f = tmp_path / "odd.nc"
    tas.to_dataset().to_netcdf(f)
    return f


@pytest.mark.parametrize("how", ["absolute", "model-climatology", "own-climatology"])
def test_obs_make_with_a_nan_field_and_irregular_hours(
    odd_data_file, tiny_model, tmp_path, capsys, how
):
    """`obs make` always fitted a climatology on the file itself (even with --absolute) and
    failed on a NaN field or odd hours; it could not use the model's climatology."""
    from bayesda.obs.table import read_obs

    model, clim = tiny_model
    out = tmp_path / "o.csv"
    extra = {
        "absolute": ["--absolute"],
        "model-climatology": ["--model", str(model)],
        "own-climatology": [],
    }[how]
    args = [
        "obs",
        "make",
        "--data",
        str(odd_data_file),
        "--time",
        "2013-02-01T12",
        "--n",
        "8",
        "--out",
        str(out),
        *extra,
    ]
    assert cli.main(args) == 0, capsys.readouterr().err
    kind = "absolute" if how == "absolute" else "anomaly"
    obs = read_obs(out, kind=kind, climatology=clim, grid=clim.grid)
    assert np.abs(obs["value"]).max() < 20.0


def test_plot_writes_maps_atomically(run_dir, monkeypatch, capsys):
    """`plot` wrote maps.png in place: a full disk destroyed the old map."""
    import matplotlib.figure

    old = (run_dir / "maps.png").read_bytes()

    def disk_full(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", disk_full)
    assert cli.main(["plot", str(run_dir)]) == 1
    _one_line_error(capsys, "disk is full")
    assert (run_dir / "maps.png").read_bytes() == old
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == [".bayesda"]


# --------------------------------------------------------------------------------------
# Unclear errors: bad arguments rejected while parsing, before any work
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, option",
    [
        pytest.param(
            ["plot", "RUN", "--fog-threshold", "nan"], "--fog-threshold", id="fog-threshold-nan"
        ),
        pytest.param(
            ["reanalyse", "--model", "M", "--obs", "O", "--out", "OUT", "--keep-samples", "-1"],
            "--keep-samples",
            id="keep-samples-negative",
        ),
        pytest.param(
            ["train", "--data", "D", "--out", "OUT", "--repr-error", "bogus"],
            "--repr-error",
            id="train-repr-error-bogus",
        ),
        pytest.param(
            ["assimilate", "--model", "M", "--obs", "O", "--out", "OUT", "--units", "rankine"],
            "--units",
            id="assimilate-units-unknown",
        ),
    ],
)
def test_bad_arguments_are_rejected_before_any_work(tmp_path, capsys, argv, option):
    argv = [str(tmp_path / a) if a in ("RUN", "M", "O", "OUT", "D") else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert option in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# Unclear errors: one line naming the file and the fix
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["out-is-a-file", "out-under-a-file", "out-under-proc"])
def test_unwritable_out_is_one_line(tiny, tmp_path, capsys, where):
    _, obs_path = tiny
    f = tmp_path / "file.txt"
    f.write_text("x")
    out = {
        "out-is-a-file": f,
        "out-under-a-file": f / "run",
        "out-under-proc": Path("/proc/bayesda-hostile/run"),
    }[where]
    assert _assimilate(obs_path, out) == 1
    _one_line_error(capsys, str(out.parent if where == "out-under-proc" else f))


def test_plot_out_is_a_directory_is_one_line(run_dir, tmp_path, capsys):
    assert cli.main(["plot", str(run_dir), "--out", str(tmp_path)]) == 1
    _one_line_error(capsys, str(tmp_path), "directory")


@pytest.mark.parametrize("command", ["data-info", "plot-truth"])
def test_csv_named_nc_names_the_file(run_dir, tmp_path, capsys, command):
    fake = tmp_path / "truth.nc"
    fake.write_text("lat,lon,value\n40,-100,1.0\n")
    argv = (
        ["data", "info", str(fake)]
        if command == "data-info"
        else ["plot", str(run_dir), "--truth", str(fake)]
    )
    assert cli.main(argv) == 1
    _one_line_error(capsys, str(fake), "netcdf")


def test_disk_full_while_writing_a_run_names_the_file(tiny, tmp_path, monkeypatch, capsys):
    """A full disk during `assimilate` said only "NetCDF: HDF error"."""
    import bayesda.inference.fields

    def hdf_error(ds, path, *args, **kwargs):
        Path(path).write_bytes(b"CDF half")
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(bayesda.inference.fields, "write_netcdf", hdf_error)
    _, obs_path = tiny
    out = tmp_path / "run"
    assert _assimilate(obs_path, out) == 1
    _one_line_error(capsys, "posterior.nc", "disk may be full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obs.csv"]


def test_plot_of_obs_without_columns_names_file_and_column(run_dir, capsys):
    """`plot` on an obs.csv without columns printed `error: 'value'`."""
    (run_dir / "obs.csv").write_text("lat,lon\n40,-100\n")
    assert cli.main(["plot", str(run_dir)]) == 1
    _one_line_error(capsys, "obs.csv", "value")


def test_verbose_shows_the_traceback(tmp_path, capsys):
    fake = tmp_path / "x.nc"
    fake.write_text("not netcdf")
    assert cli.main(["data", "info", str(fake), "-v"]) == 1
    assert "Traceback" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# The download fallback is verified
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ncep-air", "era5-uk"])
def test_download_fallback_is_hash_checked(tmp_path, monkeypatch, name):
    pooch = pytest.importorskip("pooch")
    from bayesda.data import datasets as data

    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    monkeypatch.setattr(data, "_tutorial_cache_dir", lambda: tmp_path)
    calls = {}

    def fake_retrieve(url, known_hash, path, fname, progressbar):
        calls["known_hash"] = known_hash
        f = Path(path) / fname
        ds = xr.Dataset(
            {"air": (("time", "lat", "lon"), np.full((2, 2, 2), 250.0))},
            coords={"time": pd.date_range("2013", periods=2), "lat": [1.0, 2.0], "lon": [1.0, 2.0]},
        )
        ds.to_netcdf(f)  # not the real dataset
        if known_hash is not None:
            raise ValueError(f"{fname}: SHA256 hash of downloaded file does not match")
        return str(f)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    with pytest.raises(FileNotFoundError, match="does not hold the expected|hash"):
        data.find_dataset(name, None)
    spec = data.DATASETS[name]
    assert calls["known_hash"] is not None or spec.content_sha256 is not None
    assert not (tmp_path / spec.filename).exists() or calls["known_hash"] is not None


# --------------------------------------------------------------------------------------
# Related: the same rule for model directories
# --------------------------------------------------------------------------------------


def test_model_overwrite_replaces_only_a_model(tiny_model, tmp_path):
    from bayesda.prior.checkpoint import CheckpointError, check_target

    mine = _user_dir(tmp_path)
    with pytest.raises(CheckpointError, match="not a bayesda model"):
        check_target(mine, overwrite=True)
    check_target(tiny_model[0], overwrite=True)  # a model: fine
    assert (mine / "thesis.tex").read_text() == "years of work"


# ======================================================================================
# Issue 26: never mislead, never destroy (station readers, calibration, elevation, outputs)
# ======================================================================================

# --------------------------------------------------------------------------------------
# Outputs never destroy: every output file checked like a run directory
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["posterior.nc", "obs.csv", "run.json", "inference.nc"])
@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
def test_plot_out_onto_a_file_of_the_run_is_refused(run_dir, capsys, target, force):
    """`plot RUN --out RUN/posterior.nc` replaced the posterior with a PNG (exit 0)."""
    before = (run_dir / target).read_bytes()
    argv = ["plot", str(run_dir), "--out", str(run_dir / target)] + (["--force"] if force else [])
    assert cli.main(argv) == 1
    _one_line_error(capsys, target, "run")
    assert (run_dir / target).read_bytes() == before


def test_plot_out_onto_a_file_of_another_run_or_a_model_is_refused(
    run_dir, tiny_model, tmp_path, capsys
):
    other = Path(shutil.copytree(run_dir, tmp_path / "other"))
    for target in (other / "maps.png", tiny_model[0] / "params.npz"):
        before = target.read_bytes()
        assert cli.main(["plot", str(run_dir), "--out", str(target), "--force"]) == 1
        _one_line_error(capsys, str(target))
        assert target.read_bytes() == before


def test_plot_out_onto_an_existing_file_needs_force(run_dir, tmp_path, capsys):
    mine = tmp_path / "mine.png"
    mine.write_text("a,b\n1,2\n")
    assert cli.main(["plot", str(run_dir), "--out", str(mine)]) == 1
    _one_line_error(capsys, str(mine), "--force")
    assert mine.read_text() == "a,b\n1,2\n"
    assert cli.main(["plot", str(run_dir), "--out", str(mine), "--force"]) == 0
    assert mine.read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["plot", str(run_dir)]) == 0  # the run's own maps.png: always redrawn


@pytest.mark.parametrize("how", ["same-path", "symlink", "hardlink"])
def test_plot_out_onto_its_own_truth_input_is_refused_even_with_force(
    run_dir, tmp_path, capsys, how
):
    truth = tmp_path / "truth.nc"
    shutil.copy(
        run_dir / "truth.nc" if (run_dir / "truth.nc").exists() else run_dir / "posterior.nc", truth
    )
    before = truth.read_bytes()
    out = truth
    if how == "symlink":
        out = tmp_path / "link.png"
        out.symlink_to(truth)
    elif how == "hardlink":
        out = tmp_path / "hard.png"
        os.link(truth, out)
    assert (
        cli.main(["plot", str(run_dir), "--truth", str(truth), "--out", str(out), "--force"]) == 1
    )
    _one_line_error(capsys, "input")
    assert truth.read_bytes() == before


def test_plot_out_onto_a_device_is_refused(run_dir, capsys):
    assert cli.main(["plot", str(run_dir), "--out", "/dev/null", "--force"]) == 1
    _one_line_error(capsys, "/dev/null", "not a regular file")
    assert Path("/dev/null").is_char_device()


def _obs_make(data, out, *extra):
    return cli.main(
        ["obs", "make", "--data", str(data), "--time", "2013-02-01T12", "--n", "5",
         "--absolute", "--out", str(out), *extra]
    )  # fmt: skip


def test_obs_make_out_onto_an_existing_file_needs_force(odd_data_file, tmp_path, capsys):
    """`obs make --out FILE` overwrote an existing file without --force."""
    out = tmp_path / "mine.csv"
    out.write_text("precious\n")
    assert _obs_make(odd_data_file, out) == 1
    _one_line_error(capsys, str(out), "--force")
    assert out.read_text() == "precious\n"
    assert _obs_make(odd_data_file, out, "--force") == 0
    assert "value" in out.read_text()


def test_obs_make_out_onto_its_input_or_into_a_run_is_refused(odd_data_file, run_dir, capsys):
    before = odd_data_file.read_bytes()
    assert _obs_make(odd_data_file, odd_data_file, "--force") == 1
    _one_line_error(capsys, "input")
    assert odd_data_file.read_bytes() == before
    obs_before = (run_dir / "obs.csv").read_text()
    assert _obs_make(odd_data_file, run_dir / "obs.csv", "--force") == 1
    _one_line_error(capsys, "run")
    assert (run_dir / "obs.csv").read_text() == obs_before


def test_obs_make_files_have_normal_permissions(odd_data_file, tmp_path):
    """`obs make` files were written with mode 600 (a private temporary file renamed)."""
    out = tmp_path / "o.csv"
    old = os.umask(0o022)
    try:
        assert _obs_make(odd_data_file, out) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_climatology_out_onto_an_existing_file_needs_force(odd_data_file, tmp_path, capsys):
    out = tmp_path / "clim.nc"
    out.write_text("precious\n")
    argv = ["data", "climatology", "--data", str(odd_data_file), "--out", str(out)]
    assert cli.main(argv) == 1
    _one_line_error(capsys, str(out), "--force")
    assert out.read_text() == "precious\n"
    assert cli.main([*argv[:-2], "--out", str(odd_data_file), "--force"]) == 1
    _one_line_error(capsys, "input")


def test_assimilate_out_holding_its_own_input_is_refused(tiny, run_dir, capsys):
    """`assimilate --obs RUN/obs.csv --out RUN --force` replaced the run holding its input."""
    before = (run_dir / "obs.csv").read_bytes()
    assert _assimilate(run_dir / "obs.csv", run_dir, "--force") == 1
    _one_line_error(capsys, "input")
    assert (run_dir / "obs.csv").read_bytes() == before


def _foreign_model(tmp_path, card):
    d = tmp_path / "theirs"
    d.mkdir()
    (d / "model.json").write_text(json.dumps(card))
    (d / "weights.bin").write_bytes(b"another tool's weights")
    return d


@pytest.mark.parametrize(
    "card",
    [
        pytest.param({"name": "my other model"}, id="any-model-json"),
        pytest.param({"format_version": 1, "files": {"params.npz": "0" * 64}}, id="no-marker"),
        pytest.param({"written_by": "bayesda", "format_version": 1}, id="no-hash-list"),
    ],
)
def test_train_overwrite_refuses_a_model_json_that_is_not_bayesdas(tmp_path, capsys, card):
    """`train --out DIR --overwrite` deleted any directory holding a model.json."""
    d = _foreign_model(tmp_path, card)
    argv = ["train", "--data", str(tmp_path / "none.nc"), "--out", str(d), "--overwrite"]
    assert cli.main(argv) == 1
    _one_line_error(capsys, str(d), "not a bayesda model")
    assert (d / "weights.bin").read_bytes() == b"another tool's weights"


def test_train_overwrite_refuses_a_model_with_files_it_does_not_list(tiny_model, capsys):
    model, _ = tiny_model
    (model / "notes.txt").write_text("my notes")
    argv = ["train", "--data", "none.nc", "--out", str(model), "--overwrite"]
    assert cli.main(argv) == 1
    _one_line_error(capsys, "notes.txt")
    assert (model / "notes.txt").read_text() == "my notes"


def test_saved_models_carry_the_marker_and_shipped_ones_are_recognised(tiny_model):
    from bayesda.runtime.files import model_dir_problem

    model, _ = tiny_model
    assert json.loads((model / "model.json").read_text())["written_by"] == "bayesda"
    assert model_dir_problem(model) is None
    shipped = Path(__file__).resolve().parents[1] / "models" / "ncep-air"
    assert model_dir_problem(shipped) is None  # older cards: format_version + versions.bayesda


def test_reanalyse_out_holding_its_own_input_is_refused(finished_store, clim_prior, capsys):
    out, _ = finished_store
    inside = out / "obs.csv"
    inside.write_text("lat,lon,value\n40,-100,1\n")
    argv = ["reanalyse", "--model", "m", "--obs", str(inside), "--out", str(out)]
    assert cli.main(argv) == 1
    _one_line_error(capsys, "input")
    assert inside.exists()


# --------------------------------------------------------------------------------------
# Every option validated at parse time: exit 2, the option named, before any model loads
# --------------------------------------------------------------------------------------

_ASSIM = ["assimilate", "--model", "M", "--obs", "O", "--out", "OUT"]


@pytest.mark.parametrize(
    "argv, option",
    [
        pytest.param([*_ASSIM, "--time", "notadate"], "--time", id="time-not-a-date"),
        pytest.param([*_ASSIM, "--time", "2500-01-01"], "--time", id="time-2500"),
        pytest.param([*_ASSIM, "--time", "nan"], "--time", id="time-nan"),
        pytest.param([*_ASSIM, "--window", "abc"], "--window", id="window-abc"),
        pytest.param([*_ASSIM, "--window=-3h"], "--window", id="window-negative"),
        pytest.param([*_ASSIM, "--window", "3"], "--window", id="window-no-unit"),
        pytest.param([*_ASSIM, "--window", "0h"], "--window", id="window-zero"),
        pytest.param([*_ASSIM, "--lapse-rate", "-1"], "--lapse-rate", id="lapse-rate-negative"),
        pytest.param([*_ASSIM, "--lapse-rate-sd", "nan"], "--lapse-rate-sd", id="lapse-sd-nan"),
        pytest.param(
            [*_ASSIM, "--format", "csv", "--columns", "lat=LAT,lon=LON,value=T,bogus=X"],
            "--columns",
            id="columns-bad-key",
        ),
        pytest.param(
            [*_ASSIM, "--format", "csv", "--columns", "lat=LAT,lon=LON"],
            "--columns",
            id="columns-no-value",
        ),
        pytest.param([*_ASSIM, "--format", "csv"], "--columns", id="csv-without-columns"),
        pytest.param(
            [*_ASSIM, "--columns", "lat=LAT,lon=LON,value=T"], "--columns", id="columns-not-csv"
        ),
        pytest.param(
            [*_ASSIM, "--absolute", "--kind", "anomaly"], "--absolute", id="absolute-vs-anomaly"
        ),
        pytest.param([*_ASSIM, "--target-accept", "1.5"], "--target-accept", id="target-accept"),
        pytest.param([*_ASSIM, "--max-tree-depth", "0"], "--max-tree-depth", id="tree-depth"),
        pytest.param(
            [
                "reanalyse",
                "--model",
                "M",
                "--obs",
                "O",
                "--out",
                "OUT",
                "--start",
                "2014-02-01",
                "--end",
                "2014-01-01",
            ],
            "--end",
            id="reanalyse-end-before-start",
        ),  # fmt: skip
        pytest.param(
            ["reanalyse", "--model", "M", "--obs", "O", "--out", "OUT", "--start", "soon"],
            "--start",
            id="reanalyse-start-not-a-date",
        ),
        pytest.param(
            ["obs", "make", "--time", "yesterday-ish", "--out", "OUT"], "--time", id="obs-make-time"
        ),
        pytest.param(["demo", "--out", "OUT", "--time", "2014-02-30"], "--time", id="demo-time"),
    ],
)
def test_bad_options_exit_2_naming_the_option_before_any_work(
    tmp_path, capsys, monkeypatch, argv, option
):
    monkeypatch.setattr(assim, "load_prior", lambda path: pytest.fail("model loaded"))
    argv = [str(tmp_path / a) if a in ("M", "O", "OUT") else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_time_with_a_utc_offset_is_converted_without_a_warning(tiny, tmp_path, capsys):
    """`--time 2014-01-07T12:00+02:00` failed on a naive/aware mix and leaked a warning."""
    import warnings

    _, obs_path = tiny
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning the command lets out fails the test
        rc = _assimilate(obs_path, run, "--time", "2014-01-07T14:00+02:00")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "warning" not in captured.err.lower()
    assert json.loads((run / "run.json").read_text())["time"] == "2014-01-07T12:00:00"


# --------------------------------------------------------------------------------------
# Station readers treat real files as real (GHCN-Daily, ISD-Lite, mapped CSV, tables)
# --------------------------------------------------------------------------------------


def _dly(sid, year, month, element, days):
    """A GHCN-Daily .dly record (269 characters); ``days`` maps day -> value (tenths)."""
    out = f"{sid:<11}{year:04d}{month:02d}{element:<4}"
    for d in range(1, 32):
        out += f"{days.get(d, -9999):>5d}   "
    return out


def _isd(y, m, d, h, t):
    return f"{y:4d} {m:02d} {d:02d} {h:02d}{t:6d}{-9999:6d}{10230:6d}{270:6d}{31:6d}" + (
        f"{-9999:6d}" * 3
    )


_STATIONS_TXT = (
    f"{'USW00023062':<11} {39.8328:8.4f} {-104.6575:9.4f} {1650.2:6.1f} CO DENVER INTL AP\n"
)


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dly_line_cut_inside_a_value_is_refused(tmp_path):
    """A .dly line cut inside a value read 22.5 degC as 2.2 degC (short lines were padded)."""
    from bayesda.obs import stations as st

    full = _dly("USW00023062", 2014, 1, "TAVG", {d: 225 for d in range(1, 32)})
    assert len(full) == 269
    path = _write(tmp_path / "cut.dly", [full, full[: 21 + 8 * 30 + 3]])
    with pytest.raises(st.StationFormatError, match=r"cut.dly:2: .*264 characters.*269") as err:
        st.read_ghcn_dly(path, stations=None)
    assert "  22" in str(err.value)  # the text at the cut


def test_dly_line_too_long_is_refused(tmp_path):
    from bayesda.obs import stations as st

    full = _dly("USW00023062", 2014, 1, "TAVG", {1: 5})
    path = _write(tmp_path / "long.dly", [full + "  123"])
    with pytest.raises(st.StationFormatError, match=r"long.dly:1: .*274 characters"):
        st.read_ghcn_dly(path, stations=None)


@pytest.mark.parametrize(
    "reader, lines, message",
    [
        pytest.param(
            "dly",
            [_dly("USW00023062", 2014, 13, "TAVG", {1: 5})],
            r"in.txt:1: MONTH .*'13'",
            id="dly-month-13",
        ),
        pytest.param(
            "isd", [_isd(2014, 1, 21, 24, 56)], r"in.txt:1: hour .*'24'", id="isd-hour-24"
        ),
        pytest.param(
            "isd", [_isd(2014, 13, 21, 12, 56)], r"in.txt:1: month .*'13'", id="isd-month-13"
        ),
        pytest.param(
            "isd", [_isd(2014, 2, 30, 12, 56)], r"in.txt:1: .*2014-02-30", id="isd-feb-30"
        ),
        pytest.param(
            "isd", [_isd(2014, 1, 21, 12, 56)[:30]], r"in.txt:1: .*30 characters.*61", id="isd-cut"
        ),
        pytest.param(
            "ghcn-csv",
            ["USW00023062,20140121,TAVG,35,,,W,2500"],
            r"in.txt:1: OBS-TIME .*'2500'",
            id="ghcn-csv-obs-time-25h",
        ),
    ],
)
def test_impossible_dates_name_file_line_and_text(tmp_path, reader, lines, message):
    """Month 13 and ISD hour 24 gave pandas' messages naming no file or line."""
    from bayesda.obs import stations as st

    path = _write(tmp_path / "in.txt", lines)
    read = {
        "dly": lambda p: st.read_ghcn_dly(p, stations=None),
        "isd": lambda p: st.read_isd_lite(p, stations=None, station_id="724940-23234"),
        "ghcn-csv": lambda p: st.read_ghcn_csv(p, stations=None),
    }[reader]
    with pytest.raises(st.StationFormatError, match=message):
        read(path)


def test_duplicate_station_id_names_file_and_lines(tmp_path):
    """A duplicate id in the stations table gave pandas' 'cannot reindex on an axis with
    duplicate labels'."""
    from bayesda.obs import stations as st

    table = tmp_path / "stations.csv"
    table.write_text("id,lat,lon\nUSW00023062,39.8,-104.7\nUSW00023062,45.0,-90.0\n")
    dly = _write(tmp_path / "a.dly", [_dly("USW00023062", 2014, 1, "TAVG", {21: 5})])
    with pytest.raises(st.StationFormatError, match=r"stations.csv:2.*3.*USW00023062"):
        st.read_ghcn_dly(dly, stations=table)
    table.write_text("id,lat,lon\nUSW00023062,39.8,-104.7\nUSW00023062,39.8,-104.7\n")
    assert len(st.read_ghcn_dly(dly, stations=table)) == 1  # an exact repeat is harmless


@pytest.mark.parametrize("code", ["-9999", "-999.9", "-999"])
def test_missing_elevation_codes_are_missing_in_tables_and_csv(tmp_path, code):
    """An elevation of -9999 was used as metres: an adjustment of -68 K."""
    from bayesda.obs import stations as st

    table = tmp_path / "stations.csv"
    table.write_text(f"id,lat,lon,elevation\nUSW00023062,39.8,-104.7,{code}\n")
    dly = _write(tmp_path / "a.dly", [_dly("USW00023062", 2014, 1, "TAVG", {21: 5})])
    assert np.isnan(st.read_ghcn_dly(dly, stations=table)["elevation"]).all()
    csv = tmp_path / "net.csv"
    csv.write_text(f"LAT,LON,TMP,ELEV\n40,-105,1.5,{code}\n41,-100,2.0,1500\n")
    df = st.read_mapped_csv(csv, "lat=LAT,lon=LON,value=TMP,elevation=ELEV", time=TIME)
    assert np.isnan(df["elevation"].iloc[0]) and df["elevation"].iloc[1] == 1500.0


def test_missing_coordinate_codes_drop_the_row_as_missing(tmp_path):
    from bayesda.obs import stations as st

    csv = tmp_path / "net.csv"
    csv.write_text("LAT,LON,TMP\n-9999,-9999,1.5\n41,-100,2.0\n")
    df = st.read_mapped_csv(csv, "lat=LAT,lon=LON,value=TMP", time=TIME)
    assert len(df) == 1 and df.attrs["counts"]["missing"] == 1


def test_ghcnd_stations_under_another_name_is_recognised_by_content(tmp_path):
    """`--stations my-stations.txt` (ghcnd-stations.txt renamed) was read as a CSV."""
    from bayesda.obs import stations as st

    table = tmp_path / "my-stations.txt"
    table.write_text(_STATIONS_TXT)
    dly = _write(tmp_path / "a.dly", [_dly("USW00023062", 2014, 1, "TAVG", {21: 5})])
    df = st.read_ghcn_dly(dly, stations=table)
    assert df["lat"].iloc[0] == pytest.approx(39.8328)
    assert df["elevation"].iloc[0] == pytest.approx(1650.2)


def test_station_table_with_a_bad_number_names_file_line_and_text(tmp_path):
    from bayesda.obs import stations as st

    table = tmp_path / "stations.csv"
    table.write_text("id,lat,lon\nA,39.8,-104.7\nB,north,-104.7\n")
    dly = _write(tmp_path / "a.dly", [_dly("A", 2014, 1, "TAVG", {21: 5})])
    with pytest.raises(st.StationFormatError, match=r"stations.csv:3: lat='north'"):
        st.read_ghcn_dly(dly, stations=table)


def test_missing_element_is_named_with_the_elements_present(tmp_path):
    """A missing element was reported as 'no usable observation inside the model grid'."""
    from bayesda.obs import stations as st

    dly = _write(
        tmp_path / "a.dly",
        [_dly("USW00023062", 2014, 1, "TMAX", {21: 5}), _dly("USW00023062", 2014, 1, "TMIN", {})],
    )
    with pytest.raises(ValueError, match=r"no TAVG records.*TMAX, TMIN.*--element") as err:
        st.read_ghcn_dly(dly, stations=None)
    assert "grid" not in str(err.value)


def _station_cli(tmp_path, obs, fmt, *extra, model="m"):
    return cli.main(
        ["assimilate", "--model", model, "--obs", str(obs), "--format", fmt,
         "--out", str(tmp_path / "run"), *FAST, *extra]
    )  # fmt: skip


def test_ghcn_daily_without_time_is_refused(tiny, tmp_path, capsys):
    """31 days of a GHCN-Daily file were assimilated as one field, time null (exit 0)."""
    prior, _ = tiny
    table = tmp_path / "stations.csv"
    table.write_text("id,lat,lon\nA,40.0,-100.0\nB,44.0,-96.0\n")
    days = {d: -110 + d for d in range(1, 32)}  # about the tiny climatology's -11 degC
    dly = _write(
        tmp_path / "a.dly",
        [_dly("A", 2014, 1, "TAVG", days), _dly("B", 2014, 1, "TAVG", days)],
    )
    assert _station_cli(tmp_path, dly, "ghcn-dly", "--stations", str(table)) == 1
    _one_line_error(capsys, "--time", "31")
    assert not (tmp_path / "run").exists()


def test_no_station_inside_the_grid_and_no_station_known_are_told_apart(tiny, tmp_path, capsys):
    """Both were 'no usable observation inside the model grid', once with 'kept 50'."""
    table = tmp_path / "stations.csv"
    table.write_text("id,lat,lon\nFAR,-40.0,150.0\n")
    dly = _write(tmp_path / "a.dly", [_dly("FAR", 2014, 1, "TAVG", {7: 5})])
    args = ("--stations", str(table), "--time", TIME)
    assert _station_cli(tmp_path, dly, "ghcn-dly", *args) == 1
    last = _one_line_error(capsys, "outside the model grid")
    assert "kept" not in last
    dly = _write(tmp_path / "b.dly", [_dly("UNKNOWN", 2014, 1, "TAVG", {7: 5})])
    assert _station_cli(tmp_path, dly, "ghcn-dly", *args) == 1
    last = _one_line_error(capsys, "UNKNOWN", str(table))
    assert "grid" not in last


def test_isd_file_name_message_names_no_api_keyword(tiny, tmp_path, capsys):
    path = _write(tmp_path / "hourly.txt", [_isd(2014, 1, 7, 12, 56)])
    table = tmp_path / "stations.csv"
    table.write_text("id,lat,lon\n724940-23234,40.0,-100.0\n")
    assert _station_cli(tmp_path, path, "isd-lite", "--stations", str(table), "--time", TIME) == 1
    last = _one_line_error(capsys, "hourly.txt", "USAF-WBAN")
    assert "station_id=" not in last


def test_duplicate_observations_message_names_an_option(tiny, tmp_path, capsys):
    prior, _ = tiny
    obs = make_obs(prior.grid, 6, seed=2)
    obs = pd.concat([obs, obs.iloc[:2]], ignore_index=True)
    path = tmp_path / "dup.csv"
    obs.to_csv(path, index=False)
    assert _assimilate(path, tmp_path / "run") == 1
    last = _one_line_error(capsys, "--superob")
    assert "duplicates=" not in last
    assert _assimilate(path, tmp_path / "run", "--superob") == 0


def test_mixed_utc_offsets_are_converted_and_naive_aware_mixes_refused(tmp_path):
    """pandas' advice to pass utc=True reached the user."""
    from bayesda.obs import stations as st
    from bayesda.obs.table import validate_obs

    csv = tmp_path / "net.csv"
    csv.write_text(
        "LAT,LON,TMP,DATE\n40,-105,1.5,2014-01-07T14:00+02:00\n41,-100,2.0,2014-01-07T12:00Z\n"
    )
    df = st.read_mapped_csv(csv, "lat=LAT,lon=LON,value=TMP,time=DATE")
    assert (df["time"] == pd.Timestamp(TIME)).all()
    table = pd.DataFrame(
        {"lat": [40.0, 41.0], "lon": [-100.0, -99.0], "value": [1.0, 2.0],
         "time": ["2014-01-07T14:00+02:00", "2014-01-07T07:00-05:00"]}
    )  # fmt: skip
    assert (validate_obs(table)["time"] == pd.Timestamp(TIME)).all()
    csv.write_text("LAT,LON,TMP,DATE\n40,-105,1.5,2014-01-07T14:00+02:00\n41,-100,2.0,2014-01-07\n")
    with pytest.raises(ValueError, match=r"net.csv:3: .*'2014-01-07'.*offset") as err:
        st.read_mapped_csv(csv, "lat=LAT,lon=LON,value=TMP,time=DATE")
    assert "utc=True" not in str(err.value)


def test_mapped_csv_bad_time_names_line_and_text(tmp_path):
    from bayesda.obs import stations as st

    csv = tmp_path / "net.csv"
    csv.write_text("LAT,LON,TMP,DATE\n40,-105,1.5,2014-01-07T12\n41,-100,2.0,yesterday noon\n")
    with pytest.raises(st.StationFormatError, match=r"net.csv:3: DATE='yesterday noon'"):
        st.read_mapped_csv(csv, "lat=LAT,lon=LON,value=TMP,time=DATE")


def test_ragged_csv_names_the_file(tmp_path):
    from bayesda.obs import stations as st

    csv = tmp_path / "net.csv"
    csv.write_text("LAT,LON,TMP\n40,-105,1.5\n41,-100,2.0,7,8\n")
    with pytest.raises(ValueError, match=r"net.csv.*line 3"):
        st.read_mapped_csv(csv, "lat=LAT,lon=LON,value=TMP", time=TIME)


# --------------------------------------------------------------------------------------
# Physical checks on what the elevation adjustment uses
# --------------------------------------------------------------------------------------


def _height_prior(height_m=500.0):
    from bayesda.testing import grf_prior

    prior, _ = grf_prior()
    return dataclasses.replace(prior, surface_height=np.full(prior.grid.shape, height_m))


@pytest.mark.parametrize("elevation", [9000.0, -500.0, -9999.0, 1e6])
def test_impossible_station_heights_are_missing_and_counted(elevation):
    """Elevations of 9000 m, -500 m or -9999 were used as metres: adjustments of +56 K,
    -6 K and -68 K that widened every sigma."""
    from bayesda.obs.elevation import adjust
    from bayesda.preflight.pipeline import format_preflight

    prior = _height_prior()
    obs = pd.DataFrame(
        {"station_id": ["A", "B"], "lat": [40.0, 42.0], "lon": [-110.0, -100.0],
         "value": [1.0, 2.0], "sigma": [0.5, 0.5], "elevation": [elevation, 800.0]}
    )  # fmt: skip
    out, rec = adjust(prior, obs)
    assert out["value"].iloc[0] == 1.0 and out["sigma"].iloc[0] == 0.5  # untouched
    assert np.isnan(out["elevation"].iloc[0])
    assert rec["n_bad_elevation"] == 1 and rec["n_adjusted"] == 1
    line = format_preflight({"elevation": rec})
    assert "1 station height outside [-450, 8850] m" in line and "A" in line


def test_large_height_differences_are_capped_and_reported():
    from bayesda.obs.elevation import MAX_HEIGHT_DIFFERENCE_M, adjust
    from bayesda.preflight.pipeline import format_preflight

    prior = _height_prior(500.0)
    obs = pd.DataFrame(
        {"station_id": ["FEET", "OK"], "lat": [40.0, 42.0], "lon": [-110.0, -100.0],
         "value": [1.0, 2.0], "sigma": [0.5, 0.5], "elevation": [5500.0, 1500.0]}
    )  # fmt: skip
    out, rec = adjust(prior, obs)
    cap = MAX_HEIGHT_DIFFERENCE_M
    assert out["height_adjustment"].iloc[0] == pytest.approx(6.5 * cap / 1000.0)
    assert out["height_adjustment"].iloc[1] == pytest.approx(6.5)
    # the error term still says how far the station is from the model surface
    assert out["height_adjustment_sd"].iloc[0] == pytest.approx(2.0 * 5.0)
    assert out["sigma"].iloc[0] == pytest.approx(np.hypot(0.5, 10.0))
    assert rec["n_capped"] == 1
    line = format_preflight({"elevation": rec})
    assert f"1 station more than {cap:.0f} m" in line and "FEET" in line and "+5000 m" in line


# --------------------------------------------------------------------------------------
# --superob works for every --format
# --------------------------------------------------------------------------------------


def _two_cell_stations(tmp_path):
    """12 stations in two grid cells of the tiny grid, absolute degC near its climatology."""
    rng = np.random.default_rng(0)
    lat = np.r_[35.0 + rng.uniform(-1, 1, 6), 40.0 + rng.uniform(-1, 1, 6)]
    lon = np.r_[-100.0 + rng.uniform(-1, 1, 6), -105.0 + rng.uniform(-1, 1, 6)]
    value = np.r_[np.full(6, -8.0), np.full(6, -11.0)] + rng.normal(0, 0.3, 12)
    path = tmp_path / "net.csv"
    pd.DataFrame(
        {"STN": [f"N{i}" for i in range(12)], "LAT": lat, "LON": lon, "TMP": value,
         "ELEV": 1000.0, "DATE": TIME}
    ).to_csv(path, index=False)  # fmt: skip
    return path


@pytest.mark.parametrize("fmt", ["csv", "ghcn-dly"])
def test_superob_works_for_every_format(tiny, tmp_path, capsys, fmt):
    """`--superob` was silently ignored for every --format but the plain table."""
    path = _two_cell_stations(tmp_path)
    if fmt == "csv":
        cols = "lat=LAT,lon=LON,value=TMP,station_id=STN,time=DATE,elevation=ELEV"
        extra = ["--columns", cols, "--units", "degC"]
    else:
        net = pd.read_csv(path)
        table = tmp_path / "stations.csv"
        net.rename(columns={"STN": "id", "LAT": "lat", "LON": "lon", "ELEV": "elevation"})[
            ["id", "lat", "lon", "elevation"]
        ].to_csv(table, index=False)
        lines = [
            _dly(s, 2014, 1, "TAVG", {7: round(10 * v)})
            for s, v in zip(net.STN, net.TMP, strict=True)
        ]
        path = _write(tmp_path / "net.dly", lines)
        extra = ["--stations", str(table)]
    rc = _station_cli(tmp_path, path, fmt, "--time", TIME, "--superob", *extra)
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "superob: 12 observations averaged into 2" in out.out
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["n_obs"] == 2 and info["superob"] == {"n_in": 12, "n_out": 2}


# --------------------------------------------------------------------------------------
# The reanalysis groups reports by the window rule of `assimilate`
# --------------------------------------------------------------------------------------


def test_reanalysis_groups_reports_by_the_assimilate_window(clim_prior, tmp_path):
    """30 reports within 16 minutes of 12 UTC were 5 analyses of 6 each; `assimilate`
    uses one window. Now: times on the model's 6-hour step, +-3 h around each."""
    from bayesda.workflows.reanalysis import ReanalysisSettings, analysis_times, reanalyse

    obs = make_obs(clim_prior.grid, 30, seed=7)
    minutes = np.tile([-8, -3, 0, 4, 8], 6)
    obs["time"] = pd.Timestamp(TIME) + pd.to_timedelta(minutes, unit="min")
    late = make_obs(clim_prior.grid, 4, seed=8).assign(time=pd.Timestamp("2014-01-07T15:01"))
    late["station_id"] = [f"L{i}" for i in range(4)]
    obs = pd.concat([obs, late], ignore_index=True)
    times = analysis_times(obs, step="6h", half_width="3h")
    assert [str(t)[:16] for t in times] == ["2014-01-07T12:00", "2014-01-07T18:00"]
    out = reanalyse(
        clim_prior, obs, tmp_path / "r.zarr", settings=ReanalysisSettings(method="laplace"),
        progress=False,
    )  # fmt: skip
    ds = xr.open_zarr(out, consolidated=False)
    assert ds.sizes["time"] == 2
    assert ds["n_obs"].values.tolist() == [30, 4]


def test_reanalysis_start_sets_the_step_origin_and_superob_works_per_window(clim_prior, tmp_path):
    from bayesda.workflows.reanalysis import ReanalysisSettings, analysis_times, reanalyse

    obs = make_obs(clim_prior.grid, 8, seed=9).assign(time=pd.Timestamp("2014-01-07T13:10"))
    assert [str(t)[:16] for t in analysis_times(obs)] == ["2014-01-07T12:00"]
    assert [str(t)[:16] for t in analysis_times(obs, start="2014-01-07T01:00")] == [
        "2014-01-07T13:00"
    ]
    twin = obs.assign(time=pd.Timestamp("2014-01-07T11:55"), value=obs["value"] + 0.1)
    twin["station_id"] = [f"T{i}" for i in range(len(twin))]
    both = pd.concat([obs, twin], ignore_index=True)  # each site reported twice, 75 min apart
    out = reanalyse(
        clim_prior, both, tmp_path / "r.zarr", settings=ReanalysisSettings(method="laplace"),
        progress=False, superob=True,
    )  # fmt: skip
    from bayesda.obs.operator import nearest_index

    cells = np.unique(nearest_index(clim_prior.grid, obs["lat"].to_numpy(), obs["lon"].to_numpy()))
    assert xr.open_zarr(out, consolidated=False)["n_obs"].values.tolist() == [cells.size]


def test_reanalyse_cli_groups_by_window_and_names_options(
    clim_prior, tmp_path, monkeypatch, capsys
):
    import bayesda.prior.checkpoint
    import bayesda.workflows.reanalysis

    monkeypatch.setattr(bayesda.prior.checkpoint, "load_model", lambda path: clim_prior)
    monkeypatch.setattr(bayesda.workflows.reanalysis, "cached_prior", lambda path: clim_prior)
    obs = make_obs(clim_prior.grid, 12, seed=7)
    obs["time"] = pd.Timestamp(TIME) + pd.to_timedelta(np.arange(12) - 6, unit="min")
    path = tmp_path / "obs.csv"
    pd.concat([obs, obs.iloc[:1]], ignore_index=True).to_csv(path, index=False)
    argv = ["reanalyse", "--model", "m", "--obs", str(path), "--out", str(tmp_path / "r.zarr"),
            "--method", "laplace", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 1  # one report twice
    last = _one_line_error(capsys, "--superob")
    assert "duplicates=" not in last
    obs.to_csv(path, index=False)
    assert cli.main([*argv, "--window", "1h"]) == 0
    assert "1/1 times done" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# Dates outside the model's training period are named, with what --offset does
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("year", [1850, 2100])
def test_analysis_far_outside_the_training_period_says_so(tiny, tmp_path, capsys, year):
    """Years 1850 and 2100 ran with no word about the training period or --offset."""
    _, obs_path = tiny
    assert _assimilate(obs_path, tmp_path / "run", "--time", f"{year}-01-07T12") == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "training period" in x)
    assert "2013-01-01" in line and "2014-12-31" in line and "--offset" in line


def test_analysis_inside_the_training_period_says_nothing_of_it(tiny, tmp_path, capsys):
    _, obs_path = tiny
    assert _assimilate(obs_path, tmp_path / "run", "--time", TIME) == 0
    assert "training period" not in capsys.readouterr().out


def test_training_period_comes_from_the_card_or_the_climatology(clim_prior):
    from bayesda.preflight.offset import training_period

    assert [str(t)[:10] for t in training_period(clim_prior)] == ["2013-01-01", "2014-12-31"]
    carded = dataclasses.replace(
        clim_prior, card={"split": {"period": ["2001-01-01T00:00:00", "2005-02-08T18:00:00"]}}
    )
    assert [str(t)[:10] for t in training_period(carded)] == ["2001-01-01", "2005-02-08"]
    assert training_period(dataclasses.replace(clim_prior, climatology=None)) is None


# --------------------------------------------------------------------------------------
# The Python API says what it takes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obs",
    [
        pytest.param(np.zeros((5, 4)), id="ndarray"),
        pytest.param([[40.0, -100.0, 1.0, 0.5]], id="list"),
        pytest.param({"lat": 40.0}, id="dict"),
        pytest.param(None, id="none"),
    ],
)
def test_assimilate_given_the_wrong_type_raises_typeerror_naming_the_types(clim_prior, obs):
    """`bayesda.assimilate(prior, array)` raised AttributeError."""
    import bayesda

    with pytest.raises(TypeError, match=r"DataFrame.*Dataset.*path") as err:
        bayesda.assimilate(clim_prior, obs, sampler=LAPLACE, progress_bar=False)
    assert type(obs).__name__ in str(err.value)


def test_assimilate_accepts_a_path_to_an_observation_file(clim_prior, tmp_path):
    import bayesda

    obs = make_obs(clim_prior.grid, 10, seed=4)
    path = tmp_path / "obs.csv"
    obs.to_csv(path, index=False)
    a = bayesda.assimilate(clim_prior, path, time=TIME, sampler=LAPLACE, progress_bar=False)
    b = bayesda.assimilate(clim_prior, str(path), time=TIME, sampler=LAPLACE, progress_bar=False)
    c = bayesda.assimilate(clim_prior, obs, time=TIME, sampler=LAPLACE, progress_bar=False)
    assert a.obs.n == 10
    np.testing.assert_allclose(a.field.mean(axis=(0, 1)), c.field.mean(axis=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(b.field.mean(axis=(0, 1)), c.field.mean(axis=(0, 1)), atol=1e-5)


def test_assimilate_with_prior_and_obs_swapped_says_so(clim_prior):
    import bayesda

    obs = make_obs(clim_prior.grid, 10, seed=4)
    with pytest.raises(TypeError, match=r"prior.*GenerativePrior.*model directory.*DataFrame"):
        bayesda.assimilate(obs, clim_prior, sampler=LAPLACE, progress_bar=False)


def test_read_obs_of_an_array_names_what_it_reads():
    import bayesda

    with pytest.raises(TypeError, match=r"ndarray.*DataFrame.*Dataset.*path"):
        bayesda.read_obs(np.zeros((3, 4)))


def test_reanalyse_accepts_a_path(clim_prior, store_obs_csv, tmp_path):
    from bayesda.workflows.reanalysis import ReanalysisSettings, reanalyse

    settings = ReanalysisSettings(method="laplace")
    out = reanalyse(
        clim_prior, store_obs_csv, tmp_path / "r.zarr", settings=settings, progress=False
    )
    assert xr.open_zarr(out, consolidated=False)["done"].all()
    with pytest.raises(TypeError, match="DataFrame"):
        reanalyse(clim_prior, np.zeros(3), tmp_path / "s.zarr", progress=False)


# --------------------------------------------------------------------------------------
# --calibrate auto refuses to fit on too little information, keeping the model's scales
# --------------------------------------------------------------------------------------


def _calibrate_case(case, n):
    from bayesda.testing import grf_prior, obs_of

    prior, grf = grf_prior(repr_sd=0.5)
    obs = obs_of(prior, grf, n, seed=3)
    if case == "identical values":
        obs["value"] = 1.25
    elif case == "one station repeated":
        obs[["lat", "lon", "station_id"]] = obs[["lat", "lon", "station_id"]].iloc[0].to_numpy()
    elif case == "all at one place":
        obs[["lat", "lon"]] = (40.0, -105.0)
    return prior, obs


@pytest.mark.parametrize(
    "case, n, why",
    [
        pytest.param("few", 3, "3 distinct site", id="3-obs"),
        pytest.param("few", 5, "5 distinct site", id="5-obs"),
        pytest.param("few", 7, "7 distinct site", id="7-obs"),
        pytest.param("few", 1, "1 distinct site", id="1-obs"),
        pytest.param("identical values", 40, "are the same", id="identical-values"),
        pytest.param("one station repeated", 40, "1 distinct site", id="one-station-repeated"),
        pytest.param("all at one place", 40, "1 distinct site", id="all-at-one-place"),
    ],
)
@pytest.mark.parametrize("mode", ["auto", "single"])
def test_calibrate_refuses_to_fit_on_too_little_information(case, n, why, mode):
    """With 3-8 observations, identical values, one station repeated or every station at
    one place, both scales were pinned at x0.25 and applied to the whole field (90%
    coverage against the truth 0.75-0.78 instead of 0.88)."""
    from bayesda.preflight.calibrate import calibrate
    from bayesda.preflight.pipeline import format_preflight

    prior, obs = _calibrate_case(case, n)
    p, o, rep = calibrate(prior, obs, mode)
    assert p is prior and o is obs  # the model's scales, the stated sigmas
    assert why in rep["refused"] and "fit" not in rep
    text = format_preflight({"calibration": rep})
    assert f"calibrate {mode}: not fitted" in text and why in text


def test_calibrate_auto_with_eight_obs_pinned_at_the_bound_is_refused():
    """The issue's 8-observation case: scales pinned at x0.25 and applied to the field."""
    from bayesda.preflight.calibrate import MIN_SITES, calibrate

    prior, obs = _calibrate_case("few", 8)
    assert len(obs) >= MIN_SITES  # enough sites: the bound rule decides
    p, o, rep = calibrate(prior, obs, "auto")
    assert "search grid's bound" in rep["refused"] and p is prior and o is obs
    assert rep["rejected_fit"]["scale"] == pytest.approx(0.25)


def test_calibrate_check_alone_says_when_it_means_little():
    """ "A 1-fold withheld check with n=1" was reported as if it meant something."""
    from bayesda.preflight.calibrate import calibrate
    from bayesda.preflight.pipeline import format_preflight

    prior, obs = _calibrate_case("few", 1)
    _, _, rep = calibrate(prior, obs, "off")
    text = format_preflight({"calibration": rep})
    assert "too little information" in text and "consider --calibrate auto" not in text


def test_calibrate_refuses_a_scale_on_the_search_bound():
    from bayesda.preflight.calibrate import calibrate
    from bayesda.testing import grf_prior, obs_of

    prior, grf = grf_prior(repr_sd=0.01)
    obs = obs_of(prior, grf, 60, seed=1, sigma=2.0, noise_sd=0.02)  # stated 100x too large
    p, o, rep = calibrate(prior, obs, "auto")
    assert "bound" in rep["refused"] and p is prior and o is obs
    assert rep["rejected_fit"]["scale_obs"] <= 0.3


def test_calibrate_auto_still_fits_when_the_data_say_enough():
    from bayesda.preflight.calibrate import MIN_SITES, calibrate
    from bayesda.testing import grf_prior, obs_of

    prior, grf = grf_prior(repr_sd=0.01)
    obs = obs_of(prior, grf, max(60, MIN_SITES), seed=0, sigma=0.5, noise_sd=1.5)
    _, o, rep = calibrate(prior, obs, "auto")
    assert "refused" not in rep and 2.0 < rep["fit"]["scale_obs"] < 4.5
    np.testing.assert_allclose(o["sigma"], 0.5 * rep["fit"]["scale_obs"])


def test_cli_calibrate_auto_with_five_obs_keeps_the_model_scales(tiny, tmp_path, capsys):
    prior, _ = tiny
    path = tmp_path / "five.csv"
    make_obs(prior.grid, 5, seed=4).to_csv(path, index=False)
    run = tmp_path / "run"
    args = ("--calibrate", "auto", "--qc", "off", "--errors", "stated")
    assert _assimilate(path, run, *args) == 0
    assert "calibrate auto: not fitted" in capsys.readouterr().out
    info = json.loads((run / "run.json").read_text())
    assert "refused" in info["calibration"] and "fit" not in info["calibration"]
    np.testing.assert_allclose(pd.read_csv(run / "obs.csv")["sigma"], 0.5)


# --------------------------------------------------------------------------------------
# A fresh round on the station readers and the outputs: the cases that failed
# --------------------------------------------------------------------------------------


def test_dly_with_a_byte_order_mark_reads_its_columns_in_place(tmp_path):
    """A UTF-8 BOM shifted every column: 'no TAVG records; the file has 401T'."""
    from bayesda.obs import stations as st

    table = tmp_path / "stations.csv"
    table.write_text("id,lat,lon\nUSW00023062,39.8,-104.7\n")
    path = tmp_path / "bom.dly"
    path.write_bytes(b"\xef\xbb\xbf" + _dly("USW00023062", 2014, 1, "TAVG", {7: 5}).encode())
    assert len(st.read_ghcn_dly(path, stations=table)) == 1


def test_empty_station_file_says_it_is_empty(tmp_path):
    from bayesda.obs import stations as st

    path = tmp_path / "empty.dly"
    path.write_text("\n\n")
    with pytest.raises(st.StationFormatError, match="empty.dly: the file is empty"):
        st.read_ghcn_dly(path, stations=None)


@pytest.mark.parametrize(
    "header",
    ["ID,LAT,LON,ELEV", "station,latitude,longitude,height", "Station_ID;Latitude;Longitude"],
)
def test_stations_csv_with_other_column_spellings(tmp_path, header):
    from bayesda.obs import stations as st

    sep = ";" if ";" in header else ","
    table = tmp_path / "stations.csv"
    row = sep.join(["USW00023062", "39.8", "-104.7", "1650"][: header.count(sep) + 1])
    table.write_text(f"{header}\n{row}\n")
    dly = _write(tmp_path / "a.dly", [_dly("USW00023062", 2014, 1, "TAVG", {7: 5})])
    df = st.read_ghcn_dly(dly, stations=table)
    assert df["lat"].iloc[0] == pytest.approx(39.8) and df["lon"].iloc[0] == pytest.approx(-104.7)


def test_stations_with_lat_and_lon_swapped_are_refused_naming_the_line(tmp_path):
    from bayesda.obs import stations as st

    table = tmp_path / "stations.csv"
    table.write_text("id,lat,lon\nA,39.8,-104.7\nB,-104.7,39.8\n")
    dly = _write(tmp_path / "a.dly", [_dly("A", 2014, 1, "TAVG", {7: 5})])
    with pytest.raises(st.StationFormatError, match=r"stations.csv:3: station 'B'.*swapped"):
        st.read_ghcn_dly(dly, stations=table)


@pytest.mark.parametrize("what", ["stations", "obs"])
def test_a_directory_given_as_a_file_is_named_as_a_directory(tmp_path, what):
    """'does not exist' for a path that exists (as a directory)."""
    from bayesda.obs import stations as st
    from bayesda.obs.table import read_obs

    d = tmp_path / "somedir"
    d.mkdir()
    dly = _write(tmp_path / "a.dly", [_dly("A", 2014, 1, "TAVG", {7: 5})])
    with pytest.raises(IsADirectoryError, match="somedir' is a directory"):
        st.read_ghcn_dly(dly, stations=d) if what == "stations" else read_obs(d)


def test_semicolon_separated_csv_is_read(tmp_path):
    """A European CSV (;) said its one column 'LAT;LON;TMP' lacked LAT, LON and TMP."""
    from bayesda.obs import stations as st

    path = tmp_path / "net.csv"
    path.write_text("LAT;LON;TMP\n40;-105;1.5\n41;-100;2.5\n")
    df = st.read_mapped_csv(path, "lat=LAT,lon=LON,value=TMP", time=TIME)
    assert len(df) == 2 and df["value"].iloc[1] == pytest.approx(2.5 + 273.15)


def test_mapping_dict_without_value_names_the_missing_key(tmp_path):
    from bayesda.obs import stations as st

    path = tmp_path / "net.csv"
    path.write_text("LAT,LON,TMP\n40,-105,1.5\n")
    with pytest.raises(ValueError, match=r"lacks \['value'\]"):
        st.read_mapped_csv(path, {"lat": "LAT", "lon": "LON"}, time=TIME)


def test_station_file_without_stations_table_says_none_was_given(tmp_path):
    """'is in no stations table (--stations)'."""
    from bayesda.obs import stations as st

    dly = _write(tmp_path / "a.dly", [_dly("A", 2014, 1, "TAVG", {7: 5})])
    with pytest.raises(st.StationFormatError, match="no stations table was given.*--stations"):
        st.read_stations(dly, "ghcn-dly")


def test_gzipped_csv_table_is_read(tmp_path):
    import gzip

    from bayesda.obs.table import read_obs

    path = tmp_path / "obs.csv.gz"
    path.write_bytes(gzip.compress(b"lat,lon,value,sigma\n40,-100,1.0,0.5\n"))
    assert len(read_obs(path)) == 1


def test_netcdf_named_csv_says_it_is_netcdf(tmp_path):
    from bayesda.obs.table import read_obs

    path = tmp_path / "obs.csv"
    xr.Dataset({"value": ("obs", [1.0])}).to_netcdf(path)
    with pytest.raises(ValueError, match="is a netCDF file, not CSV; name it .nc"):
        read_obs(path)


def test_table_time_beyond_2262_is_refused_not_wrapped(tmp_path):
    """pandas read 2500-01-01 as datetime64[us]; to_numpy('datetime64[ns]') made it 1915."""
    from bayesda.obs.table import read_obs

    path = tmp_path / "obs.csv"
    path.write_text("lat,lon,value,time\n40,-100,1.0,2014-01-07\n41,-100,1.0,2500-01-01\n")
    with pytest.raises(ValueError, match=r"row 1.*2500-01-01.*outside"):
        read_obs(path)


@pytest.mark.parametrize("suffix, magic", [(".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_plot_writes_the_format_its_out_names(run_dir, tmp_path, suffix, magic):
    """`plot --out maps.pdf` wrote a PNG into maps.pdf."""
    out = tmp_path / f"maps{suffix}"
    assert cli.main(["plot", str(run_dir), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(magic)


def test_plot_out_with_another_suffix_is_refused(run_dir, tmp_path, capsys):
    out = tmp_path / "maps.csv"
    assert cli.main(["plot", str(run_dir), "--out", str(out)]) == 1
    _one_line_error(capsys, "--out", ".csv")
    assert not out.exists()


def test_out_that_is_a_symlink_is_named_as_one(tiny, run_dir, tmp_path, capsys):
    """'exists and is not a directory' for a link to a run directory."""
    _, obs_path = tiny
    link = tmp_path / "link"
    link.symlink_to(run_dir)
    assert _assimilate(obs_path, link, "--force") == 1
    _one_line_error(capsys, "symbolic link", str(run_dir))


def test_store_out_that_is_a_run_says_so(run_dir, capsys):
    """'is a bayesda run; bayesda never writes over files it did not create'."""
    argv = ["reanalyse", "--model", "m", "--obs", "o.csv", "--out", str(run_dir)]
    assert cli.main(argv) == 1
    _one_line_error(capsys, "is a bayesda run, not a store")


@pytest.mark.parametrize("target", ["dir", "file"])
def test_simulate_out_that_is_not_a_store_is_refused_in_words(tmp_path, capsys, target):
    """'No group found in store ... at path' (zarr's words)."""
    out = tmp_path / "mine"
    if target == "dir":
        out.mkdir()
        (out / "a.txt").write_text("mine")
    else:
        out.write_text("mine")
    assert cli.main(["data", "simulate", "--preset", "tiny", "--out", str(out)]) == 1
    _one_line_error(capsys, str(out), "not a")
    assert (out / "a.txt" if target == "dir" else out).read_text() == "mine"


@pytest.mark.parametrize("element", ["PRCP", "SNWD"])
def test_ghcn_element_that_is_not_a_temperature_is_refused(tmp_path, capsys, element):
    """`--element PRCP` assimilated precipitation (tenths of mm) as temperature, exit 0."""
    from bayesda.obs import stations as st

    with pytest.raises(SystemExit) as exit_:
        cli.main([*_ASSIM, "--format", "ghcn-dly", "--element", element])
    assert exit_.value.code == 2 and "--element" in capsys.readouterr().err
    dly = _write(tmp_path / "a.dly", [_dly("A", 2014, 1, element, {7: 5})])
    with pytest.raises(ValueError, match="not a temperature.*TAVG"):
        st.read_ghcn_dly(dly, stations=None, element=element)


def test_ghcn_element_in_lower_case_is_accepted():
    args = cli.build_parser().parse_args([*_ASSIM, "--format", "ghcn-dly", "--element", "tmax"])
    assert args.element == "TMAX"


def test_dly_holding_a_record_twice_with_other_values_is_refused(tmp_path):
    """Two records of one station and month with different values: one was kept silently."""
    from bayesda.obs import stations as st

    table = tmp_path / "stations.csv"
    table.write_text("id,lat,lon\nA,40,-100\n")
    rec = _dly("A", 2014, 1, "TAVG", {7: -110})
    dly = _write(tmp_path / "a.dly", [rec, _dly("A", 2014, 1, "TAVG", {7: 150})])
    with pytest.raises(st.StationFormatError, match=r"a.dly:1 and 2: station 'A'.*-110.*150"):
        st.read_ghcn_dly(dly, stations=table)
    dly = _write(tmp_path / "b.dly", [rec, rec])
    df = st.read_ghcn_dly(dly, stations=table)
    assert len(df) == 1 and df.attrs["counts"]["repeats"] == 1


def test_absolute_table_without_a_time_names_the_option(tiny, tmp_path, capsys):
    """'kind='absolute' needs a time: a 'time' column or the time= argument'."""
    path = tmp_path / "abs.csv"
    obs = _obs_values(tiny[0], "absolute")
    obs.drop(columns=[c for c in ("time",) if c in obs]).to_csv(path, index=False)
    assert _assimilate(path, tmp_path / "run", "--kind", "absolute") == 1
    _one_line_error(capsys, "--time", "abs.csv")


def test_elevation_without_sigma_names_the_option(tiny, tmp_path, capsys):
    prior, _ = tiny
    prior = dataclasses.replace(prior, surface_height=np.full(prior.grid.shape, 300.0))
    tiny_path = tmp_path / "elev.csv"
    make_obs(prior.grid, 6, seed=1).drop(columns="sigma").assign(elevation=500.0).to_csv(
        tiny_path, index=False
    )
    from bayesda.obs.elevation import adjust
    from bayesda.obs.table import read_obs

    with pytest.raises(ValueError, match="--lapse-rate-sd 0"):
        adjust(prior, read_obs(tiny_path))


# --------------------------------------------------------------------------------------
# Issue 26, METAR and plausibility hints: real files as real, hints that would pass
# --------------------------------------------------------------------------------------

_METAR_STATIONS = pd.DataFrame(
    {"id": [f"K{i:03d}" for i in range(150)], "lat": 40.0, "lon": np.linspace(-120, -80, 150)}
)


def _metar_file(tmp_path, lines):
    path = tmp_path / "reports.metar"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "group, analysis, when",
    [
        ("302353Z", "2019-07-01T00", "2019-06-30T23:53"),  # was dated 30 July and dropped
        ("312353Z", "2019-02-01T00", "2019-01-31T23:53"),  # was "day 31 does not exist"
    ],
    ids=["evening-before-the-1st", "31-january-for-1-february"],
)
def test_metar_reports_dated_in_the_month_nearest_the_analysis(tmp_path, group, analysis, when):
    from bayesda.obs.stations import read_stations

    path = _metar_file(tmp_path, [f"METAR K001 {group} 18010KT 10SM CLR 21/10 A3000="])
    df = read_stations(path, "metar", stations=_METAR_STATIONS, time=analysis)
    assert list(df["time"]) == [pd.Timestamp(when)]


@pytest.mark.parametrize(
    "report, expect",
    [
        ("METAR COR K001 011150Z 25011KT 9999 BKN051 24/12 Q1017=", 24.0),  # WMO COR form
        ("METAR K001 011155Z AUTO 00000KT 10SM CLR ///// A3005=", None),  # AUTO, missing
        ("METAR K001 011155Z AUTO 00000KT 2 1/2SM BR CLR A3005=", None),  # no temperature
    ],
    ids=["metar-cor-cccc", "auto-slashes", "visibility-2-1/2SM"],
)
def test_metar_valid_forms_are_read_not_refused(tmp_path, report, expect):
    from bayesda.obs.stations import read_stations

    lines = [f"METAR K{i:03d} 011155Z 00000KT 10SM CLR 20/10 A3005=" for i in range(2, 150)]
    df = read_stations(
        _metar_file(tmp_path, [report, *lines]), "metar", stations=_METAR_STATIONS,
        time="2019-07-01T12",
    )  # fmt: skip
    got = df.loc[df["station_id"] == "K001", "value"].to_numpy() - 273.15
    assert list(got) == ([] if expect is None else [pytest.approx(expect)])


def test_metar_one_impossible_report_is_dropped_not_the_file(tmp_path):
    from bayesda.obs.stations import read_stations

    lines = [f"METAR K{i:03d} 011155Z 00000KT 10SM CLR 20/10 A3005=" for i in range(150)]
    lines[9] = "METAR K009 011200Z AUTO 29001KT 91/ RMK AO1 T0907 51017="
    df = read_stations(_metar_file(tmp_path, lines), "metar", stations=_METAR_STATIONS,
                       time="2019-07-01T12")  # fmt: skip
    assert len(df) == 149 and df.attrs["details"]["implausible"][0]["line"] == 10


def test_anomalies_all_shifted_are_not_told_to_pass_tenths(clim_prior, tmp_path):
    """Anomalies all +12 K (over 10 climatological SDs there) got the hint "--units
    0.1degC", which divided them by 10 and ran; now no unit is offered. This climatology's
    SD is about 3 K, so the shift is +40 K."""
    from bayesda.obs.table import read_obs

    obs = make_obs(clim_prior.grid, 30, seed=5)
    obs["value"] = 40.0 + np.random.default_rng(0).normal(0.0, 0.2, len(obs))
    path = tmp_path / "obs.csv"
    obs.to_csv(path, index=False)
    with pytest.raises(ValueError, match="from zero") as err:
        read_obs(path, climatology=clim_prior.climatology, time=TIME, grid=clim_prior.grid)
    assert "pass --units" not in str(err.value)
