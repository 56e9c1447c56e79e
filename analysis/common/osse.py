"""Shared loading for the perfect-model (OSSE) studies: the simulated store, split, anomalies.

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


def default_store() -> pathlib.Path:
    """The Held-Suarez store of the default preset (``bayesda data simulate``)."""
    from bayesda.sim.heldsuarez import HeldSuarezConfig, default_store_path

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
    from bayesda.data.split import block_split, validation_split

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
    """The store's simulation config, the snapshots used and its wall time, for result files."""
    cfg = json.loads(attrs.get("config", "{}"))
    return {"config": cfg, "snapshots": n, "wall_seconds": attrs.get("wall_seconds")}


# --- the quasi-geostrophic (QG) simulations of bayesda.sim.qg ----------------------------------

QG_UNITS = {
    # variable: (scale the stored SI value is divided by, units after scaling)
    "q": (1e-6, "1e-6 s-1"),
    "q_upper": (1e-6, "1e-6 s-1"),
    "psi": (1e3, "1e3 m2 s-1"),
    "u": (1e-2, "cm s-1"),
    "v": (1e-2, "cm s-1"),
}
QG_LAT_HALF_WIDTH = 10.0
"""The QG domain's ``y`` is labelled as latitudes in [-10, 10] degrees (see open_field)."""


def default_qg_store() -> pathlib.Path:
    """The QG store of the default configuration (:mod:`bayesda.sim.qg`)."""
    from bayesda.sim.qg import QGConfig, default_store_path

    return default_store_path(QGConfig())


def open_field(
    var: str, store: str | os.PathLike | None = None, max_snapshots: int | None = None
) -> xr.DataArray:
    """One variable of an OSSE store as ``(time, lat, lon)``, loaded.

    Held-Suarez stores (:mod:`bayesda.sim.heldsuarez`) are on the sphere already. QG stores
    (:mod:`bayesda.sim.qg`, doubly periodic ``(y, x)`` in km) are relabelled so that bayesda's
    grid machinery applies unchanged: ``x`` becomes a longitude spanning 360 degrees (so the
    grid is periodic in it, as the model is) and ``y`` a latitude in
    [-``QG_LAT_HALF_WIDTH``, ``QG_LAT_HALF_WIDTH``] (cos-latitude weights within 1.5% of 1;
    the periodicity in ``y`` is not used). Values are scaled to the units of
    :data:`QG_UNITS`. Distances on this pseudo-sphere are not the model's, so only
    grid-point networks and distance-free methods are meaningful on it.
    """
    path = (
        pathlib.Path(store)
        if store
        else (default_qg_store() if var in QG_UNITS else default_store())
    )
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the simulation first")
    ds = xr.open_zarr(path, consolidated=False)
    if max_snapshots:
        ds = ds.isel(time=slice(0, int(max_snapshots)))
    if var not in ds:
        raise KeyError(f"{path} has no variable {var!r}; it has {sorted(ds.data_vars)}")
    da = ds[var].load()
    store_attrs = {k: v for k, v in ds.attrs.items() if k in ("config", "wall_seconds")}
    if "y" not in da.dims:
        da.attrs.update(store_attrs)
        return da
    ny, nx = da.sizes["y"], da.sizes["x"]
    scale, units = QG_UNITS[var]
    lon = -180.0 + 360.0 * (np.arange(nx) + 0.5) / nx
    lat = -QG_LAT_HALF_WIDTH + 2 * QG_LAT_HALF_WIDTH * (np.arange(ny) + 0.5) / ny
    out = xr.DataArray(
        np.asarray(da.values, np.float32) / np.float32(scale),
        dims=("time", "lat", "lon"),
        coords={"time": da["time"].values, "lat": lat, "lon": lon},
        name=var,
        attrs={**da.attrs, "units": units, "qg_relabelled": "y -> lat, x -> lon"},
    )
    out.attrs.update(store_attrs)
    return out


# --- the reconstruction table (osse_train, osse_gpu_fold) ---------------------------------------


def recon_markdown(records) -> str:
    """``osse_recon.md``: one row per trained model of ``osse_recon.json`` (train and GPU sweep)."""
    lines = [
        "# Held-out reconstruction RMSE on the simulated weather: VAE vs PCA-d",
        "",
        "Temperature at the lowest model level (K) for Held-Suarez rows; lower-layer "
        "potential vorticity (1e-6 s-1) for the QG rows (tag qg-*, bayesda.sim.qg); anomalies "
        "from the training time mean, held-out test blocks. `ratio` = VAE / PCA "
        "(target <= 0.85). Each row's exact command is in osse_recon.json.",
        "",
        "| tag | d | VAE | PCA | ratio | VAE refined z | best / run epochs | train s | "
        "load | settings |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r["tag"], r["latent_dim"])):
        tc = r["train_config"]
        s = (
            f"beta {tc['beta']}, ch {r['channels']}, lr {tc['learning_rate']}, "
            f"pca_init {tc['pca_init']}, roll {tc.get('roll_lon')}, flip {tc.get('flip_lat')}"
            f", n_fit {r['n_fit']}"
        )
        if r.get("linear_path") is False:
            s += ", no linear path"
        if tc.get("free_bits"):
            s += f", free bits {tc['free_bits']}"
        if tc.get("epochs") != 30:
            s += f", max epochs {tc.get('epochs')}"
        if r.get("device"):
            s += f", {r['device']}"
        lines.append(
            f"| {r['tag']} | {r['latent_dim']} | {r['vae_rmse']:.4f} | {r['pca_rmse']:.4f} | "
            f"{r['ratio']:.3f} | {r.get('vae_refined_rmse', '')} | "
            f"{r['best_epoch']} / {r['epochs_run']} | {r['train_wall_s']} | "
            f"{r['load_avg_1min']} | {s} |"
        )
    return "\n".join(lines) + "\n"
