"""Before sampling: read real observations, keep the time window, QC them, check calibration.

The steps a run takes between a station file and the sampler, each a pure function of its
inputs with a JSON-able record for the run's outputs:

1. :func:`load_observations`: a station file in any of :data:`bayesda.obs.stations.FORMATS`
   to anomalies in K (stations outside the model grid are dropped and counted);
2. :func:`bayesda.obs.window.select_window`: the reports within +-dt of the analysis time;
2b. :func:`bayesda.obs.elevation.adjust`: station heights against the model's surface height
   (a lapse-rate adjustment and its error term; when the table has ``elevation`` and the
   model a surface height);
2c. :func:`bayesda.obs.capacity.superob` (optional): one observation per grid cell;
3. :func:`bayesda.preflight.offset.add_offset` (optional): the large-scale offset prior, which QC
   and the check then use (:func:`bayesda.preflight.offset.estimate_offset` is recorded after QC);
4. :func:`bayesda.preflight.qc.quality_control`: background check and gross-error weights;
5. :func:`bayesda.preflight.calibrate.calibrate`: withheld-observation check, optional rescaling.

:func:`preflight` runs 2-5.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import bayesda.obs.stations as _stations
from bayesda.obs.capacity import superob as _superob
from bayesda.obs.elevation import LapseRate
from bayesda.obs.elevation import adjust as _adjust_elevation
from bayesda.obs.elevation import describe as _describe_elevation
from bayesda.obs.window import default_half_width, select_window
from bayesda.preflight.calibrate import calibrate as _calibrate
from bayesda.preflight.learned import learned_check, learned_quality_control
from bayesda.preflight.offset import add_offset, estimate_offset
from bayesda.preflight.qc import QCSettings, quality_control
from bayesda.settings import ModelOptions

__all__ = ["OBS_SCALE_DOUBT", "Z2_MISFIT", "format_preflight", "load_observations", "preflight"]

Z2_MISFIT = 4.0
"""Mean z^2 of the withheld observations above which a run says the prior does not fit.

z^2 is 1 when the prior and the error model describe the data. Runs whose prior fits gave
0.9-1.5 (README: the ERA5 and station examples); a QG prior scored on fields from a later
period of its simulation, far outside what it learnt, gave a median of 7.8 at 50
observations (coverage 0.42), and 1.2-1.9 on the fields it fitted
(``analysis/qg_selfcheck/results/qg_selfcheck.md``)."""

OBS_SCALE_DOUBT = 4.0
"""``--calibrate auto`` observation-error factor above which the run doubts the fit.

On the QG prior the two-scale fit widened the observation errors x3.1-3.2 where the prior
fitted and x5.4-8.0 where it did not, though the observations were exact to their stated
error both times (``analysis/qg_selfcheck/results/qg_selfcheck.md``)."""


def load_observations(
    path,
    prior,
    *,
    fmt: str = "table",
    columns=None,
    stations=None,
    units: str | None = None,
    kind: str = "anomaly",
    time=None,
    element: str = "TAVG",
) -> tuple[pd.DataFrame, dict]:
    """Read observations and return anomalies in K on the prior's grid.

    Args:
      path: the file.
      prior: the prior (its climatology turns temperatures into anomalies).
      fmt: ``"table"`` (bayesda's own CSV/netCDF; ``units`` and ``kind`` apply) or a
        station format of :mod:`bayesda.obs.stations` (absolute temperatures).
      columns: the column mapping for ``fmt="csv"``.
      stations: a stations table (CSV path or DataFrame) for GHCN, ISD-lite and METAR; a
        GHCN ``ghcnd-stations.txt`` or an ISD ``isd-history.csv`` are recognised by name.
      units: units of the values (``"table"`` and ``"csv"``).
      kind: ``"anomaly"`` or ``"absolute"`` (``"table"`` only; station formats are absolute).
      time: the analysis time (METAR's year and month; rows without a time).
      element: GHCN element (TAVG, TMAX, TMIN).

    Returns:
      ``(table, record)``: anomalies in K, and the reader's counts.
    """
    from bayesda.obs.table import read_obs

    if fmt == "table":
        df = read_obs(
            path,
            units=units or "K",
            kind=kind,
            climatology=prior.climatology,
            time=time,
            grid=prior.grid,
        )
        return df, {"format": "table", "n": len(df)}
    if isinstance(stations, str) and stations.endswith("ghcnd-stations.txt"):
        stations = _stations.read_ghcn_stations(stations)
    elif isinstance(stations, str) and "isd-history" in stations:
        stations = _stations.read_isd_history(stations)
    kw = {"element": element} if fmt in ("ghcn-dly", "ghcn-csv") else {}
    raw = _stations.read_stations(
        path, fmt, columns=columns, stations=stations, units=units, time=time, **kw
    )
    counts = dict(raw.attrs.get("counts", {}))
    details = raw.attrs.get("details")  # what a reader dropped, by line and station
    inside = prior.grid.covers(raw["lat"].to_numpy(), raw["lon"].to_numpy()) if len(raw) else []
    counts["outside_grid"] = int(np.size(inside) - np.sum(inside))
    raw = raw[np.asarray(inside, bool)].reset_index(drop=True)
    if raw.empty:
        g = prior.grid
        if counts["outside_grid"]:
            raise ValueError(
                f"{path}: all {counts['outside_grid']} usable observations lie outside the "
                f"model grid (lat {g.lat[0]:g}..{g.lat[-1]:g}, lon {g.lon[0]:g}..{g.lon[-1]:g}); "
                "is it the right stations file, or the right model?"
            )
        raise ValueError(
            f"{path}: no usable observation (read {counts.get('read', 0)}, missing "
            f"{counts.get('missing', 0)}, flagged {counts.get('flagged', 0)}, no station "
            f"{counts.get('no_station', 0)})"
        )
    if prior.climatology is None:
        raise ValueError(
            "station formats hold temperatures; the model has no climatology to "
            "turn them into anomalies"
        )
    df = read_obs(
        raw,
        units="K",
        kind="absolute",
        climatology=prior.climatology,
        grid=prior.grid,
        duplicates="keep",
    )
    counts["kept"] = len(df)
    record = {"format": fmt, "path": str(path), "counts": counts}
    return df, {**record, "details": details} if details else record


def preflight(
    prior,
    obs: pd.DataFrame,
    *,
    time=None,
    window=None,
    qc: bool = True,
    calibrate: str = "off",
    offset: str = "none",
    offset_sd: float = 2.0,
    folds: int = 5,
    seed: int = 0,
    qc_settings: QCSettings | None = None,
    lapse: LapseRate | None = None,
    options: ModelOptions | None = None,
    superob: bool = False,
) -> tuple:
    """Time window, quality control and the calibration check, in that order.

    Args:
      prior: the prior.
      obs: anomalies in K.
      time: the analysis time (None: no window).
      window: half width (a :class:`pandas.Timedelta` or ``"3h"``); default half the
        model's time step (:func:`bayesda.obs.window.default_half_width`).
      qc: run :func:`bayesda.preflight.qc.quality_control`.
      calibrate: ``"off"`` (check only), ``"auto"`` (check, then rescale representation and
        observation error separately), ``"single"`` (one scale for both) or ``"none"``
        (skip).
      offset: the large-scale offset prior (:mod:`bayesda.preflight.offset`): ``"none"``,
        ``"uniform"`` or ``"smooth"``; part of the prior that QC and the check use.
      offset_sd: its prior SD per mode, K.
      folds, seed: the withheld-observation split.
      qc_settings: :class:`bayesda.preflight.qc.QCSettings`.
      lapse: the lapse-rate adjustment (:class:`bayesda.obs.elevation.LapseRate`; default
        6.5 +- 2 K/km); applied to observations with an ``elevation`` when the model has
        a surface height (``LapseRate(0, 0)`` turns it off).
      options: the model options the run will assimilate with (default learned errors):
        with learned errors QC and the check are those of :mod:`bayesda.preflight.learned`
        (the model learns its own offset and scales, so ``offset`` must be ``"none"`` and
        ``calibrate`` ``"off"`` or ``"none"``).
      superob: average the observations that share a grid cell
        (:func:`bayesda.obs.capacity.superob`), after the window and the adjustment.

    Returns:
      ``(prior, obs, record)`` to assimilate with, and ``{"window", "elevation", "qc",
      "offset", "calibration"}``.
    """
    options = options or ModelOptions()
    if options.errors == "learned":
        if offset != "none":
            raise ValueError(
                f"offset={offset!r} belongs to the stated-error model: the learned-error "
                "model samples a uniform offset itself (ModelOptions.offset_sd)"
            )
        if calibrate not in ("off", "none"):
            raise ValueError(
                f"calibrate={calibrate!r} belongs to the stated-error model: the "
                "learned-error model learns its error scales from the observations"
            )
    record = {}
    if time is not None and "time" in obs.columns:
        dt = pd.Timedelta(window) if window is not None else default_half_width(prior)
        obs, record["window"] = select_window(obs, time, dt)
    if "elevation" in obs.columns:
        obs, record["elevation"] = _adjust_elevation(prior, obs, lapse)
    if superob:  # after the window and the adjustment, which work per station
        obs = _superob(obs, prior.grid)
        record["superob"] = obs.attrs["superob"]
    if options.errors == "learned":
        predictions = None
        if qc:
            obs, record["qc"], predictions = learned_quality_control(prior, obs, options, seed=seed)
        if calibrate != "none":
            check = learned_check(
                prior, obs, options, folds=folds, seed=seed, predictions=predictions
            )
            record["calibration"] = {"mode": "off", "check": check}
        return prior, obs, record
    shipped, prior = prior, add_offset(prior, offset, offset_sd)
    if qc:
        obs, record["qc"] = quality_control(prior, obs, qc_settings)
    if offset != "none":
        record["offset"] = estimate_offset(shipped, obs, offset, offset_sd)
    if calibrate != "none":
        prior, obs, record["calibration"] = _calibrate(
            prior, obs, calibrate, folds=folds, seed=seed
        )
    return prior, obs, record


def format_preflight(record: dict) -> str:
    """The lines a run prints about its window, QC and calibration check."""
    lines = []
    w = record.get("window")
    if w:
        lines.append(
            f"window: +-{w['half_width_h']:g} h around {w['time']}: {w['n_in_window']} "
            f"stations ({w['n_outside']} reports outside, {w['n_repeats_dropped']} "
            "repeats dropped)"
        )
    if record.get("elevation"):
        lines.extend(_describe_elevation(record["elevation"]))
    so = record.get("superob")
    if so:
        lines.append(
            f"superob: {so['n_in']} observations averaged into {so['n_out']} (one per grid "
            "cell, inverse-variance weights)"
        )
    q = record.get("qc")
    if q and q.get("model") == "learned":
        lines.append(
            f"QC: {q['n_obs']} obs, {q['n_buddy']} far from the others in their grid cell, "
            f"{q['n_gross']} flagged as gross errors against the predictive with the learned "
            f"site SD {q['site_sd']:.2f} K (representation error x{q['repr_scale']:.2f})"
        )
    elif q:
        lines.append(
            f"QC: {q['n_obs']} obs, {q['n_background']} rejected by the background "
            f"check, {q['n_gross']} flagged as gross errors"
        )
        for f in q["flagged"][:10]:
            lines.append(
                f"  {f.get('station_id', '?')} ({f['lat']:.2f}, {f['lon']:.2f}): "
                f"value {f['value']:+.2f} K, departure {f['departure']:+.2f} +- "
                f"{f['departure_sd']:.2f} K, P(wrong) {f['p_gross']:.3f} [{f['qc']}]"
            )
    o = record.get("offset")
    if o:
        names = ["uniform", "south-north gradient", "west-east gradient"]
        parts = [
            f"{name} {m:+.2f} +- {sd:.2f} K"
            for name, m, sd in zip(names, o["mean"], o["post_sd"], strict=False)
        ]
        lines.append(f"offset ({o['kind']}, prior SD {o['sd']:g} K): " + ", ".join(parts))
    c = record.get("calibration")
    if c and not c["check"]["folds"]:
        lines.append(f"calibration check: skipped ({c['check']['n']} obs are too few to withhold)")
        c = None
    if c:
        k = c["check"]
        lines.append(
            f"calibration check ({k['folds']}-fold withheld obs, n={k['n']}): 90% "
            f"coverage {k['coverage_90']:.2f}, CRPS {k['crps']:.3f} K, "
            f"mean z^2 {k['z2']:.2f}"
        )
        if c.get("insufficient") and not c.get("refused"):
            lines.append(
                f"  too little information for the check to mean much: {c['insufficient']}"
            )
        if c.get("refused"):
            lines.append(
                f"calibrate {c['mode']}: not fitted, the model's error scales are kept: "
                f"{c['refused']}"
            )
        elif "fit" in c:
            f, a = c["fit"], c["check_calibrated"]
            lines.append(
                f"calibrate {c['mode']}: representation error x{f['scale']:.2f} (90% "
                f"{f['scale_q05']:.2f}-{f['scale_q95']:.2f}), observation error "
                f"x{f['scale_obs']:.2f} (90% {f['scale_obs_q05']:.2f}-"
                f"{f['scale_obs_q95']:.2f}); withheld coverage {a['coverage_90']:.2f}, "
                f"CRPS {a['crps']:.3f} K"
            )
            if f["scale_obs"] > OBS_SCALE_DOUBT:
                lines.append(
                    f"  the fit widens the observation errors x{f['scale_obs']:.1f}: if "
                    "their stated errors are right, it is the prior that does not fit these "
                    "fields, and the wider errors only hide it"
                )
        elif not c.get("insufficient") and (k["coverage_90"] < 0.8 or k["coverage_90"] > 0.97):
            lines.append(
                "  the withheld observations are outside their intervals more (or "
                "less) often than stated: consider --calibrate auto"
            )
        if k["z2"] > Z2_MISFIT:
            lines.append(
                f"  mean z^2 {k['z2']:.1f}: the withheld observations miss the predictions by "
                f"{k['z2'] ** 0.5:.1f} predicted SDs on average; the prior does not describe "
                "these fields (another climate, region or source than it was trained on?), "
                "and its intervals here are too narrow"
            )
    return "\n".join(lines)
