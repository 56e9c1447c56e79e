"""How many observations fit: a memory estimate, a guard before the work, and superobbing.

The likelihood integrates the representation error out, so each analysis forms and
factors the ``n x n`` observation covariance ``S = diag(sigma^2) + H C H^T`` once
(:func:`bayesda.inference.assimilate.prepare_obs`, float64 on the host) and keeps its padded
Cholesky
factor (float32) for the sampler: memory grows as ``n^2``. :func:`estimate_bytes` gives the
peak of that step (measured: 2,000 observations ran; 20,000 were killed by the
out-of-memory killer at 8 GiB), and :func:`check_obs_size` refuses, with the estimate and
the remedy, a table that would not fit in the memory available, before any work starts.

The remedy is :func:`superob` (``--superob``; off by default, so that no observation is
changed unless asked): observations that share a grid cell (nearest node) and a time are
averaged into one "superobservation" with inverse-variance weights,

    value = sum(v_i / s_i^2) / sum(1 / s_i^2),    sigma = (sum(1 / s_i^2))^(-1/2),

at the weighted mean position. The combined sigma is exact for independent measurement
errors; the representation error, shared by observations in one cell, stays in the model's
``H C H^T`` at the superobservation's position, so it is not averaged away. The result has
at most one observation per grid cell and time.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

__all__ = [
    "BYTES_PER_OBS2",
    "ObservationSizeError",
    "available_memory",
    "check_obs_size",
    "estimate_bytes",
    "superob",
]

BYTES_PER_OBS2 = 48
"""Peak host bytes per ``n^2`` in :func:`bayesda.inference.assimilate.prepare_obs` (six float64 ``n
x n``
arrays alive at once: ``A A^T``, the diagonal part, their sum, ``diag(sigma^2)``, ``S`` and
its Cholesky factor)."""
MEMORY_FRACTION = 0.8
"""Share of the available memory a table may plan to use."""


class ObservationSizeError(ValueError):
    """Too many observations for the memory available."""


def estimate_bytes(n: int, padded: int | None = None) -> int:
    """Peak memory (bytes) of preparing ``n`` observations, padded to ``padded``.

    ``48 n^2`` on the host while ``S`` is formed and factored, plus three float32 copies
    of the padded factor ``[padded, padded]`` (host, device, and one in flight).
    """
    m = int(padded or n)
    return BYTES_PER_OBS2 * int(n) ** 2 + 12 * m**2


def available_memory() -> int:
    """Bytes this process may still use: the smaller of MemAvailable and a cgroup limit."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 1 << 62
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            avail = min(avail, int(limit) - usage)
    return max(int(avail), 0)


def _gib(b: float) -> str:
    return f"{b / 2**30:.1f} GiB"


def check_obs_size(n: int, padded: int | None = None, *, n_cells: int | None = None) -> None:
    """Refuse ``n`` observations whose preparation would not fit in memory.

    Args:
      n: number of observations of one analysis time.
      padded: their padded number (:func:`bayesda.inference.model.pad_length`).
      n_cells: grid cells of the model (for the superobbing hint).

    Raises:
      ObservationSizeError: the estimate exceeds :data:`MEMORY_FRACTION` of
        :func:`available_memory`; the message gives both and the remedies.
    """
    need = estimate_bytes(n, padded)
    have = available_memory()
    if need <= MEMORY_FRACTION * have:
        return
    fit = int(np.sqrt(MEMORY_FRACTION * have / (BYTES_PER_OBS2 + 12 * 4)))
    cells = f" (at most {n_cells} after superobbing on this grid)" if n_cells else ""
    raise ObservationSizeError(
        f"{n} observations at one time need about {_gib(need)} of memory (the n x n "
        f"observation covariance), but only {_gib(have)} is available; about {fit} would "
        f"fit. Pass --superob to average observations sharing a grid cell{cells}, or thin "
        "the table"
    )


CARRIED = ("height_adjustment", "height_adjustment_sd")
"""Columns a superobservation keeps as their weighted means (the lapse-rate adjustment of
:mod:`bayesda.obs.elevation`, so that quality control still sees its size)."""


def superob(obs: pd.DataFrame, grid) -> pd.DataFrame:
    """Average observations that share a grid cell (nearest node) and time.

    Args:
      obs: a validated observation table (anomalies, K); without ``sigma`` all weights are 1
        and the combined sigma is not recorded.
      grid: the model's :class:`bayesda.geo.grid.Grid`.

    Returns:
      A validated table with one row per occupied cell (and time): inverse-variance
      weighted value and position, combined ``sigma``, ``station_id`` ``"SO<cell>"``, and
      the weighted means of the :data:`CARRIED` columns present.
      ``attrs["superob"]`` records the numbers before and after.
    """
    from bayesda.geo.grid import wrap_lon
    from bayesda.obs.operator import nearest_index
    from bayesda.obs.table import validate_obs

    if len(obs) == 0:
        return obs
    lat = obs["lat"].to_numpy(np.float64)
    lon = obs["lon"].to_numpy(np.float64)
    cell = nearest_index(grid, lat, lon)
    node_lon = grid.lon[cell % grid.shape[1]]
    # position relative to the node, so that averaging never straddles the date line
    dlon = wrap_lon(lon - node_lon)
    has_sigma = "sigma" in obs
    w = 1.0 / np.square(obs["sigma"].to_numpy(np.float64)) if has_sigma else np.ones(len(obs))
    frame = pd.DataFrame(
        {
            "_cell": cell,
            "_w": w,
            "_wv": w * obs["value"].to_numpy(np.float64),
            "_wlat": w * lat,
            "_wdlon": w * dlon,
            "_node_lon": node_lon,
        }
    )
    carried = [c for c in CARRIED if c in obs]
    for c in carried:
        frame[f"_w_{c}"] = w * np.nan_to_num(obs[c].to_numpy(np.float64))
    keys = ["_cell"]
    if "time" in obs:
        frame["time"] = obs["time"].to_numpy()
        keys.append("time")
    g = frame.groupby(keys, sort=True, as_index=False).agg(
        _w=("_w", "sum"),
        _wv=("_wv", "sum"),
        _wlat=("_wlat", "sum"),
        _wdlon=("_wdlon", "sum"),
        _node_lon=("_node_lon", "first"),
        **{f"_w_{c}": (f"_w_{c}", "sum") for c in carried},
    )
    out = pd.DataFrame({"station_id": [f"SO{c}" for c in g["_cell"]]})
    if "time" in g:
        out["time"] = g["time"].to_numpy()
    out["lat"] = g["_wlat"] / g["_w"]
    out["lon"] = wrap_lon(g["_node_lon"] + g["_wdlon"] / g["_w"])
    out["value"] = g["_wv"] / g["_w"]
    if has_sigma:
        out["sigma"] = 1.0 / np.sqrt(g["_w"])
    out = validate_obs(out, grid=grid, duplicates="keep")
    for c in carried:
        out[c] = (g[f"_w_{c}"] / g["_w"]).to_numpy()
    out.attrs = {**obs.attrs, "superob": {"n_in": int(len(obs)), "n_out": int(len(out))}}
    return out
