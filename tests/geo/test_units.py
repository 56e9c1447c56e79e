import numpy as np
import pandas as pd
import pytest

from bayesda.geo.units import UNITS, canonical_units, difference_to_kelvin, to_kelvin
from bayesda.obs.table import read_obs


@pytest.mark.parametrize(
    "units, value, kelvin",
    [
        ("K", 273.15, 273.15),
        ("degC", 0.0, 273.15),
        ("°C", -40.0, 233.15),
        ("degF", -40.0, 233.15),
        ("F", 212.0, 373.15),
        ("0.1degC", 215.0, 294.65),
    ],
)
def test_to_kelvin_known_points(units, value, kelvin):
    np.testing.assert_allclose(to_kelvin([value], units), [kelvin], atol=1e-9)


def test_differences_only_scale():
    np.testing.assert_allclose(difference_to_kelvin([9.0], "degF"), [5.0])
    np.testing.assert_allclose(difference_to_kelvin([15.0], "0.1degC"), [1.5])
    np.testing.assert_allclose(difference_to_kelvin([2.0], "degC"), [2.0])


def test_canonical_and_unknown():
    assert {canonical_units(u) for u in UNITS} == set(UNITS)
    with pytest.raises(ValueError, match="unknown units 'rankine'"):
        canonical_units("rankine")


def test_read_obs_scales_fahrenheit_anomalies_and_sigma():
    df = pd.DataFrame({"lat": [40.0], "lon": [-100.0], "value": [9.0], "sigma": [1.8]})
    out = read_obs(df, units="degF")
    np.testing.assert_allclose(out["value"], [5.0])
    np.testing.assert_allclose(out["sigma"], [1.0])
