"""One variable of the simulated weather, split, in ONE compressed ``.npz`` for a GPU machine.

The GPU machine has no zarr (and the store is 240 MB); the sweep
(:mod:`analysis.osse_gpu.osse_gpu_sweep`) needs only the time-block split of the field it
trains on. The file holds, without pickle (every array a plain dtype):

* ``anomaly_q``  int16 ``[time, lat, lon]``: anomaly from the training-split time mean,
  in units of ``scale`` (default 0.01 K: quantisation error 0.01/sqrt(12) = 0.003 K RMS,
  three orders below the 3.4 K reconstruction errors being compared);
* ``scale``      float64 scalar, the unit of ``anomaly_q`` (K for ``tas``);
* ``mean``       float32 ``[lat, lon]``: the training time mean (the Held-Suarez climate
  has no seasons, so this is the climatology; see :mod:`analysis.common.osse`);
* ``time``       datetime64[ns] ``[time]``;
* ``train``, ``test``, ``fit``  bool ``[time]``: :func:`bayesda.data.split.block_split` (every
  4th 7-day block held out) and, inside the training split, the fit part of
  :func:`bayesda.data.split.validation_split` (the rest of the training split is validation);
* ``lat``, ``lon`` float64; ``meta``: a JSON string (variable, units, store, its
  simulation config, what was dropped, the command).

Only numpy is imported at the top: the GPU machine reads the file with this module alone.
"""

from __future__ import annotations

import json
import pathlib
from typing import NamedTuple

import numpy as np

__all__ = ["Export", "export_arrays", "load_export", "split_masks"]

_INT16_MAX = np.iinfo(np.int16).max


class Export(NamedTuple):
    """The exported split, dequantised: anomalies ``[time, lat, lon]`` float32 and masks."""

    anomaly: np.ndarray
    mean: np.ndarray
    time: np.ndarray
    train: np.ndarray
    test: np.ndarray
    fit: np.ndarray  # over all times; True only inside the training split
    lat: np.ndarray
    lon: np.ndarray
    meta: dict

    @property
    def val(self) -> np.ndarray:
        """``[time]`` bool: the validation part of the training split."""
        return self.train & ~self.fit


def split_masks(times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, test, fit)`` bool masks over ``times``: the project's block split."""
    from bayesda.data.split import block_split, validation_split

    train, test = block_split(times)
    fit_in_train, _ = validation_split(times[train])
    fit = np.zeros_like(train)
    fit[np.flatnonzero(train)[fit_in_train]] = True
    return train, test, fit


def export_arrays(
    field: np.ndarray,
    times: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    path: str | pathlib.Path,
    *,
    scale: float = 0.01,
    meta: dict | None = None,
) -> pathlib.Path:
    """Split ``field [time, lat, lon]``, quantise its anomalies and write ``path`` atomically.

    Raises:
      ValueError: a shape mismatch, a non-finite value, or an anomaly beyond int16 range at
        this ``scale`` (the message gives the largest anomaly and a scale that fits).
    """
    from bayesda.runtime.files import atomic_write

    field = np.asarray(field, np.float64)
    times = np.asarray(times).astype("datetime64[ns]")
    if field.ndim != 3 or field.shape != (len(times), len(lat), len(lon)):
        raise ValueError(
            f"field shape {field.shape} != (time, lat, lon) = "
            f"({len(times)}, {len(lat)}, {len(lon)})"
        )
    if not np.all(np.isfinite(field)):
        raise ValueError(f"field has {int(np.sum(~np.isfinite(field)))} non-finite values")
    train, test, fit = split_masks(times)
    mean = field[train].mean(axis=0)
    q = np.round((field - mean) / scale)
    big = float(np.abs(q).max()) * scale
    if big / scale > _INT16_MAX:
        raise ValueError(
            f"largest anomaly {big:.3g} does not fit int16 at scale={scale}; "
            f"pass --scale {big / _INT16_MAX * 1.01:.3g} or larger"
        )
    info = {"scale_note": "value = anomaly_q * scale + mean", **dict(meta or {})}
    path = pathlib.Path(path)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            anomaly_q=q.astype(np.int16),
            scale=np.float64(scale),
            mean=mean.astype(np.float32),
            time=times,
            train=train,
            test=test,
            fit=fit,
            lat=np.asarray(lat, np.float64),
            lon=np.asarray(lon, np.float64),
            meta=np.array(json.dumps(info)),
        )
    return path


def load_export(path: str | pathlib.Path, max_snapshots: int | None = None) -> Export:
    """Read a file written by :func:`export_arrays` (no pickle), optionally its first times.

    With ``max_snapshots`` the split is made afresh on the shorter series (the validation
    blocks are spread over the period, so they are not the full file's restricted); the
    anomalies stay relative to the full file's training mean, a constant per pixel that
    the training normalisation and the PCA baseline both remove (they centre on the fit
    fields).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: write it with "
            f"`python -m analysis.osse_gpu.osse_export --out {path}`"
        )
    with np.load(path, allow_pickle=False) as f:
        n = len(f["time"]) if max_snapshots is None else min(int(max_snapshots), len(f["time"]))
        s = slice(0, n)
        anomaly = (f["anomaly_q"][s].astype(np.float32) * np.float32(f["scale"])).astype(np.float32)
        train, test, fit = f["train"][s], f["test"][s], f["fit"][s]
        if n < len(f["time"]):
            train, test, fit = split_masks(f["time"][s])
        return Export(
            anomaly=anomaly,
            mean=f["mean"],
            time=f["time"][s],
            train=train,
            test=test,
            fit=fit,
            lat=f["lat"],
            lon=f["lon"],
            meta=json.loads(str(f["meta"])),
        )
