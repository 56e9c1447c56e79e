"""Physical-range checks: the few-bad screen, and hints offered only when they would pass."""

from __future__ import annotations

import numpy as np
import pytest

import bayesda.obs.plausible as pl

N = 200
RNG = np.random.default_rng(0)
CLIM_MEAN = RNG.uniform(270.0, 300.0, N)  # K at each observation
CLIM_SD = RNG.uniform(0.5, 1.1, N)  # a summer's tropics: SDs near the 1 K floor


def _message(check, raw, units, **kw) -> str:
    with pytest.raises(pl.ImplausibleObservationError) as err:
        check(raw, units, clim_mean=CLIM_MEAN, clim_sd=CLIM_SD, **kw)
    return str(err.value)


def test_a_common_offset_gets_no_units_hint():
    """Anomalies all +12 K: a tenths-of-a-degree reading would pass the check, but a unit
    scales anomalies, it does not shift them; the message names the offset instead."""
    raw = np.full(N, 12.0) + RNG.normal(0.0, 0.3, N)
    pl.check_anomaly(raw, "0.1degC", clim_mean=CLIM_MEAN, clim_sd=CLIM_SD)  # it would pass
    msg = _message(pl.check_anomaly, raw, "K")
    assert "pass --" not in msg and "+12.0 K (median) from zero" in msg


def test_anomalies_in_tenths_still_get_the_units_hint_and_it_passes():
    true = RNG.normal(0.0, 1.0, N) * CLIM_SD * 3.0  # spread, not shift
    raw = true * 10.0
    msg = _message(pl.check_anomaly, raw, "K")
    assert "pass --units 0.1degC" in msg
    pl.check_anomaly(raw, "0.1degC", clim_mean=CLIM_MEAN, clim_sd=CLIM_SD)  # following it


def test_a_hint_is_only_offered_if_every_value_then_passes():
    """Celsius read as kelvin, with one value that no reading makes plausible: "--units
    degC" would still be refused (by the strict check), so it is not offered."""
    raw = CLIM_MEAN - 273.15
    assert "pass --units degC" in _message(pl.check_absolute, raw, "K")
    raw[17] = 5000.0
    msg = _message(pl.check_absolute, raw, "K")
    assert "pass --" not in msg and "no other units or kind makes them plausible" in msg


def test_the_screen_drops_one_impossible_value_and_names_many():
    raw = CLIM_MEAN - 273.15
    raw[[3, 150]] = 90.7
    keep = pl.screen_absolute(raw, "degC")  # 2 of 200 = 1%: dropped
    assert np.flatnonzero(~keep).tolist() == [3, 150]
    raw[7] = 95.0  # 3 of 200: refused, the first named by its label
    labels = [f"station S{i}, line {i + 1}" for i in range(N)]
    with pytest.raises(pl.ImplausibleObservationError, match="3 of 200.*station S3, line 4"):
        pl.screen_absolute(raw, "degC", labels=labels)


def test_the_screen_refuses_a_wrong_unit_with_its_hint():
    msg = _message(pl.screen_absolute, CLIM_MEAN, "degC")  # kelvin declared Celsius
    assert (
        "200 of 200" in msg and "values look like absolute temperatures in K; pass --units K" in msg
    )
    msg = _message(pl.screen_absolute, CLIM_MEAN, "degC", fixed_units=True)  # METAR: no option
    assert "look like absolute temperatures in K, not degC as the format prescribes" in msg
    assert "pass" not in msg
