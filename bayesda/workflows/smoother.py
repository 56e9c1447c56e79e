"""Reanalysis with the smoother: overlapping windows of times into the resumable store.

``bayesda reanalyse --smoother`` fills the same zarr store as the single-time reanalysis
(:mod:`bayesda.outputs.store`: one chunk per observed time, summaries and a verdict per time,
resumable, checksummed), but analyses each time inside a window of ``N`` consecutive model
times sampled together (:func:`bayesda.inference.window.assimilate_window`), so that the
observations of neighbouring times inform it.

Which window writes which time. The model times are cut into consecutive blocks of
``stride`` (``S``) steps counted from the first time of the store; block ``b`` is analysed in
the window of ``N`` times centred on the block's middle, which reaches ``(N - S) / 2`` steps
beyond the block on either side, and that window writes the block's observed times, and only
those. Windows of neighbouring blocks overlap by ``N - S`` times, but every time is written
by exactly one window, the one in which it is most central, with at least ``(N - S) / 2``
steps of context on each side. The rule depends only on the store's first time, ``N`` and
``S`` (all in the store's signature), so an interrupted run resumes with the same windows:
a pending time is redone with the window (and the seed, a hash of the run seed and the
window's middle time) that would have written it first. ``S = 1`` writes each time from the
window centred on it (the most context, ``N`` times the sampling); ``S = N`` uses disjoint
windows. Observations at window times outside ``[start, end]`` count as context.
"""

from __future__ import annotations

import os
import time as _time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import bayesda.outputs.store as store
from bayesda.prior.generative import GenerativePrior
from bayesda.settings import ReanalysisSettings
from bayesda.workflows.reanalysis import (
    analysis_times,
    assimilation_dataset,
    cached_prior,
    model_digest,
    model_step,
    obs_digest,
    open_store,
    time_seed,
    window_obs,
)

__all__ = ["Window", "plan_windows", "reanalyse_smoother"]


class Window(NamedTuple):
    """One window of the smoother.

    Attributes:
      times: ``[N]`` the window's model times.
      write: indices into ``times`` of the store times this window writes.
      indices: the store positions of those times.
    """

    times: np.ndarray
    write: np.ndarray
    indices: np.ndarray


def plan_windows(times, step_hours: float, window_times: int, stride: int) -> list[Window]:
    """The windows that write the store's ``times`` (module docstring).

    Args:
      times: ``[n]`` the store's times (ascending), on the model's time grid.
      step_hours: the model step.
      window_times: ``N``, odd.
      stride: ``S``, odd, ``1 <= S <= N``.

    Raises:
      ValueError: bad ``N`` or ``S``, or a time off the grid of the first one.
    """
    if window_times < 1 or window_times % 2 == 0:
        raise ValueError(f"window_times={window_times} must be odd and >= 1")
    if stride < 1 or stride % 2 == 0 or stride > window_times:
        raise ValueError(f"stride={stride} must be odd and in [1, window_times={window_times}]")
    t = np.asarray(times, "datetime64[s]")
    step = np.timedelta64(int(round(step_hours * 3600)), "s")
    offset = (t - t[0]) / step
    if not np.allclose(offset, np.round(offset)):
        k = int(np.flatnonzero(~np.isclose(offset, np.round(offset)))[0])
        raise ValueError(f"time {t[k]} is not a whole number of {step_hours:g} h steps from {t[0]}")
    block = np.round(offset).astype(np.int64) // stride
    out = []
    half = window_times // 2
    for b in np.unique(block):
        middle = t[0] + (b * stride + stride // 2) * step
        wtimes = middle + np.arange(-half, half + 1) * step
        idx = np.flatnonzero(block == b)
        write = np.searchsorted(wtimes, t[idx])
        out.append(Window(wtimes.astype("datetime64[ns]"), write, idx))
    return out


def _frames(obs: pd.DataFrame, times: np.ndarray) -> list:
    stamps = pd.to_datetime(obs["time"]).to_numpy().astype("datetime64[ns]")
    return [obs[stamps == t].reset_index(drop=True) for t in times]


def reanalyse_smoother(
    model: str | os.PathLike | GenerativePrior,
    obs: pd.DataFrame,
    out: str | os.PathLike,
    *,
    start=None,
    end=None,
    settings: ReanalysisSettings | None = None,
    window_times: int = 9,
    stride: int = 5,
    progress: bool = True,
    verify: bool = True,
    report=None,
    step=None,
    window=None,
    superob: bool = False,
) -> Path:
    """Assimilate every observed time in ``[start, end]`` with the smoother into ``out``.

    Args:
      model: a model directory or an in-memory prior, with latent dynamics.
      obs: observations with a ``time`` column, anomalies in K.
      out: the ``.zarr`` store (created, or resumed when its signature matches).
      start, end: the period (inclusive).
      settings: sampler settings (:class:`bayesda.settings.ReanalysisSettings`; the normal
        likelihood; ``batch_times`` is not used); default the reanalysis preset with the
        window's target acceptance
        (:data:`bayesda.inference.window.WINDOW_TARGET_ACCEPT`).
      window_times: ``N``, odd (9: +-1 day at 6-hourly steps).
      stride: ``S``, odd, at most ``N`` (module docstring).
      progress: show a progress bar over times.
      verify: on resume, read back the finished times and redo damaged ones.
      report: called with ``{index: (time, reason)}`` of the damaged times found.
      step, window, superob: the analysis times and their reports, as for
        :func:`bayesda.workflows.reanalysis.reanalyse` (every ``step`` with a report within
        ``+-window``; the step must be the dynamics' step). Window times outside the period,
        and those without a report of their own, are in the windows too.

    Returns:
      The store path.

    Raises:
      ValueError: a prior without dynamics, a step other than the dynamics', bad
        ``N``/``S``, or no observed time in range.
      bayesda.outputs.store.StoreMismatchError: ``out`` was made with other settings
        (e.g. by the single-time reanalysis, or another ``N`` or ``S``).
    """
    import bayesda.runtime.files as files

    if settings is None:
        from bayesda.inference.window import WINDOW_TARGET_ACCEPT

        settings = ReanalysisSettings(target_accept=WINDOW_TARGET_ACCEPT)
    out = Path(out)
    files.check_target(out, "store", resume=True)
    prior = (
        model if isinstance(model, GenerativePrior) else cached_prior(str(Path(model).resolve()))
    )
    if prior.dynamics is None:
        raise ValueError(
            f"the smoother needs a model with latent dynamics; {prior.name!r} has none "
            "(fit them with analysis/window/fit_dynamics.py --apply)"
        )
    dyn_step = pd.Timedelta(hours=prior.dynamics.step_hours)
    step = model_step(prior) if step is None else pd.Timedelta(step)
    if step != dyn_step:
        raise ValueError(
            f"the smoother's analysis step {step} must be the latent dynamics' step {dyn_step}"
        )
    half = step / 2 if window is None else pd.Timedelta(window)
    times = analysis_times(obs, start, end, step=step, half_width=half)
    plan = plan_windows(times, prior.dynamics.step_hours, window_times, stride)
    every = np.unique(np.concatenate([w.times for w in plan]))
    used = window_obs(obs, every, half)  # each window time's reports, time = that time
    if superob:
        from bayesda.obs.capacity import superob as _superob

        used = _superob(used, prior.grid)
    signature = {
        "model": model_digest(prior),
        "obs": obs_digest(used),
        "settings": settings.signature(),
        "smoother": {
            "window_times": int(window_times),
            "stride": int(stride),
            "first_time": str(np.datetime64(times[0], "s")),
        },
    }
    with files.lock(out):
        todo = open_store(out, times, prior, settings, signature, verify=verify, report=report)
        pending = set(todo.tolist())
        bar = tqdm(
            total=times.size,
            initial=times.size - len(pending),
            desc="reanalyse --smoother",
            unit="time",
            disable=not progress,
        )
        for w in plan:
            todo = np.array([k for k, i in enumerate(w.indices) if i in pending], int)
            if todo.size == 0:
                continue
            t0 = _time.perf_counter()
            results = _analyse(prior, used, w, todo, settings)
            wall = (_time.perf_counter() - t0) / todo.size
            for ds in results:
                ds["wall_s"] = ((), np.asarray(wall, dtype=store.DIAG_VARS["wall_s"][0]))
            store.write_times(out, w.indices[todo], results)
            bar.update(todo.size)
        bar.close()
    return out


def _analyse(prior, obs, w: Window, todo: np.ndarray, settings: ReanalysisSettings) -> list:
    """Sample one window and return the store's variables of its times ``todo``."""
    from bayesda.inference.window import assimilate_window

    middle = w.times[len(w.times) // 2]
    results = assimilate_window(
        prior,
        _frames(obs, w.times),
        w.times,
        seed=time_seed(settings.seed, middle),
        sampler=settings.sampler,
        options=settings.options,
        want=w.write[todo],
    )
    return [assimilation_dataset(prior, r, settings) for r in results]
