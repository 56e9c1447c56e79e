"""Shared loading for the perfect-model (OSSE) scripts: the simulated store, split, anomalies.

The Held-Suarez climate has no seasons and no diurnal cycle, so the climatology is the
training-period time mean at each pixel and an anomaly is ``field - that mean``.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import NamedTuple

import numpy as np
import xarray as xr

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "analysis" / "results"
FIGURES = ROOT / "analysis" / "figures"


def default_store() -> pathlib.Path:
    from bayesda.simulate import HeldSuarezConfig, default_store_path

    return default_store_path(HeldSuarezConfig())


class OSSEData(NamedTuple):
    """Train/test anomalies of one variable (``[n, lat, lon]`` float32) and their context."""

    train: np.ndarray
    test: np.ndarray
    fit: np.ndarray  # train minus the validation blocks
    val: np.ndarray
    mean: np.ndarray  # [lat, lon] training time mean
    lat: np.ndarray
    lon: np.ndarray
    times_train: np.ndarray
    times_test: np.ndarray
    attrs: dict


def load(
    var: str = "tas", store: str | os.PathLike | None = None, max_snapshots: int | None = None
) -> OSSEData:
    """Open the store, split it in 7-day blocks (every 4th held out) and take anomalies."""
    from bayesda.split import block_split, validation_split

    path = pathlib.Path(store) if store else default_store()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `bayesda data simulate` first")
    ds = xr.open_zarr(path, consolidated=False)
    if max_snapshots:
        ds = ds.isel(time=slice(0, int(max_snapshots)))
    field = np.asarray(ds[var].values, np.float32)
    times = ds["time"].values
    train_mask, test_mask = block_split(times)
    mean = field[train_mask].mean(axis=0)
    anom = field - mean
    train, test = anom[train_mask], anom[test_mask]
    fit_mask, val_mask = validation_split(times[train_mask])
    return OSSEData(
        train,
        test,
        train[fit_mask],
        train[val_mask],
        mean,
        ds["lat"].values,
        ds["lon"].values,
        times[train_mask],
        times[test_mask],
        dict(ds.attrs),
    )


def cos_weights(lat: np.ndarray, nlon: int) -> np.ndarray:
    """``[lat, lon]`` cos-latitude weights normalised to mean 1."""
    w = np.cos(np.radians(lat))
    w = w / w.mean()
    return np.repeat(w[:, None], nlon, axis=1)


def store_summary(attrs: dict, n: int) -> dict:
    cfg = json.loads(attrs.get("config", "{}"))
    return {"config": cfg, "snapshots": n, "wall_seconds": attrs.get("wall_seconds")}
