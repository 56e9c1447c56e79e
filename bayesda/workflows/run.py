"""A run directory: one analysis, its verdict, its maps and its provenance, written atomically.

:func:`assimilate_to_run` is what ``bayesda assimilate`` and the demo run; the command line
(:mod:`bayesda.cli.assim`) only parses arguments and calls it.

A run directory holds::

    RUN/posterior.nc       field samples and summaries (bayesda.inference.fields.posterior_dataset)
    RUN/inference.nc       ArviZ InferenceData (z, sample_stats, y: observed, predictive, loglik)
    RUN/obs.csv            the observations used (anomalies, K; QC columns of bayesda.preflight.qc)
    RUN/obs_posterior.csv  the posterior at each observation: mean, SD, residual, QC flag
    RUN/diagnostics.json   the verdict and its numbers (bayesda.verify.verdict.Verdict)
    RUN/maps.png           uncertainty maps (bayesda.outputs.maps.plot_posterior)
    RUN/trace.png          trace plots of the first latent dimensions (NUTS only)
    RUN/trace_rank.png     rank plots of the same (NUTS only)
    RUN/run.json           settings, timings, gradient evaluations, provenance
    RUN/geotiff/*.tif      mean, SD, quantiles, exceedance probabilities (``geotiff=True``)
    RUN/sites.csv, .nc     the predictive of an observation at the user's sites (``sites=``)
    RUN/climatology_sd.nc  climatological anomaly SD at the analysis time (for the "fog")
    RUN/truth.nc           the true anomaly, when known (the demo)
    RUN/verification.json  RMSE, CRPS, coverage against the truth, when known
    RUN/.bayesda           marker: this directory is a bayesda run (bayesda.runtime.files)

Everything is written to a hidden temporary directory beside ``RUN`` and renamed into place
at the end, so a failed run leaves no partial ``RUN``. A lock (``.RUN.lock``) held from start
to end keeps two processes from writing one run, and ``force`` replaces only a bayesda run,
never another directory (:mod:`bayesda.runtime.files`).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import time as _time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import bayesda.runtime.files as files
from bayesda.settings import ModelOptions, SamplerSettings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import xarray as xr

__all__ = [
    "assimilate_to_run",
    "learned_summary",
    "load_prior",
    "sites_table",
    "verification",
    "write_sites",
]


def load_prior(path):
    """Load a trained model directory (``bayesda.prior.checkpoint.load_model``)."""
    try:
        from bayesda.prior.checkpoint import load_model
    except ImportError as err:  # the checkpoint module is developed separately
        raise FileNotFoundError(
            f"cannot load {path}: bayesda.prior.checkpoint is not available ({err})"
        ) from err
    return load_model(path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _write_json(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _climatology_sd(prior, time):
    if prior.climatology is None or time is None:
        return None
    sd = np.asarray(prior.climatology.std(np.datetime64(time)), np.float64)
    return sd if sd.shape == prior.grid.shape else None


def assimilate_to_run(
    prior,
    obs,
    out,
    *,
    time=None,
    truth=None,
    force: bool = False,
    extra: dict | None = None,
    geotiff: bool = False,
    sites: pd.DataFrame | None = None,
    sites_units: str = "degC",
    seed: int = 0,
    sampler: SamplerSettings | None = None,
    options: ModelOptions | None = None,
    progress_bar: bool = True,
    assimilation=None,
    also=None,
) -> dict:
    """Assimilate and write a complete run directory (atomically).

    Args:
      prior: the :class:`bayesda.prior.generative.GenerativePrior`.
      obs: observation table (anomalies, K).
      out: the run directory: absent or empty, or a bayesda run replaced with ``force``.
      time: analysis time.
      truth: optional true anomaly ``(lat, lon)`` DataArray (K), saved and mapped.
      force: replace an existing bayesda run at ``out`` (never another directory).
      extra: more entries for ``run.json``.
      geotiff: also write the two-dimensional layers as GeoTIFF in ``RUN/geotiff/``
        (:mod:`bayesda.outputs.geotiff`; needs rasterio).
      sites: sites (``id``, ``lat``, ``lon``, optional ``elevation``; see
        :func:`bayesda.outputs.sites.read_sites`) where the predictive of an observation is
        written to ``RUN/sites.csv`` and ``RUN/sites.nc`` (:meth:`Assimilation.at`).
      sites_units: units of the absolute temperatures in the sites files.
      seed, sampler, options, progress_bar: as for :func:`bayesda.inference.assimilate.assimilate`.
      assimilation: an :class:`~bayesda.inference.result.Assimilation` already sampled (e.g.
        one time of a window, :mod:`bayesda.workflows.window`); ``obs`` and the sampler
        settings are then not used to sample.
      also: called with the temporary run directory before it is renamed into place, to
        write more into the same atomic run.

    Returns:
      The ``run.json`` content, plus the in-memory ``assimilation``, ``dataset`` and
      ``verdict`` under keys starting with ``_``.

    Raises:
      bayesda.runtime.files.OutputError: ``out`` is not a bayesda run (refused even with
        ``force``), exists without ``force``, or is being written by another process
        (:class:`bayesda.runtime.files.LockedError`).
    """
    out = Path(out)
    files.check_target(out, "run", force=force)
    with files.lock(out):
        return _write_run(
            prior,
            obs,
            out,
            time=time,
            truth=truth,
            force=force,
            extra=extra,
            geotiff=geotiff,
            sites=sites,
            sites_units=sites_units,
            seed=seed,
            sampler=sampler,
            options=options,
            progress_bar=progress_bar,
            assimilation=assimilation,
            also=also,
        )


def _write_run(
    prior,
    obs,
    out: Path,
    *,
    time,
    truth,
    force,
    extra,
    geotiff,
    seed,
    sampler,
    options,
    progress_bar,
    sites=None,
    sites_units="degC",
    assimilation=None,
    also=None,
) -> dict:
    from bayesda._version import __version__
    from bayesda.inference.assimilate import assimilate
    from bayesda.inference.fields import posterior_dataset, write_netcdf
    from bayesda.outputs.maps import plot_posterior
    from bayesda.outputs.sites import site_table
    from bayesda.verify.verdict import diagnose, plot_sampler_diagnostics

    files.check_target(out, "run", force=force)  # again: under the lock
    files.clean_temps(out)
    if truth is not None and tuple(np.shape(truth)) != prior.grid.shape:
        raise ValueError(
            f"truth shape {np.shape(truth)} does not match the model grid {prior.grid.shape}"
        )
    t0 = _time.perf_counter()
    a = assimilation or assimilate(
        prior,
        obs,
        time=time,
        seed=seed,
        sampler=sampler,
        options=options,
        progress_bar=progress_bar,
    )
    ds = posterior_dataset(a, prior, time=time)
    verdict = diagnose(a.idata, field_samples=ds[["anomaly"]])
    t_diag = _time.perf_counter() - t0 - a.timings["wall"]
    tmp = files.temp_path(out)
    tmp.mkdir()
    try:
        files.write_marker(tmp, "run")
        with files.writing(out / "posterior.nc"):
            write_netcdf(ds, tmp / "posterior.nc")
        with files.writing(out / "inference.nc"):
            a.idata.to_netcdf(str(tmp / "inference.nc"))
        tifs = []
        if geotiff:
            from bayesda.outputs.geotiff import write_geotiff

            tifs = [p.name for p in write_geotiff(ds, tmp / "geotiff")]
        if sites is not None:
            write_sites(a, sites, tmp, units=sites_units, seed=seed)
        a.obs.frame.to_csv(tmp / "obs.csv", index=False, float_format="%.9g")
        site_table(a.obs.frame, ds).to_csv(
            tmp / "obs_posterior.csv", index=False, float_format="%.4f"
        )
        _write_json(verdict.to_dict(), tmp / "diagnostics.json")
        scores = None
        if truth is not None:
            write_netcdf(truth.to_dataset(name="anomaly"), tmp / "truth.nc")
            scores = verification(ds, truth, a.obs.frame)
            _write_json(scores, tmp / "verification.json")
        clim_sd = _climatology_sd(prior, time)
        if clim_sd is not None:
            sd_da = ds["mean"].copy(data=clim_sd.astype(np.float32))
            sd_da.attrs = {
                "units": "K",
                "long_name": "climatological SD of the temperature anomaly",
            }
            write_netcdf(sd_da.to_dataset(name="sd"), tmp / "climatology_sd.nc")
        t1 = _time.perf_counter()
        plot_posterior(ds, a.obs.frame, truth=truth, climatology_sd=clim_sd, out=tmp / "maps.png")
        if "sample_stats" in a.idata.groups():
            plot_sampler_diagnostics(a.idata, tmp / "trace.png")
        t_plot = _time.perf_counter() - t1
        info = {
            "bayesda_version": __version__,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": prior.name,
            "latent_dim": prior.latent_dim,
            "grid_shape": list(prior.grid.shape),
            "time": None if time is None else str(np.datetime64(time, "s")),
            "n_obs": a.obs.n,
            "settings": a.settings,
            "timings_s": {
                **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in a.timings.items()},
                "diagnose": round(t_diag, 3),
                "plots": round(t_plot, 3),
            },
            "grad_evals": a.grad_evals,
            "verdict": verdict.status,
            "verification": scores,
            **({"geotiff": tifs} if tifs else {}),
            **({"sites": int(len(sites))} if sites is not None else {}),
            **({"learned_errors": learned_summary(a)} if "site_sd" in a.idata.posterior else {}),
            **(extra or {}),
        }
        _write_json(info, tmp / "run.json")
        if also is not None:
            also(tmp)
        files.check_target(out, "run", force=force)  # nothing appeared meanwhile
        files.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**info, "_assimilation": a, "_dataset": ds, "_verdict": verdict}


def learned_summary(a) -> dict:
    """Posterior mean, SD and 5-95% range of each learned error parameter of a run."""
    post = a.idata.posterior
    out = {}
    for name in ("site_sd", "repr_scale", "offset"):
        if name in post:
            x = post[name].values.ravel().astype(np.float64)
            q05, q95 = np.quantile(x, [0.05, 0.95])
            out[name] = {
                "mean": round(float(x.mean()), 4),
                "sd": round(float(x.std()), 4),
                "q05": round(float(q05), 4),
                "q95": round(float(q95), 4),
            }
    return out


def sites_table(a, sites: pd.DataFrame, *, units: str = "degC", seed: int = 0) -> xr.Dataset:
    """The predictive of an observation at each site (:meth:`Assimilation.at`) as a Dataset on
    dim ``site``: ``id``, ``lat``, ``lon``, ``elevation``; the anomaly (K) ``mean``, ``sd``,
    ``q05``, ``q50``, ``q95``; and, when the prior has a climatology and the run a time, the
    temperature ``temp_mean``, ``temp_sd``, ``temp_q05``, ... in ``units``."""
    from bayesda.geo.units import difference_from_kelvin, from_kelvin

    elevation = sites["elevation"].to_numpy() if "elevation" in sites else None
    ds = a.at(sites["lat"], sites["lon"], elevation, seed=seed)
    ds = ds.assign_coords(id=("site", sites["id"].astype(str).to_numpy()))
    if elevation is not None:
        ds = ds.assign_coords(elevation=("site", elevation.astype(np.float64)))
    if "tas_mean" in ds:
        for name in ("mean", "q05", "q50", "q95"):
            ds[f"temp_{name}"] = ("site", from_kelvin(ds[f"tas_{name}"].values, units))
            ds[f"temp_{name}"].attrs = {
                "units": units,
                "long_name": f"predictive {name} of an observed temperature",
            }
        ds["temp_sd"] = ("site", difference_from_kelvin(ds["sd"].values, units))
        ds["temp_sd"].attrs = {"units": units, "long_name": "predictive SD of an observation"}
        ds = ds.drop_vars([v for v in ds.data_vars if v.startswith("tas_")])
    ds.attrs = {"time": str(a.time), "lapse_rate": "undone where an elevation is given"}
    return ds


def write_sites(a, sites: pd.DataFrame, where: Path, *, units: str, seed: int) -> None:
    """``sites.csv`` and ``sites.nc`` of :func:`sites_table` in ``where``."""
    from bayesda.inference.fields import write_netcdf

    ds = sites_table(a, sites, units=units, seed=seed)
    write_netcdf(ds, where / "sites.nc")
    frame = ds.reset_coords().to_dataframe().reset_index(drop=True)
    first = [c for c in ("id", "lat", "lon", "elevation") if c in frame]
    frame[first + [c for c in frame if c not in first]].to_csv(
        where / "sites.csv", index=False, float_format="%.4f"
    )


def verification(ds, truth, obs) -> dict:
    """RMSE, bias, CRPS, spread and 50/90% coverage against the truth
    (:func:`bayesda.verify.metrics.verify`).

    Returns ``{"unobserved": {...}, "all": {...}}`` of floats (K, or fractions).
    """
    from bayesda.verify.metrics import verify

    v = verify(ds, truth, obs)
    return {
        str(region): {name: float(v[name].sel(region=region)) for name in v.data_vars}
        for region in v["region"].values
    }
