"""A run directory for a window of analysis times (``bayesda assimilate --window-times N``).

The analysis time (the middle of the window) is written exactly as a single-time run
(:mod:`bayesda.workflows.run`), from the window's joint posterior; every other time of the
window gets its own run directory inside it, with the same files except the maps::

    RUN/                         the analysis time: posterior.nc, inference.nc, maps.png, ...
    RUN/window/<YYYY-MM-DDTHH:MM>/ posterior.nc inference.nc obs.csv obs_posterior.csv
                                 diagnostics.json run.json
                                 (``bayesda diagnose`` and ``bayesda plot`` read them)

``run.json`` gains a ``window`` entry: the window's times, the observations and verdict at
each. Everything is written into the one temporary directory that is renamed into place,
so the window's run is atomic like any other.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

import bayesda.runtime.files as files
from bayesda.settings import ModelOptions, SamplerSettings
from bayesda.workflows.run import _write_json, assimilate_to_run

__all__ = ["time_label", "window_to_run"]


def time_label(time) -> str:
    """The folder name of a window time: ``YYYY-MM-DDTHH:MM``."""
    return str(np.datetime64(time, "m"))


def _write_time(directory: Path, prior, a, ds, verdict, info: dict) -> None:
    from bayesda.inference.fields import write_netcdf
    from bayesda.outputs.sites import site_table

    directory.mkdir(parents=True)
    files.write_marker(directory, "run")
    write_netcdf(ds, directory / "posterior.nc")
    a.idata.to_netcdf(str(directory / "inference.nc"))
    a.obs.frame.to_csv(directory / "obs.csv", index=False, float_format="%.9g")
    if a.obs.n:
        site_table(a.obs.frame, ds).to_csv(
            directory / "obs_posterior.csv", index=False, float_format="%.4f"
        )
    _write_json(verdict.to_dict(), directory / "diagnostics.json")
    _write_json(info, directory / "run.json")


def window_to_run(
    prior,
    obs_by_time,
    times,
    out,
    *,
    truth=None,
    force: bool = False,
    extra: dict | None = None,
    geotiff: bool = False,
    seed: int = 0,
    sampler: SamplerSettings | None = None,
    options: ModelOptions | None = None,
    progress_bar: bool = True,
) -> dict:
    """Sample a window of times jointly and write its run directory (module docstring).

    Args:
      prior: the prior, with latent dynamics.
      obs_by_time: one observation table per window time (None: none at that time).
      times: the window's times (odd in number; the middle one is the analysis time).
      out: the run directory (as for :func:`bayesda.workflows.run.assimilate_to_run`).
      truth: the true anomaly at the analysis time, when known.
      force, extra, geotiff, seed, sampler, options, progress_bar: as for
        :func:`~bayesda.workflows.run.assimilate_to_run`.

    Returns:
      The analysis time's ``run.json`` content (with ``window``), plus ``_window``: every
      time's :class:`~bayesda.inference.result.Assimilation`.
    """
    from bayesda._version import __version__
    from bayesda.inference.fields import posterior_dataset
    from bayesda.inference.window import assimilate_window
    from bayesda.verify.verdict import diagnose

    out = Path(out)
    files.check_target(out, "run", force=force)  # before sampling
    times = list(times)
    if len(times) % 2 == 0:
        raise ValueError(f"a window needs an odd number of times, got {len(times)}")
    centre = len(times) // 2
    results = assimilate_window(
        prior,
        obs_by_time,
        times,
        seed=seed,
        sampler=sampler,
        options=options,
        progress_bar=progress_bar,
    )
    others = []
    for k, a in enumerate(results):
        if k == centre:
            continue
        ds = posterior_dataset(a, prior, time=a.time)
        verdict = diagnose(a.idata, field_samples=ds[["anomaly"]])
        others.append((k, a, ds, verdict))
    window = {
        "times": [str(np.datetime64(t, "s")) for t in times],
        "analysis_index": centre,
        "n_obs": [a.obs.n for a in results],
        "verdicts": {time_label(a.time): v.status for _, a, _, v in others},
        "repr_corr": results[0].settings["window"]["repr_corr"],
        "dirs": {time_label(a.time): f"window/{time_label(a.time)}" for _, a, _, _ in others},
    }

    def also(tmp: Path) -> None:
        for k, a, ds, verdict in others:
            info = {
                "bayesda_version": __version__,
                "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "model": prior.name,
                "time": str(np.datetime64(a.time, "s")),
                "window_index": k,
                "analysis_time": window["times"][centre],
                "n_obs": a.obs.n,
                "settings": a.settings,
                "verdict": verdict.status,
            }
            _write_time(tmp / "window" / time_label(a.time), prior, a, ds, verdict, info)

    info = assimilate_to_run(
        prior,
        results[centre].obs.frame,
        out,
        time=times[centre],
        truth=truth,
        force=force,
        extra={"window": window, **(extra or {})},
        geotiff=geotiff,
        seed=seed,
        sampler=sampler,
        options=options,
        progress_bar=progress_bar,
        assimilation=results[centre],
        also=also,
    )
    return {**info, "_window": results}
