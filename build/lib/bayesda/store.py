"""A resumable zarr store of assimilated fields, one chunk per time.

Layout (dims ``time, lat, lon``; ``sample`` when posterior samples are kept):

* field summaries of the anomaly posterior, K: ``mean``, ``sd``, ``q05``, ``q50``, ``q95``,
  and the absolute-temperature mean ``tas_mean``;
* optional ``samples`` ``(time, sample, lat, lon)``: a few posterior draws;
* per-time diagnostics: ``n_obs``, ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``,
  ``divergences``, ``verdict`` (0 PASS, 1 WARN, 2 FAIL, -1 not yet run), ``wall_s``;
* ``done`` (bool): set only after every other variable of that time was written.

Safety. Every array is chunked one time per chunk, and zarr's local store writes each chunk
to a temporary file and renames it, so a chunk is either old or new, never torn. A time's
data are written first and its ``done`` flag last, so a process killed at any moment leaves
at worst a time whose flag is still false: the next run redoes it and overwrites the same
chunks. The store itself is created under a temporary name and renamed into place, so a
half-created store never looks complete. Two workers never write the same chunk, because
each time belongs to one task. Stray ``*.partial`` files from a killed write are removed on
resume.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from bayesda._optional import require
from bayesda.grid import Grid

__all__ = [
    "DIAG_VARS",
    "FIELD_VARS",
    "StoreMismatchError",
    "VERDICT_CODES",
    "open_or_create",
    "pending",
    "write_time",
]

FIELD_VARS: dict[str, str] = {
    "mean": "posterior mean temperature anomaly",
    "sd": "posterior standard deviation of temperature",
    "q05": "posterior 5% quantile of temperature anomaly",
    "q50": "posterior median temperature anomaly",
    "q95": "posterior 95% quantile of temperature anomaly",
    "tas_mean": "posterior mean near-surface air temperature",
}
DIAG_VARS: dict[str, tuple[type, object, str]] = {
    "n_obs": (np.int32, 0, "number of observations assimilated"),
    "max_rhat": (np.float32, np.nan, "largest split R-hat over latent and field"),
    "min_ess_bulk": (
        np.float32,
        np.nan,
        "smallest bulk effective sample size over latent and field",
    ),
    "min_ess_tail": (
        np.float32,
        np.nan,
        "smallest tail effective sample size over latent and field",
    ),
    "divergences": (np.int32, -1, "number of divergent transitions"),
    "verdict": (np.int8, -1, "diagnostic verdict: 0 PASS, 1 WARN, 2 FAIL, -1 not run"),
    "wall_s": (np.float32, np.nan, "wall time spent on this time step"),
}
VERDICT_CODES = {"PASS": 0, "WARN": 1, "FAIL": 2}


class StoreMismatchError(ValueError):
    """An existing store was created for other times, grid or settings."""


def _template(times: np.ndarray, grid: Grid, n_samples: int, signature: dict) -> xr.Dataset:
    da = require("dask.array", "a reanalysis store")
    nt = times.size
    ny, nx = grid.shape
    coords = {"time": ("time", times), **grid.coords()}
    data_vars = {}
    for name, long_name in FIELD_VARS.items():
        data_vars[name] = xr.DataArray(
            da.full((nt, ny, nx), np.nan, chunks=(1, ny, nx), dtype=np.float32),
            dims=("time", "lat", "lon"),
            attrs={"units": "K", "long_name": long_name},
        )
    if n_samples:
        data_vars["samples"] = xr.DataArray(
            da.full(
                (nt, n_samples, ny, nx), np.nan, chunks=(1, n_samples, ny, nx), dtype=np.float32
            ),
            dims=("time", "sample", "lat", "lon"),
            attrs={"units": "K", "long_name": "posterior samples of temperature anomaly"},
        )
    for name, (dtype, fill, long_name) in DIAG_VARS.items():
        # Small eager arrays: written at creation, so integer fill values survive
        # (zarr would read unwritten integer chunks back as 0).
        data_vars[name] = xr.DataArray(
            np.full((nt,), fill, dtype=dtype), dims=("time",), attrs={"long_name": long_name}
        )
    data_vars["done"] = xr.DataArray(
        np.zeros((nt,), dtype=bool),
        dims=("time",),
        attrs={"long_name": "true once every variable of this time was written"},
    )
    attrs = {
        "title": "bayesda reanalysis",
        "bayesda_signature": json.dumps(signature, sort_keys=True),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def open_or_create(
    path: str | Path,
    times: Sequence,
    grid: Grid,
    *,
    n_samples: int = 0,
    signature: dict | None = None,
) -> xr.Dataset:
    """Open the store at ``path``, creating it (atomically) if absent.

    Args:
      path: the ``.zarr`` directory.
      times: the times the store holds, in order.
      grid: the grid of the fields.
      n_samples: posterior samples kept per time (0: none).
      signature: JSON-able settings (model hash, sampler settings, ...) that must match
        when an existing store is resumed.

    Returns:
      The store opened lazily.

    Raises:
      StoreMismatchError: an existing store has other times, grid or signature.
    """
    require("zarr", "a reanalysis store")
    path = Path(path)
    times = np.asarray(times, dtype="datetime64[ns]")
    signature = signature or {}
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.creating")
        template = _template(times, grid, n_samples, signature)
        encoding = {name: {"chunks": (1,)} for name in [*DIAG_VARS, "done"]}
        template.to_zarr(tmp, mode="w", compute=False, consolidated=False, encoding=encoding)
        tmp.rename(path)
    for stray in path.rglob("*.partial"):
        stray.unlink(missing_ok=True)
    ds = xr.open_zarr(path, consolidated=False)
    if ds.sizes["time"] != times.size or not np.array_equal(ds["time"].values, times):
        raise StoreMismatchError(
            f"{path} holds {ds.sizes['time']} times "
            f"({ds['time'].values[0]} .. {ds['time'].values[-1]}), "
            f"not the {times.size} requested; use another --out or delete it"
        )
    if Grid.from_xarray(ds) != grid:
        raise StoreMismatchError(
            f"{path} was created on another grid {Grid.from_xarray(ds).shape}, not {grid.shape}"
        )
    stored = json.loads(ds.attrs.get("bayesda_signature", "{}"))
    if stored != json.loads(json.dumps(signature, sort_keys=True)):
        diff = sorted(k for k in set(stored) | set(signature) if stored.get(k) != signature.get(k))
        raise StoreMismatchError(
            f"{path} was created with other settings (differ: {diff}); use another --out"
        )
    return ds


def pending(path: str | Path) -> np.ndarray:
    """Indices of the times whose ``done`` flag is not yet set."""
    done = xr.open_zarr(path, consolidated=False)["done"].values
    return np.flatnonzero(~done)


def write_time(path: str | Path, index: int, result: xr.Dataset) -> None:
    """Write one time's results, then mark it done.

    Args:
      path: the store.
      index: position of the time in the store.
      result: a Dataset without the ``time`` dim holding any of the store's field variables
        ``(lat, lon)``, ``samples (sample, lat, lon)`` and scalar diagnostics.
    """
    keep = [v for v in result.data_vars if v != "done"]
    region = {"time": slice(index, index + 1)}
    body = result[keep].drop_vars(["lat", "lon", "time"], errors="ignore").expand_dims("time")
    body.to_zarr(path, region=region, consolidated=False)
    flag = xr.Dataset({"done": ("time", np.array([True]))})
    flag.to_zarr(path, region=region, consolidated=False)
