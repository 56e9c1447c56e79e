"""Tests for the latent dynamics (bayesda.prior.dynamics): fit, stability, storage, card."""

import numpy as np
import pytest

from bayesda.prior.checkpoint import CheckpointError, load_model, read_card, update_card
from bayesda.prior.dynamics import (
    LatentDynamics,
    calibrate,
    check_stable,
    consecutive_pairs,
    damped,
    fit_dynamics,
    fit_transition,
    load_dynamics,
    replace_section,
    representation_correlation,
    save_dynamics,
    stationary_covariance,
)


def _ar1(A, B, n, seed=0):
    rng = np.random.default_rng(seed)
    d = A.shape[0]
    P = stationary_covariance(A, B @ B.T)
    z = np.empty((n, d))
    z[0] = np.linalg.cholesky(P) @ rng.standard_normal(d)
    for t in range(1, n):
        z[t] = A @ z[t - 1] + B @ rng.standard_normal(d)
    return z


def _random_stable(d, radius, seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q @ np.diag(np.linspace(0.3, radius, d)) @ q.T


def test_fit_recovers_a_known_ar1():
    d, n = 4, 20000
    A = _random_stable(d, 0.9, 1)
    B = np.linalg.cholesky(np.eye(d) * 0.3 + 0.05)
    z = _ar1(A, B, n)
    times = np.datetime64("2013-01-01") + np.arange(n) * np.timedelta64(6, "h")
    dyn = fit_dynamics(z, times, step_hours=6)
    # least squares: SE of each coefficient ~ sqrt(q / (n var z)) < 0.01 here
    np.testing.assert_allclose(dyn.transition, A, atol=0.03)
    np.testing.assert_allclose(dyn.noise @ dyn.noise.T, B @ B.T, atol=0.03)
    np.testing.assert_allclose(dyn.stationary, np.cov(z.T), atol=0.15)
    assert dyn.spectral_radius < 1 and dyn.repr_corr == 0.0
    P = dyn.stationary
    np.testing.assert_allclose(
        P, dyn.transition @ P @ dyn.transition.T + dyn.noise @ dyn.noise.T, atol=1e-4
    )


def test_calibration_finds_the_damping_and_scale_of_held_out_fields():
    d, n = 3, 8000
    A = _random_stable(d, 0.9, 5)
    z = _ar1(A, np.eye(d) * 0.5, n)
    times = np.datetime64("2013-01-01") + np.arange(n) * np.timedelta64(6, "h")
    true = fit_dynamics(z, times, step_hours=6)
    # held-out fields: memory shorter (A x 0.9) and spread wider (P x 1.3)
    other = damped(true, 0.9, 1.3)
    w = _ar1(other.transition.astype(np.float64), other.noise.astype(np.float64), n, seed=9)
    both = np.concatenate([z, w])
    t2 = np.datetime64("2013-01-01") + np.arange(2 * n) * np.timedelta64(6, "h")
    held = np.arange(2 * n) >= n
    lam, s, table = calibrate(
        true, both, t2, held, dampings=(1.0, 0.95, 0.9, 0.85), scales=(1.0, 1.3, 1.6)
    )
    assert (lam, s) == (0.9, 1.3) and len(table) == 12
    dyn = damped(true, lam, s)
    P, A2, B = dyn.stationary, dyn.transition, dyn.noise
    np.testing.assert_allclose(P, A2 @ P @ A2.T + B @ B.T, atol=1e-4)
    with pytest.raises(ValueError, match="damping"):
        damped(true, 1.2)


def test_ridge_shrinks_the_transition():
    A = _random_stable(3, 0.95, 2)
    z = _ar1(A, np.eye(3) * 0.5, 2000)
    a0, _ = fit_transition(z[:-1], z[1:])
    a1, q1 = fit_transition(z[:-1], z[1:], ridge=1.0)
    assert np.linalg.norm(a1) < np.linalg.norm(a0)
    assert np.all(np.linalg.eigvalsh(q1) > 0)


def test_pairs_skip_gaps_and_masked_times():
    t = np.datetime64("2013-01-01T00") + np.array([0, 6, 12, 24, 30, 36], "timedelta64[h]")
    i, j = consecutive_pairs(t, 6)
    assert list(zip(i, j, strict=True)) == [(0, 1), (1, 2), (3, 4), (4, 5)]
    mask = np.array([True, True, False, True, True, True])
    i, j = consecutive_pairs(t, 6, mask)
    assert list(zip(i, j, strict=True)) == [(0, 1), (3, 4), (4, 5)]
    with pytest.raises(ValueError, match="strictly increasing"):
        consecutive_pairs(t[::-1], 6)


def test_unstable_transition_refused():
    with pytest.raises(ValueError, match="spectral radius 1.0500"):
        check_stable(np.diag([1.05, 0.5]))
    rng = np.random.default_rng(0)
    z = np.zeros((300, 2))
    for k in range(1, 300):  # explosive: grows 2% a step
        z[k] = 1.02 * z[k - 1] + rng.standard_normal(2)
    t = np.datetime64("2013-01-01") + np.arange(300) * np.timedelta64(6, "h")
    with pytest.raises(ValueError, match="not stable"):
        fit_dynamics(z, t, step_hours=6)


def test_representation_correlation_of_an_ar1_field():
    rng = np.random.default_rng(3)
    rho, n = 0.6, 4000
    r = np.empty((n, 3, 4))
    r[0] = rng.standard_normal((3, 4))
    for t in range(1, n):
        r[t] = rho * r[t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal((3, 4))
    est = representation_correlation(r, (np.arange(n - 1), np.arange(1, n)))
    assert abs(est - rho) < 0.03


def _dyn(d=3):
    A = _random_stable(d, 0.8, 4).astype(np.float32)
    Q = np.eye(d) * 0.4
    return LatentDynamics(
        A, np.linalg.cholesky(Q).astype(np.float32), stationary_covariance(A, Q), 0.5, 6.0
    )


def test_save_load_round_trip(tmp_path):
    dyn = _dyn()
    save_dynamics(tmp_path / "d.npz", dyn)
    back = load_dynamics(tmp_path / "d.npz", 3)
    for a, b in zip(dyn, back, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(4, 4\)"):
        load_dynamics(tmp_path / "d.npz", 4)


def test_forecast_covariance_grows_to_the_stationary_one():
    dyn = _dyn()
    _, c1 = dyn.forecast(np.zeros(3), 1)
    _, c4 = dyn.forecast(np.zeros(3), 4)
    _, c99 = dyn.forecast(np.zeros(3), 99)
    np.testing.assert_allclose(c1, dyn.noise @ dyn.noise.T, atol=1e-5)
    assert np.trace(c1) < np.trace(c4) < np.trace(c99)
    np.testing.assert_allclose(c99, dyn.stationary, atol=1e-4)


def test_model_directory_carries_dynamics(saved):
    path = saved[0]
    assert load_model(path).dynamics is None
    update_card(path, card={"dynamics": {"note": "x"}}, dynamics=_dyn())
    prior = load_model(path)
    assert prior.dynamics is not None and prior.dynamics.latent_dim == 3
    assert "dynamics.npz" in read_card(path)["files"]
    # a card update keeps the stored dynamics
    update_card(path, card={"metrics": {"y": 2.0}})
    assert load_model(path).dynamics.repr_corr == 0.5
    with open(path / "dynamics.npz", "ab") as f:
        f.write(b"x")
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(path)


def test_replace_section_keeps_the_others():
    text = "# t\n\nintro\n\n## A\n\nold a\n\n## B\n\nb\n"
    out = replace_section(text, "A", "new a")
    assert out == "# t\n\nintro\n\n## A\n\nnew a\n\n## B\n\nb\n"
    out = replace_section(out, "C", "c")
    assert out.endswith("## B\n\nb\n\n## C\n\nc\n")
    assert replace_section(out, "C", "c2").endswith("## C\n\nc2\n")
