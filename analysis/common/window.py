"""The NCEP anomalies on the shipped model's split, for the window study (``analysis.window``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr

from analysis.common.export import split_masks
from analysis.common.io import results_dir

RESULTS = results_dir("window")


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

    tas = load_dataset("ncep-air")["tas"]
    anomalies = prior.climatology.to_anomaly(tas).transpose("time", "lat", "lon").load()
    train, test, fit = split_masks(anomalies["time"].values)
    return Split(anomalies, train, test, fit, train & ~fit)
