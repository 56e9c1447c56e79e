"""Time windows: which observations count for an analysis time.

An analysis at time ``t`` uses the observations valid in ``[t - dt, t + dt]``. The default
``dt`` is half the model's time step (the step of the fields it was trained on: 6 h for
NCEP, so +-3 h), so that consecutive analyses share no observation and miss none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["default_half_width", "require_one_time", "select_window"]


def default_half_width(prior) -> pd.Timedelta:
    """Half the model's time step, from the hours of day its climatology was fitted at.

    A climatology fitted at hours 0, 6, 12, 18 means a 6-hour step and a 3-hour half
    width. Without a climatology (synthetic priors) the default is 3 hours.
    """
    clim = getattr(prior, "climatology", None)
    hours = np.asarray(getattr(clim, "hours", []) if clim is not None else [])
    if hours.size == 0:
        return pd.Timedelta(hours=3)
    step_h = 24.0 / hours.size
    return pd.Timedelta(hours=step_h / 2.0)


def require_one_time(obs: pd.DataFrame, source="the observations") -> None:
    """Refuse a table of several times when no analysis time was given.

    Without a time, every row is taken as valid at one instant: a month of daily values
    would be assimilated as a single field.

    Raises:
      ValueError: the ``time`` column holds more than one distinct time (the message names
        how many, the first and the last, and ``--time``).
    """
    if "time" not in obs.columns or len(obs) == 0:
        return
    times = pd.to_datetime(obs["time"]).dropna().unique()
    if len(times) > 1:
        first, last = (str(np.datetime64(t, "s")) for t in (times.min(), times.max()))
        raise ValueError(
            f"{source}: the observations are at {len(times)} different times ({first} .. "
            f"{last}); give the analysis time with --time (reports within --window of it "
            "are used), or use `bayesda reanalyse` for every time"
        )


def select_window(obs: pd.DataFrame, time, half_width) -> tuple[pd.DataFrame, dict]:
    """Observations within ``[time - half_width, time + half_width]``.

    Args:
      obs: a table with a ``time`` column (a table without one is returned whole, and
        every row is taken to be valid at ``time``).
      time: the analysis time.
      half_width: a :class:`pandas.Timedelta`, or anything it accepts (``"3h"``).

    Returns:
      ``(selected, info)``: the rows in the window, one per station (the report nearest in
      time; keyed by ``station_id``, else by location), their valid time moved to
      ``obs_time`` and ``time`` set to the analysis time; and a JSON-able record
      ``{"time", "half_width_h", "n_in_window", "n_outside", "n_repeats_dropped"}``.

    Raises:
      ValueError: no observation in the window (the message says the nearest one).
    """
    t = pd.Timestamp(time)
    dt = pd.Timedelta(half_width)
    info = {"time": str(np.datetime64(t, "s")), "half_width_h": dt.total_seconds() / 3600.0}
    if "time" not in obs.columns:
        return obs, {**info, "n_in_window": len(obs), "n_outside": 0}
    times = pd.to_datetime(obs["time"])
    inside = ((times - t).abs() <= dt).to_numpy()
    if not inside.any():
        k = int(np.argmin((times - t).abs().to_numpy()))
        raise ValueError(
            f"no observation within +-{dt} of {t}; the nearest is at "
            f"{times.iloc[k]} (row {k}); widen the window (--window)"
        )
    sel = obs[inside].copy()
    sel["obs_time"] = sel["time"]
    sel["_dist"] = (times[inside] - t).abs().to_numpy()
    keys = ["station_id"] if "station_id" in sel.columns else ["lat", "lon"]
    sel = sel.sort_values("_dist", kind="stable").drop_duplicates(keys, keep="first")
    n_repeat = int(inside.sum()) - len(sel)
    sel = sel.sort_index().drop(columns="_dist").reset_index(drop=True)
    sel["time"] = np.datetime64(t, "ns")
    sel.attrs = dict(obs.attrs)
    return sel, {
        **info,
        "n_in_window": len(sel),
        "n_outside": int((~inside).sum()),
        "n_repeats_dropped": n_repeat,
    }
