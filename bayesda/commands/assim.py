"""``bayesda assimilate | diagnose | plot | demo``: one analysis, its verdict and its maps.

Examples::

    bayesda assimilate --model models/ncep-air --obs obs.csv --time 2014-01-07T12 --out runs/a
    bayesda diagnose runs/a          # exit code 0: PASS or WARN, 3: FAIL, 1: error
    bayesda plot runs/a --truth truth.nc
    bayesda demo --out runs/demo

A run directory holds::

    RUN/posterior.nc       field samples and summaries (bayesda.posterior.posterior_dataset)
    RUN/inference.nc       ArviZ InferenceData (z, sample_stats, y: observed, predictive, loglik)
    RUN/obs.csv            the observations used (anomalies, K)
    RUN/diagnostics.json   the verdict and its numbers (bayesda.diagnostics.Verdict)
    RUN/maps.png           uncertainty maps (bayesda.plots.plot_posterior)
    RUN/trace.png          trace plots of the first latent dimensions (NUTS only)
    RUN/trace_rank.png     rank plots of the same (NUTS only)
    RUN/run.json           settings, timings, gradient evaluations, provenance
    RUN/climatology_sd.nc  climatological anomaly SD at the analysis time (for the "fog")
    RUN/truth.nc           the true anomaly, when known (the demo)
    RUN/verification.json  RMSE, CRPS, coverage against the truth, when known

Everything is written to a hidden temporary directory beside ``RUN`` and renamed into place
at the end, so a failed run leaves no partial ``RUN``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

FAIL_EXIT_CODE = 3


def register(subparsers) -> None:
    """Add ``assimilate``, ``diagnose``, ``plot`` and ``demo``."""
    p = subparsers.add_parser("assimilate", help="sample the posterior field given observations")
    p.add_argument("--model", required=True, help="model directory (bayesda.checkpoint)")
    p.add_argument(
        "--obs", required=True, help="observations: CSV or netCDF (lat, lon, value, sigma)"
    )
    p.add_argument("--time", default=None, help="analysis time, e.g. 2014-01-07T12")
    p.add_argument(
        "--absolute", action="store_true", help="obs values are temperatures, not anomalies"
    )
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    _add_sampler_args(p)
    p.set_defaults(func=cmd_assimilate)

    d = subparsers.add_parser("diagnose", help="convergence verdict of a run (exit 3 on FAIL)")
    d.add_argument("run", help="run directory")
    d.set_defaults(func=cmd_diagnose)

    m = subparsers.add_parser("plot", help="(re)draw a run's uncertainty maps")
    m.add_argument("run", help="run directory")
    m.add_argument("--truth", default=None, help="netCDF with the true anomaly (lat, lon), K")
    m.add_argument("--out", default=None, help="PNG path (default RUN/maps.png)")
    m.add_argument("--fog-threshold", type=float, default=0.5)
    m.set_defaults(func=cmd_plot)

    e = subparsers.add_parser("demo", help="held-out NCEP day: pseudo-obs, assimilate, verify")
    e.add_argument("--out", default="runs/demo", help="run directory (replaced)")
    e.add_argument("--model", default="models/ncep-air")
    e.add_argument("--data-dir", default=None, help="default: $BAYESDA_DATA_DIR")
    e.add_argument("--n-obs", type=int, default=None)
    e.add_argument("--time", default=None, help="held-out time (default: see bayesda.demo)")
    _add_sampler_args(e, demo=True)
    e.set_defaults(func=cmd_demo)


def _add_sampler_args(p, demo: bool = False) -> None:
    from bayesda import demo as _demo

    s = _demo.DEMO_SAMPLER if demo else {}
    p.add_argument("--chains", type=int, default=s.get("num_chains", 4))
    p.add_argument("--warmup", type=int, default=s.get("num_warmup", 500))
    p.add_argument("--draws", type=int, default=s.get("num_samples", 500))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=("nuts", "laplace"), default="nuts")
    p.add_argument("--init", choices=("map", "prior", "median"), default="map")
    p.add_argument("--likelihood", choices=("normal", "studentt"), default="normal")
    p.add_argument("--infer-sigma", action="store_true", help="infer a common obs-error scale")
    p.add_argument("--no-progress", action="store_true")


def sampler_kwargs(args) -> dict:
    return dict(
        num_chains=args.chains,
        num_warmup=args.warmup,
        num_samples=args.draws,
        seed=args.seed,
        method=args.method,
        init=args.init,
        likelihood=args.likelihood,
        infer_sigma=args.infer_sigma,
        progress_bar=not args.no_progress,
    )


def load_prior(path):
    """Load a trained model directory (``bayesda.checkpoint.load_model``)."""
    try:
        from bayesda.checkpoint import load_model
    except ImportError as err:  # the checkpoint module is developed separately
        raise FileNotFoundError(
            f"cannot load {path}: bayesda.checkpoint is not available ({err})"
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
    prior, obs, out, *, time=None, truth=None, force=False, extra=None, **sampler
) -> dict:
    """Assimilate and write a complete run directory (atomically).

    Args:
      prior: the :class:`bayesda.prior.GenerativePrior`.
      obs: observation table (anomalies, K).
      out: the run directory; must not exist unless ``force``.
      time: analysis time.
      truth: optional true anomaly ``(lat, lon)`` DataArray (K), saved and mapped.
      force: replace an existing ``out``.
      extra: more entries for ``run.json``.
      **sampler: :func:`bayesda.infer.assimilate` options.

    Returns:
      The ``run.json`` content, plus the in-memory ``assimilation``, ``dataset`` and
      ``verdict`` under keys starting with ``_``.
    """
    import time as _time

    from bayesda import __version__
    from bayesda.diagnostics import diagnose, plot_sampler_diagnostics
    from bayesda.infer import assimilate
    from bayesda.plots import plot_posterior
    from bayesda.posterior import posterior_dataset, write_netcdf

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ValueError(f"run directory {out} exists and is not empty (use --force to replace it)")
    if truth is not None and tuple(np.shape(truth)) != prior.grid.shape:
        raise ValueError(
            f"truth shape {np.shape(truth)} does not match the model grid {prior.grid.shape}"
        )
    t0 = _time.perf_counter()
    a = assimilate(prior, obs, time=time, **sampler)
    ds = posterior_dataset(a, prior, time=time)
    verdict = diagnose(a.idata, field_samples=ds[["anomaly"]])
    t_diag = _time.perf_counter() - t0 - a.timings["wall"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; the run is an ordinary directory
    try:
        write_netcdf(ds, tmp / "posterior.nc")
        a.idata.to_netcdf(str(tmp / "inference.nc"))
        a.obs.frame.to_csv(tmp / "obs.csv", index=False, float_format="%.6f")
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
            **(extra or {}),
        }
        _write_json(info, tmp / "run.json")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**info, "_assimilation": a, "_dataset": ds, "_verdict": verdict}


def verification(ds, truth, obs) -> dict:
    """RMSE, bias, CRPS, spread and 50/90% coverage against the truth (bayesda.metrics.verify).

    Returns ``{"unobserved": {...}, "all": {...}}`` of floats (K, or fractions).
    """
    from bayesda.metrics import verify

    v = verify(ds, truth, obs)
    return {
        str(region): {name: float(v[name].sel(region=region)) for name in v.data_vars}
        for region in v["region"].values
    }


def _read_obs(args, prior):
    from bayesda.obs import read_obs

    kind = "absolute" if args.absolute else "anomaly"
    return read_obs(
        args.obs, kind=kind, climatology=prior.climatology, time=args.time, grid=prior.grid
    )


def cmd_assimilate(args) -> int:
    prior = load_prior(args.model)
    obs = _read_obs(args, prior)
    info = assimilate_to_run(
        prior, obs, args.out, time=args.time, force=args.force, **sampler_kwargs(args)
    )
    _print_summary(info, args.out)
    return 0


def _print_summary(info: dict, out) -> None:
    t = info["timings_s"]
    print(
        f"assimilated {info['n_obs']} obs with {info['model']} ({info['settings']['method']}): "
        f"wall {t['wall']:.1f} s (MAP {t['map']:.1f}, warmup+compile {t['warmup']:.1f}, "
        f"sampling {t['sampling']:.1f}, fields {t['fields']:.1f})"
    )
    print(f"verdict: {info['verdict']} (details: bayesda diagnose {out})")
    print(f"wrote {out}/: posterior.nc inference.nc obs.csv diagnostics.json maps.png run.json")


def _require_run(run) -> Path:
    run = Path(run)
    missing = [f for f in ("posterior.nc", "inference.nc", "run.json") if not (run / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{run} is not a complete run directory (missing {missing})")
    return run


def cmd_diagnose(args) -> int:
    import xarray as xr

    from bayesda.diagnostics import az, diagnose, format_verdict  # az: imported quietly there

    run = _require_run(args.run)
    idata = az.from_netcdf(str(run / "inference.nc"))
    with xr.open_dataset(run / "posterior.nc") as ds:
        verdict = diagnose(idata, field_samples=ds[["anomaly"]].load())
    names = ["z"] + (["sigma_scale"] if "sigma_scale" in idata.posterior else [])
    summary = az.summary(idata, var_names=names, kind="diagnostics", round_to=3)
    with np.errstate(all="ignore"):
        print(summary.to_string())
    print(format_verdict(verdict))
    return FAIL_EXIT_CODE if verdict.status == "FAIL" else 0


def cmd_plot(args) -> int:
    import pandas as pd
    import xarray as xr

    from bayesda.plots import plot_posterior

    run = _require_run(args.run)
    truth_path = (
        Path(args.truth)
        if args.truth
        else (run / "truth.nc" if (run / "truth.nc").is_file() else None)
    )
    truth = None
    if truth_path is not None:
        with xr.open_dataset(truth_path) as t:
            truth = (t["anomaly"] if "anomaly" in t else t[list(t.data_vars)[0]]).load()
    with xr.open_dataset(run / "posterior.nc") as ds:
        ds = ds.drop_vars(["anomaly", "tas"], errors="ignore").load()
    obs = pd.read_csv(run / "obs.csv")
    clim_sd = None
    clim_path = run / "climatology_sd.nc"
    if clim_path.is_file():
        with xr.open_dataset(clim_path) as c:
            clim_sd = c["sd"].load()
    out = plot_posterior(
        ds,
        obs,
        truth=truth,
        climatology_sd=clim_sd,
        fog_threshold=args.fog_threshold,
        out=args.out or run / "maps.png",
    )
    print(f"wrote {out}")
    return 0


def cmd_demo(args) -> int:
    from bayesda.demo import run_demo

    run_demo(
        args.out,
        model=args.model,
        data_dir=args.data_dir,
        n_obs=args.n_obs,
        time=args.time,
        **sampler_kwargs(args),
    )
    return 0
