"""Reanalysis: assimilate every time of an observation table into one resumable zarr store.

Each time is an independent assimilation whose summaries and diagnostics land in that
time's chunk of the store (:mod:`bayesda.outputs.store`). Pending times are taken in groups of
``batch_times`` consecutive times; each group runs as one compiled NUTS program
(:func:`bayesda.inference.assimilate.assimilate_batch`), and the same program is reused for every
later
group of the same padded shape (see :mod:`bayesda.inference.sampler`). Groups run one after another
in this process, or spread over a Dask ``distributed`` cluster: a local one sized to the
machine by default, or an existing one by address. Every time draws its random numbers from
a seed derived from the run's seed and the time itself, so a time gets the same result
whichever worker runs it and in whatever order, for a given grouping (a different
``batch_times`` gives an equally valid draw that differs in the last digits; it is an
execution setting and is not part of the store's signature).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time as _time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

import bayesda.outputs.store as store
from bayesda.inference.fields import climatology_at
from bayesda.prior.generative import GenerativePrior
from bayesda.settings import ReanalysisSettings

__all__ = [
    "DEFAULT_STEP",
    "ReanalysisSettings",
    "analysis_times",
    "assimilate_times",
    "assimilation_dataset",
    "cached_prior",
    "model_digest",
    "model_step",
    "obs_digest",
    "open_store",
    "read_obs_source",
    "reanalyse",
    "summary_dataset",
    "time_seed",
    "window_obs",
]


_DEFAULT_SETTINGS = ReanalysisSettings()


def time_seed(seed: int, time) -> int:
    """A seed for one time: a hash of the run seed and the time, independent of order."""
    stamp = str(np.datetime64(time, "s"))
    digest = hashlib.sha256(f"{int(seed)}|{stamp}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


DEFAULT_STEP = pd.Timedelta(hours=6)
"""The step of the analysis times when neither the caller nor the model says otherwise."""


def analysis_times(
    obs: pd.DataFrame, start=None, end=None, *, step=None, half_width=None
) -> np.ndarray:
    """The analysis times of a period: every ``step`` from ``start``, those with at least
    one report within ``+-half_width`` (the rule of ``bayesda assimilate --time --window``).

    Args:
      obs: observations with a ``time`` column (each report's valid time).
      start: the first analysis time; default: the first time on the step (from midnight)
        whose window holds the first report.
      end: the last analysis time (inclusive); default: the last time whose window holds
        a report.
      step: the analysis step (default :data:`DEFAULT_STEP`; :func:`reanalyse` uses the
        model's time step).
      half_width: the window's half width (default half the step, so that consecutive
        windows share no report and miss none).

    Returns:
      ``[T]`` sorted datetime64[ns] analysis times.

    Raises:
      ValueError: no ``time`` column, ``end`` before ``start``, a step or half width that
        is not positive, or no report in any window of the period.
    """
    if "time" not in obs.columns:
        raise ValueError("a reanalysis needs observations with a 'time' column")
    step = DEFAULT_STEP if step is None else pd.Timedelta(step)
    half = step / 2 if half_width is None else pd.Timedelta(half_width)
    if not (step > pd.Timedelta(0) and half > pd.Timedelta(0)):
        raise ValueError(f"step={step} and half_width={half} must be positive durations")
    reports = np.sort(pd.to_datetime(obs["time"]).to_numpy().astype("datetime64[ns]"))
    if start is not None and end is not None and pd.Timestamp(end) < pd.Timestamp(start):
        raise ValueError(f"end={end} is before start={start}")
    first = (
        pd.Timestamp(start) if start is not None else (pd.Timestamp(reports[0]) - half).ceil(step)
    )
    last = pd.Timestamp(end) if end is not None else pd.Timestamp(reports[-1]) + half
    grid = np.arange(
        np.datetime64(first, "ns"), np.datetime64(last, "ns") + np.timedelta64(1, "ns"),
        np.timedelta64(step.value, "ns"),
    )  # fmt: skip
    lo = np.searchsorted(reports, grid - np.timedelta64(half.value, "ns"), side="left")
    hi = np.searchsorted(reports, grid + np.timedelta64(half.value, "ns"), side="right")
    sel = grid[hi > lo]
    if sel.size == 0:
        raise ValueError(
            f"no observation times within +-{half} of the analysis times {first} .. {last} "
            f"(every {step}); the table spans {reports[0]} .. {reports[-1]}"
        )
    return sel


def window_obs(obs: pd.DataFrame, times, half_width) -> pd.DataFrame:
    """The reports of each analysis time: within ``+-half_width``, the nearest one per
    station (:func:`bayesda.obs.window.select_window`), with ``time`` set to the analysis
    time and the report's own time in ``obs_time``; one table for all times."""
    from bayesda.obs.window import select_window

    half = pd.Timedelta(half_width)
    t = pd.to_datetime(obs["time"]).to_numpy().astype("datetime64[ns]")
    order = np.argsort(t, kind="stable")
    sorted_t, sorted_obs = t[order], obs.iloc[order]
    frames = []
    for time in np.asarray(times, "datetime64[ns]"):
        lo = np.searchsorted(sorted_t, time - np.timedelta64(half.value, "ns"), side="left")
        hi = np.searchsorted(sorted_t, time + np.timedelta64(half.value, "ns"), side="right")
        if hi > lo:
            frames.append(select_window(sorted_obs.iloc[lo:hi], time, half)[0])
    out = pd.concat(frames, ignore_index=True)
    out.attrs = dict(obs.attrs)
    return out


def model_step(prior) -> pd.Timedelta:
    """The model's time step: twice :func:`bayesda.obs.window.default_half_width`."""
    from bayesda.obs.window import default_half_width

    return 2 * default_half_width(prior)


def read_obs_source(src: str | os.PathLike, climatology=None, **kwargs) -> pd.DataFrame:
    """Read an observation table, or a directory of per-time tables (CSV or netCDF)."""
    from bayesda.obs.table import read_obs

    path = Path(src)
    if path.is_dir():
        files = sorted([*path.glob("*.csv"), *path.glob("*.nc")])
        if not files:
            raise FileNotFoundError(f"no .csv or .nc observation files in directory {path}")
        frames = [read_obs(f, climatology=climatology, **kwargs) for f in files]
        return pd.concat(frames, ignore_index=True)
    return read_obs(path, climatology=climatology, **kwargs)


def obs_digest(obs: pd.DataFrame) -> str:
    """Content hash of the observations (order-free): part of a store's signature."""
    cols = [c for c in ("time", "lat", "lon", "value", "sigma") if c in obs.columns]
    frame = obs[cols].sort_values(cols).reset_index(drop=True)
    return hashlib.sha256(
        pd.util.hash_pandas_object(frame, index=False).values.tobytes()
    ).hexdigest()[:16]


def model_digest(prior: GenerativePrior) -> str:
    """The model's name and a hash of its card's file list: part of a store's signature."""
    card = prior.card or {}
    payload = json.dumps(card.get("files", card), sort_keys=True, default=str)
    return f"{prior.name}:{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def assimilate_times(
    prior: GenerativePrior, obs: pd.DataFrame, times, settings: ReanalysisSettings
) -> list[xr.Dataset]:
    """Assimilate a group of times in one compiled program; return what the store keeps.

    Args:
      prior: the generative prior.
      obs: observations of these times (anomalies, K; a ``time`` column).
      times: the analysis times.
      settings: sampler settings.

    Returns:
      One Dataset per time with the store's field variables ``(lat, lon)``, optional
      ``samples`` ``(sample, lat, lon)`` and scalar diagnostics (see :mod:`bayesda.outputs.store`);
      ``wall_s`` is the group's wall time divided evenly over its times.
    """
    from bayesda.inference.assimilate import (
        assimilate_batch,
        assimilate_summaries,
        summaries_supported,
    )

    t0 = _time.perf_counter()
    common = dict(
        seeds=[time_seed(settings.seed, t) for t in times],
        sampler=settings.sampler,
        options=settings.options,
    )
    if summaries_supported(settings.sampler, settings.options):
        fast = assimilate_summaries(
            prior, obs, list(times), keep_samples=settings.keep_samples, **common
        )
        out = [summary_dataset(prior, r) for r in fast]
    else:  # the Student-t fields need the per-time path (per-draw conditioning noise)
        results = assimilate_batch(prior, obs, list(times), progress_bar=False, **common)
        out = [assimilation_dataset(prior, r, settings) for r in results]
    wall = (_time.perf_counter() - t0) / len(out)
    for ds in out:
        ds["wall_s"] = ((), np.asarray(wall, dtype=store.DIAG_VARS["wall_s"][0]))
    return out


def summary_dataset(prior, result) -> xr.Dataset:
    """The store's variables for one :class:`bayesda.inference.assimilate.TimeSummary`.

    Args:
      prior: the generative prior (its climatology gives ``tas_mean``).
      result: one time of :func:`bayesda.inference.assimilate.assimilate_summaries`.

    Returns:
      The field variables ``(lat, lon)``, optional ``samples`` and the scalar diagnostics
      of :mod:`bayesda.outputs.store`, ``wall_s`` unset.
    """
    s = result.summary
    dims = ("lat", "lon")
    names = [name for name in store.FIELD_VARS if name != "tas_mean"]
    out = xr.Dataset({name: (dims, getattr(s, name)) for name in names})
    if prior.climatology is not None and result.time is not None:
        clim = climatology_at(prior.climatology, result.time, prior.grid)
        out["tas_mean"] = (dims, s.mean + clim)
    if s.samples is not None:
        out["samples"] = (("sample", *dims), s.samples.astype(np.float32))
    verdict = s.verdict if result.settings["method"] == "nuts" else None
    return _with_diagnostics(out, verdict, result.obs.n)


def _with_diagnostics(out: xr.Dataset, verdict, n_obs: int) -> xr.Dataset:
    """Add the store's scalar diagnostics (NaN and verdict -1 without a verdict)."""
    if verdict is not None:
        v = verdict
        diag = dict(
            max_rhat=np.nanmax([v.max_rhat_z, v.max_rhat_field]),
            min_ess_bulk=np.nanmin([v.min_ess_bulk_z, v.min_ess_bulk_field]),
            min_ess_tail=np.nanmin([v.min_ess_tail_z, v.min_ess_tail_field]),
            divergences=v.divergences,
            verdict=store.VERDICT_CODES[v.status],
        )
    else:
        diag = dict(
            max_rhat=np.nan, min_ess_bulk=np.nan, min_ess_tail=np.nan, divergences=0, verdict=-1
        )
    diag["n_obs"] = int(n_obs)
    for name, value in diag.items():
        out[name] = ((), np.asarray(value, dtype=store.DIAG_VARS[name][0]))
    return out


def assimilation_dataset(prior, result, settings: ReanalysisSettings) -> xr.Dataset:
    """The store's variables for one :class:`bayesda.inference.assimilate.Assimilation`.

    The per-time path's counterpart of :func:`summary_dataset` (the Student-t fields need it).

    Args:
      prior: the generative prior.
      result: one time of :func:`bayesda.inference.assimilate.assimilate_batch`.
      settings: the reanalysis settings (``keep_samples``, ``method``).

    Returns:
      The field variables ``(lat, lon)``, optional ``samples`` and the scalar diagnostics
      of :mod:`bayesda.outputs.store`, ``wall_s`` unset.
    """
    from bayesda.inference.fields import posterior_dataset
    from bayesda.verify.verdict import diagnose

    post = posterior_dataset(result, prior, time=result.time)
    keep = ["mean", "sd", "q05", "q50", "q95"] + (["tas_mean"] if "tas_mean" in post else [])
    out = post[keep].drop_vars([c for c in post[keep].coords if c not in ("lat", "lon")])
    if settings.keep_samples:
        flat = result.field.reshape(-1, *result.field.shape[-2:])
        pick = np.linspace(0, flat.shape[0] - 1, settings.keep_samples).round().astype(int)
        out["samples"] = (("sample", "lat", "lon"), flat[pick].astype(np.float32))
    verdict = diagnose(result.idata, result.field) if settings.method == "nuts" else None
    return _with_diagnostics(out, verdict, result.obs.n)


@functools.lru_cache(maxsize=4)
def cached_prior(model_path: str) -> GenerativePrior:
    """The model at ``model_path``, loaded once per process (a Dask worker's cache)."""
    from bayesda.prior.checkpoint import load_model

    return load_model(model_path)


def _run_task(model_path: str, obs: pd.DataFrame, times, indices, settings, out: str):
    """One unit of work on a worker: the worker loads (and caches) the model itself."""
    return _assimilate_and_write(cached_prior(model_path), obs, times, indices, settings, out)


def _assimilate_and_write(prior, obs, times, indices, settings, out) -> list[int]:
    """Assimilate a group of times, write them to the store; return their verdict codes."""
    results = assimilate_times(prior, obs, times, settings)
    store.write_times(out, indices, results)
    return [int(r["verdict"]) for r in results]


def _groups(todo: np.ndarray, size: int) -> list[np.ndarray]:
    """Pending store indices in groups of ``size`` (in order)."""
    return [todo[i : i + size] for i in range(0, todo.size, size)]


def reanalyse(
    model: str | os.PathLike | GenerativePrior,
    obs: pd.DataFrame,
    out: str | os.PathLike,
    *,
    start=None,
    end=None,
    settings: ReanalysisSettings = _DEFAULT_SETTINGS,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
    verify: bool = True,
    report=None,
    step=None,
    window=None,
    superob: bool = False,
) -> Path:
    """Assimilate every analysis time in ``[start, end]`` into the zarr store ``out``.

    The analysis times are those of ``bayesda assimilate``: every ``step`` from ``start``
    (default the model's time step, from midnight), each with the reports within
    ``+-window`` (default half the step), the nearest one per station
    (:func:`analysis_times`, :func:`window_obs`); a time with no report is not analysed.

    Safe to interrupt: running the same call again skips the times already done and
    finishes the rest (see :mod:`bayesda.outputs.store`). Only one process writes a store at a
    time (:func:`bayesda.runtime.files.lock`); an existing directory that is not a bayesda
    store is refused and left untouched.

    Args:
      model: a model directory (needed for Dask, whose workers load it themselves) or an
        in-memory prior (one process only).
      obs: observations with a ``time`` column, values anomalies in K: a DataFrame, or a
        CSV/netCDF file or a directory of them (:func:`read_obs_source`).
      out: the ``.zarr`` store path.
      start, end: the period (inclusive); default: all observed times. ``start`` is the
        first analysis time and the origin of the step.
      settings: sampler settings.
      scheduler: None to run in this process; "local" for a local Dask cluster sized to the
        machine; or the address of a running Dask scheduler ("tcp://host:8786").
      n_workers: workers of the local cluster (default: the number of cores).
      progress: show a progress bar over times.
      verify: on resume, read back every finished time and compare it with its checksum
        (:func:`bayesda.outputs.store.verify`); damaged times are redone.
      report: called with ``{index: (time, reason)}`` of the damaged times found (default:
        one line per time on stderr when there are any).
      step: the analysis step (default: the model's time step, :func:`model_step`).
      window: the half width around each time (default half the step).
      superob: average each time's reports that share a grid cell
        (:func:`bayesda.obs.capacity.superob`), after the window.

    Returns:
      The store path.

    Raises:
      bayesda.runtime.files.LockedError: another process is writing ``out``.
      bayesda.runtime.files.OutputError: ``out`` exists and is not a bayesda store.
      bayesda.outputs.store.StoreCorruptError: the store's metadata or done flags are unreadable.
    """
    import bayesda.runtime.files as files
    from bayesda.obs.table import as_obs_table

    if not isinstance(obs, pd.DataFrame):
        if isinstance(obs, str | os.PathLike) and Path(obs).is_dir():
            obs = read_obs_source(obs, climatology=getattr(model, "climatology", None))
        else:
            prior = model if isinstance(model, GenerativePrior) else None
            obs = as_obs_table(
                obs,
                climatology=getattr(prior, "climatology", None),
                grid=getattr(prior, "grid", None),
                where="bayesda.reanalyse",
            )
    out = Path(out)
    files.check_target(out, "store", resume=True)
    with files.lock(out):
        return _reanalyse(
            model, obs, out, start, end, settings, scheduler, n_workers, progress, verify, report,
            step, window, superob,
        )  # fmt: skip


def _report_damaged(damaged: dict) -> None:
    import sys

    for index, (t, reason) in damaged.items():
        print(f"reanalyse: time {index} ({t}) was damaged: {reason}; redoing it", file=sys.stderr)


def open_store(out, times, prior, settings, signature, *, verify, report) -> np.ndarray:
    """Open (or create) the store, with ``verify`` re-check every finished time and mark the
    damaged ones pending (``report`` hears of them); return the pending time indices."""
    store.open_or_create(
        out, times, prior.grid, n_samples=settings.keep_samples, signature=signature
    )
    if verify:
        bad = store.verify(out)
        if bad:
            store.mark_pending(out, list(bad))
        if bad or report is not None:
            (report or _report_damaged)({i: (str(times[i])[:19], w) for i, w in bad.items()})
    return store.pending(out)


def _reanalyse(
    model, obs, out, start, end, settings, scheduler, n_workers, progress, verify, report,
    step, window, superob,
) -> Path:  # fmt: skip
    if scheduler is not None and isinstance(model, GenerativePrior):
        raise ValueError("a Dask reanalysis needs a model directory, not an in-memory prior")
    prior = (
        model if isinstance(model, GenerativePrior) else cached_prior(str(Path(model).resolve()))
    )
    step = model_step(prior) if step is None else pd.Timedelta(step)
    half = step / 2 if window is None else pd.Timedelta(window)
    times = analysis_times(obs, start, end, step=step, half_width=half)
    obs = window_obs(obs, times, half)
    if superob:
        from bayesda.obs.capacity import superob as _superob

        obs = _superob(obs, prior.grid)
    obs_time = pd.to_datetime(obs["time"]).to_numpy().astype("datetime64[ns]")
    signature = {
        "model": model_digest(prior),
        "obs": obs_digest(obs[np.isin(obs_time, times)]),
        "settings": settings.signature(),
    }
    todo = open_store(out, times, prior, settings, signature, verify=verify, report=report)
    groups = [
        (idx, obs[np.isin(obs_time, times[idx])].reset_index(drop=True))
        for idx in _groups(todo, settings.batch_times)
    ]
    bar = tqdm(
        total=times.size,
        initial=times.size - todo.size,
        desc="reanalyse",
        unit="time",
        disable=not progress,
    )
    if scheduler is None:
        _run_in_process(prior, groups, times, settings, out, bar)
    else:
        _run_on_dask(
            str(Path(model).resolve()), groups, times, settings, out, scheduler, n_workers, bar
        )
    bar.close()
    return out


def _run_in_process(prior, groups, times, settings, out, bar) -> None:
    """Each group in turn; a group's store write overlaps the next group's sampling.

    One writer thread, at most one write in flight: a failed write stops the run at the
    next group with the write's own error (the group is then pending, as after a kill).
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bayesda-store") as pool:
        pending, pending_size = None, 0
        for idx, group in groups:
            results = assimilate_times(prior, group, times[idx], settings)
            if pending is not None:
                pending.result()  # re-raises a failed write
                bar.update(pending_size)
            pending, pending_size = pool.submit(store.write_times, out, idx, results), idx.size
        if pending is not None:
            pending.result()
            bar.update(pending_size)


def _run_on_dask(model_path, groups, times, settings, out, scheduler, n_workers, bar):
    from bayesda.runtime.optional import require

    dist = require("distributed", "a reanalysis on a Dask cluster (--scheduler)")
    Client, LocalCluster, as_completed = dist.Client, dist.LocalCluster, dist.as_completed

    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        cluster, client = None, Client(scheduler)
    try:
        futures = [
            client.submit(
                _run_task, model_path, group, times[idx], idx, settings, str(out), pure=False
            )
            for idx, group in groups
        ]
        for fut in as_completed(futures):
            bar.update(len(fut.result()))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
