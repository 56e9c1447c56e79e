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
        if not inner:
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
    monkeypatch.setattr(bayesda.workflows.reanalysis, "_cached_prior", lambda path: clim_prior)
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
