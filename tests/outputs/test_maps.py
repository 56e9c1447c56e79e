"""Uncertainty maps: panels, shared scales and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesda.inference.fields import posterior_dataset
from bayesda.outputs.maps import plot_posterior
from bayesda.testing import make_linear_prior, make_obs


class _A:
    def __init__(self, prior):
        rng = np.random.default_rng(0)
        self.field = rng.normal(size=(2, 40, *prior.grid.shape)).astype(np.float32)
        self.obs = type("O", (), {"n": 5})()
        self.time = None
        self.settings = {"method": "nuts"}


@pytest.fixture(scope="module")
def case():
    prior = make_linear_prior()
    return prior, posterior_dataset(_A(prior), prior), make_obs(prior.grid, 5)


@pytest.mark.parametrize("with_truth", [False, True], ids=["no-truth", "truth"])
def test_maps_are_written(case, tmp_path, with_truth):
    import matplotlib.image as mpimg

    prior, ds, obs = case
    truth = xr.zeros_like(ds["mean"]) if with_truth else None
    out = plot_posterior(
        ds, obs, truth=truth, climatology_sd=np.full(prior.grid.shape, 1.5), out=tmp_path / "m.png"
    )
    img = mpimg.imread(out)
    # 3 columns with truth, 2 without: the figure is wider.
    assert img.shape[1] == (1560 if with_truth else 1040)
    assert img.std() > 0.05  # not blank


def test_bad_inputs(case, tmp_path):
    prior, ds, obs = case
    with pytest.raises(ValueError, match="threshold=7.0 not in"):
        plot_posterior(ds, obs, threshold=7.0, out=tmp_path / "m.png")
    with pytest.raises(ValueError, match="climatology_sd shape"):
        plot_posterior(ds, obs, climatology_sd=np.ones((2, 2)), out=tmp_path / "m.png")
    with pytest.raises(ValueError, match="truth shape"):
        plot_posterior(ds, obs, truth=np.ones((2, 2)), out=tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()
