"""What the window studies share: the NCEP anomalies on the model's split, encoded once."""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import numpy as np
import xarray as xr

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODEL = ROOT / "models" / "ncep-air"


class Split(NamedTuple):
    """NCEP anomalies (the model's climatology) and the model's split of their times.

    Attributes:
      anomalies: ``(time, lat, lon)`` all times, K.
      train, test: ``[n]`` bool, :func:`bayesda.data.split.block_split`.
      fit, val: ``[n]`` bool, the training times split by
        :func:`bayesda.data.split.validation_split` (as the model was trained).
    """

    anomalies: xr.DataArray
    train: np.ndarray
    test: np.ndarray
    fit: np.ndarray
    val: np.ndarray


def load_split(prior) -> Split:
    """The NCEP anomalies relative to ``prior.climatology`` and the model's split."""
    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import block_split, validation_split

    tas = load_dataset("ncep-air")["tas"]
    anomalies = prior.climatology.to_anomaly(tas).transpose("time", "lat", "lon").load()
    times = anomalies["time"].values
    train, test = block_split(times)
    fit_t, val_t = validation_split(times[train])
    fit = np.zeros(times.size, bool)
    val = np.zeros(times.size, bool)
    fit[np.flatnonzero(train)[fit_t]] = True
    val[np.flatnonzero(train)[val_t]] = True
    return Split(anomalies, train, test, fit, val)


def command(argv) -> str:
    """The command line that reproduces a result (from the repository root)."""
    import shlex

    return "BAYESDA_DATA_DIR=/work/shared/data nice -n 10 .venv/bin/python " + " ".join(
        shlex.quote(a) for a in argv
    )
