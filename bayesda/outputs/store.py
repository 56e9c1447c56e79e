"""A resumable zarr store of assimilated fields, one chunk per time.

Layout (dims ``time, lat, lon``; ``sample`` when posterior samples are kept):

* field summaries of the anomaly posterior, K: ``mean``, ``sd``, ``q05``, ``q50``, ``q95``,
  and the absolute-temperature mean ``tas_mean``;
* optional ``samples`` ``(time, sample, lat, lon)``: a few posterior draws;
* per-time diagnostics: ``n_obs``, ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``,
  ``divergences``, ``verdict`` (0 PASS, 1 WARN, 2 FAIL, -1 not yet run), ``wall_s``;
* ``checksum`` (int64): a BLAKE2b digest of every variable of that time as read back
  after writing, set just before ``done``;
* ``done`` (bool): set only after every other variable of that time was written.

Safety. Every array is chunked one time per chunk, and zarr's local store writes each chunk
to a temporary file and renames it, so a chunk is either old or new, never torn. A time's
data are written first and its ``done`` flag last, so a process killed at any moment leaves
at worst a time whose flag is still false: the next run redoes it and overwrites the same
chunks. The store itself is created under a temporary name and renamed into place, so a
half-created store never looks complete. Two workers never write the same chunk, because
each time belongs to one task, and two processes never write one store: the driver holds
the store's lock (:func:`bayesda.runtime.files.lock`) from start to end. Stray ``*.partial``
files from a killed write are removed on resume, only inside a bayesda store and only
under that lock. On resume every finished time is read back and compared with its
checksum (:func:`verify`): a corrupted or deleted chunk makes that time pending again.
An existing directory that is not a bayesda store is never touched.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from bayesda.geo.grid import Grid
from bayesda.runtime.optional import require

__all__ = [
    "DIAG_VARS",
    "FIELD_VARS",
    "StoreMismatchError",
    "VERDICT_CODES",
    "open_or_create",
    "pending",
    "write_time",
    "write_times",
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


CHECKSUM = "checksum"


class StoreMismatchError(ValueError):
    """An existing store was created for other times, grid or settings."""


class StoreCorruptError(ValueError):
    """A store's metadata or ``done`` flags cannot be read."""


def _corrupt(path, what: str, err: BaseException) -> StoreCorruptError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return StoreCorruptError(
        f"reanalysis store {path} is damaged: {what} cannot be read ({type(err).__name__}: "
        f"{first}); move it aside and rerun to start afresh, or use another --out"
    )


def _open(path) -> xr.Dataset:
    try:
        return xr.open_zarr(path, consolidated=False)
    except Exception as err:  # zarr/JSON/decompression errors come in many types
        raise _corrupt(path, "its zarr.json metadata", err) from err


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
    data_vars[CHECKSUM] = xr.DataArray(
        np.zeros((nt,), dtype=np.int64),
        dims=("time",),
        attrs={"long_name": "BLAKE2b digest of this time's variables as written (see verify)"},
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

    The caller holds the store's :func:`bayesda.runtime.files.lock`.

    Returns:
      The store opened lazily.

    Raises:
      StoreMismatchError: an existing store has other times, grid or signature.
      StoreCorruptError: an existing store's metadata cannot be read.
      bayesda.runtime.files.OutputError: ``path`` exists and is not a bayesda store (it is
        left untouched), or another process created it meanwhile.
    """
    import bayesda.runtime.files as files

    require("zarr", "a reanalysis store")
    path = Path(path)
    times = np.asarray(times, dtype="datetime64[ns]")
    signature = signature or {}
    if files.check_target(path, "store", resume=True) == "new":
        files.clean_temps(path)
        tmp = files.temp_path(path)
        try:
            template = _template(times, grid, n_samples, signature)
            encoding = {name: {"chunks": (1,)} for name in [*DIAG_VARS, CHECKSUM, "done"]}
            template.to_zarr(tmp, mode="w", compute=False, consolidated=False, encoding=encoding)
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
            try:
                tmp.rename(path)
            except OSError as err:
                raise files.OutputError(
                    f"{path} was created by another process while this one was creating it; "
                    "rerun to resume it, or use another --out"
                ) from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        for stray in path.rglob("*.partial"):  # ours, under our lock: a killed write's
            stray.unlink(missing_ok=True)
    ds = _open(path)
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


def _done(path) -> np.ndarray:
    try:
        return np.asarray(_open(path)["done"].values, bool)
    except StoreCorruptError:
        raise
    except Exception as err:
        raise _corrupt(path, "the 'done' flags", err) from err


def pending(path: str | Path) -> np.ndarray:
    """Indices of the times whose ``done`` flag is not yet set.

    Raises:
      StoreCorruptError: the metadata or the ``done`` flags cannot be read.
    """
    return np.flatnonzero(~_done(path))


def _checked_vars(ds: xr.Dataset) -> list[str]:
    return sorted(
        str(v) for v in ds.data_vars if "time" in ds[v].dims and v not in (CHECKSUM, "done")
    )


def _digest(arrays: dict[str, np.ndarray]) -> int:
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return int.from_bytes(h.digest(), "little", signed=True)


def _time_digest(ds: xr.Dataset, index: int, names: list[str]) -> int:
    return _digest({v: ds[v].isel(time=index).values for v in names})


def verify(path: str | Path, indices=None) -> dict[int, str]:
    """Read back finished times and compare each with its checksum.

    Args:
      path: the store.
      indices: the times to check (default: every time whose ``done`` flag is set).

    Returns:
      ``{index: reason}`` for each damaged time (a chunk that cannot be read, or data that
      differ from what was written, e.g. a deleted chunk read back as fill values). Stores
      written before checksums existed have nothing to compare with: returns ``{}``.

    Raises:
      StoreCorruptError: the metadata or the ``done`` flags cannot be read.
    """
    done = _done(path)
    ds = _open(path)
    if CHECKSUM not in ds:
        return {}
    idx = np.flatnonzero(done) if indices is None else np.asarray(indices, int)
    try:
        sums = np.asarray(ds[CHECKSUM].values, np.int64)
    except Exception as err:
        raise _corrupt(path, "the checksums", err) from err
    names = _checked_vars(ds)
    whole: dict[str, np.ndarray | None] = {}
    for v in names:  # one read per variable; per time only where that fails
        try:
            whole[v] = ds[v].values
        except Exception:
            whole[v] = None
    bad: dict[int, str] = {}
    for i in idx:
        arrays = {}
        for v in names:
            full = whole[v]
            if full is not None:
                arrays[v] = full[i]
                continue
            try:
                arrays[v] = ds[v].isel(time=int(i)).values
            except Exception as err:
                bad[int(i)] = f"variable {v!r} cannot be read ({type(err).__name__})"
                break
        if int(i) not in bad and _digest(arrays) != int(sums[i]):
            bad[int(i)] = "data differ from the checksum written with them"
    return bad


def mark_pending(path: str | Path, indices) -> None:
    """Clear the ``done`` flag of these times, so that the next run redoes them."""
    for i in np.asarray(indices, int):
        flag = xr.Dataset({"done": ("time", np.array([False]))})
        flag.to_zarr(path, region={"time": slice(int(i), int(i) + 1)}, consolidated=False)


def write_time(path: str | Path, index: int, result: xr.Dataset) -> None:
    """Write one time's results, then mark it done.

    Args:
      path: the store.
      index: position of the time in the store.
      result: a Dataset without the ``time`` dim holding any of the store's field variables
        ``(lat, lon)``, ``samples (sample, lat, lon)`` and scalar diagnostics.
    """
    write_times(path, [index], [result])


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of the consecutive runs in ``indices`` (positions into it)."""
    cuts = np.flatnonzero(np.diff(indices) != 1) + 1
    bounds = [0, *cuts.tolist(), indices.size]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def write_times(path: str | Path, indices: Sequence[int], results: Sequence[xr.Dataset]) -> None:
    """Write several times' results, then mark them done; one region write per run of
    consecutive indices (what a batch of times usually is) instead of one per time.

    The order of the safety argument in the module docstring holds per run: data, then the
    checksums read back from disk, then the ``done`` flags.

    Args:
      path: the store.
      indices: positions of the times in the store (ascending).
      results: one Dataset per index, as for :func:`write_time`.
    """
    indices = np.asarray(indices, int)
    if indices.size != len(results):
        raise ValueError(f"{indices.size} indices for {len(results)} results")
    if indices.size == 0:
        return
    if np.any(np.diff(indices) <= 0):
        raise ValueError(f"indices must be ascending and distinct, got {indices.tolist()}")
    for a, b in _runs(indices):
        lo, hi = int(indices[a]), int(indices[b - 1]) + 1
        region = {"time": slice(lo, hi)}
        parts = [
            r[[v for v in r.data_vars if v != "done"]]
            .drop_vars(["lat", "lon", "time"], errors="ignore")
            .expand_dims("time")
            for r in results[a:b]
        ]
        body = parts[0] if len(parts) == 1 else xr.concat(parts, dim="time")
        body.to_zarr(path, region=region, consolidated=False)
        back = xr.open_zarr(path, consolidated=False)
        if CHECKSUM in back:  # read back what landed on disk, and remember its digest
            names = _checked_vars(back)
            landed = {v: back[v].isel(time=region["time"]).values for v in names}
            digests = [_digest({v: landed[v][k] for v in names}) for k in range(hi - lo)]
            xr.Dataset({CHECKSUM: ("time", np.array(digests, np.int64))}).to_zarr(
                path, region=region, consolidated=False
            )
        flag = xr.Dataset({"done": ("time", np.ones(hi - lo, bool))})
        flag.to_zarr(path, region=region, consolidated=False)
