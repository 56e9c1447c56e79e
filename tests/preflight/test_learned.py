"""QC and the self-check of the learned-error model (bayesda.preflight.learned)."""

from __future__ import annotations

import numpy as np
import pytest

from bayesda.preflight.learned import learned_check, learned_quality_control
from bayesda.preflight.pipeline import format_preflight, preflight
from bayesda.testing import grf_prior, obs_of


@pytest.fixture(scope="module")
def network():
    prior, grf = grf_prior(repr_sd=0.3)
    obs = obs_of(prior, grf, 60, seed=3, sigma=0.5)
    return prior, obs


def test_a_gross_error_is_flagged_and_removed(network):
    prior, obs = network
    bad = obs.copy()
    bad.loc[7, "value"] += 15.0
    kept, report, _ = learned_quality_control(prior, bad)
    assert [f["station_id"] for f in report["flagged"]] == ["S7"]
    assert len(kept) == 59 and "S7" not in set(kept["station_id"])
    assert abs(report["flagged"][0]["departure"]) > 10.0
    clean, report, pred = learned_quality_control(prior, obs)
    assert report["flagged"] == [] and len(clean) == 60
    assert pred is not None and pred["draws"].shape[1] == 60  # reused by the check


def test_an_extreme_that_many_stations_agree_on_is_kept(network):
    prior, obs = network
    hot = obs.copy()
    # a warm anomaly of +6 K over one region, seen by every station there
    near = (hot["lat"] > 40) & (hot["lon"] > -105)
    assert near.sum() >= 6
    hot.loc[near, "value"] += 6.0
    _, report, _ = learned_quality_control(prior, hot)
    assert report["flagged"] == []


def test_the_check_refits_per_fold_and_is_calibrated_on_its_own_prior(network):
    prior, obs = network
    check = learned_check(prior, obs, folds=5, seed=0)
    assert check["folds"] == 5 and check["n"] == 60
    assert 0.75 <= check["coverage_90"] <= 1.0
    assert 0.4 < check["z2"] < 2.0
    assert learned_check(prior, obs.iloc[:7])["folds"] == 0  # too few to withhold


def test_preflight_with_learned_errors_prints_its_qc_and_check(network):
    prior, obs = network
    bad = obs.copy()
    bad.loc[3, "value"] -= 20.0
    _, kept, record = preflight(prior, bad, qc=True, calibrate="off")
    text = format_preflight(record)
    assert "flagged as gross errors against the predictive with the learned site SD" in text
    assert "calibration check (5-fold" in text
    assert len(kept) == 59
    with pytest.raises(ValueError, match="learned-error model samples a uniform offset"):
        preflight(prior, obs, offset="uniform")
    with pytest.raises(ValueError, match="learns its error scales"):
        preflight(prior, obs, calibrate="auto")
    assert np.isfinite(record["qc"]["site_sd"])
