"""What a run prints about its calibration check (bayesda.preflight.pipeline.format_preflight)."""

from __future__ import annotations

from bayesda.preflight.pipeline import OBS_SCALE_DOUBT, Z2_MISFIT, format_preflight


def _check(coverage, z2):
    return {"folds": 5, "n": 50, "coverage_90": coverage, "crps": 1.0, "z2": z2}


def _fit(scale_obs):
    return {
        "scale": 1.0,
        "scale_q05": 0.8,
        "scale_q95": 1.2,
        "scale_obs": scale_obs,
        "scale_obs_q05": scale_obs * 0.8,
        "scale_obs_q95": scale_obs * 1.2,
    }


def test_a_fitting_prior_gets_no_warning():
    text = format_preflight({"calibration": {"mode": "check", "check": _check(0.9, 1.1)}})
    assert "calibration check (5-fold withheld obs, n=50)" in text
    assert "consider" not in text and "does not" not in text


def test_undercoverage_suggests_calibration_and_a_large_misfit_blames_the_prior():
    mild = format_preflight({"calibration": {"mode": "check", "check": _check(0.75, 2.0)}})
    assert "consider --calibrate auto" in mild and "does not describe" not in mild
    z2 = Z2_MISFIT * 2
    bad = format_preflight({"calibration": {"mode": "check", "check": _check(0.42, z2)}})
    assert "consider --calibrate auto" in bad
    assert "the prior does not describe these fields" in bad
    assert f"{z2**0.5:.1f} predicted SDs" in bad


def test_a_fit_that_widens_the_observation_errors_a_lot_is_doubted():
    def record(a):
        return {
            "calibration": {
                "mode": "auto",
                "check": _check(0.42, 7.8),
                "fit": _fit(a),
                "check_calibrated": _check(0.85, 1.2),
            }
        }

    assert "only hide it" not in format_preflight(record(OBS_SCALE_DOUBT * 0.75))
    text = format_preflight(record(OBS_SCALE_DOUBT * 2))
    assert f"widens the observation errors x{OBS_SCALE_DOUBT * 2:.1f}" in text
    assert "only hide it" in text and "consider" not in text


def test_learned_qc_line_when_too_few_to_withhold():
    """Two superobs leave no folds: the QC line says so instead of formatting None."""
    q = {"model": "learned", "n_obs": 2, "n_buddy": 0, "n_gross": 0, "site_sd": None,
         "repr_scale": None, "flagged": []}  # fmt: skip
    text = format_preflight({"qc": q})
    assert "QC: 2 obs" in text and "too few to withhold" in text
    q |= {"site_sd": 1.25, "repr_scale": 2.0}
    assert "learned site SD 1.25 K (representation error x2.00)" in format_preflight({"qc": q})
