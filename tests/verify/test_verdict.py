"""The convergence verdict: a bad run FAILs, a good one PASSes, reasons name numbers."""

from __future__ import annotations

import arviz as az
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

from bayesda.verify.verdict import diagnose, format_verdict, plot_sampler_diagnostics


def _bimodal():
    with numpyro.plate("latent", 2):
        numpyro.sample(
            "z",
            dist.MixtureSameFamily(
                dist.Categorical(np.array([0.5, 0.5])), dist.Normal(np.array([-6.0, 6.0]), 0.5)
            ),
        )


def _normal():
    with numpyro.plate("latent", 2):
        numpyro.sample("z", dist.Normal(0.0, 1.0))


def _run(model, *, warmup, samples, seed=0, chains=4):
    mcmc = MCMC(
        NUTS(model),
        num_warmup=warmup,
        num_samples=samples,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), extra_fields=("num_steps", "diverging", "energy"))
    idata = az.from_numpyro(mcmc, dims={"z": ["latent"]}, log_likelihood=False)
    idata.sample_stats["n_steps"] = (
        ("chain", "draw"),
        np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"]),
    )
    idata.attrs["max_tree_depth"] = 10
    return idata


def test_bad_run_fails_with_named_numbers(tmp_path):
    idata = _run(_bimodal, warmup=20, samples=200)
    v = diagnose(idata)
    assert v.status == "FAIL"
    assert v.max_rhat_z > 1.05
    assert any("R-hat" in r and "1.05" in r and f"{v.max_rhat_z:.3f}" in r for r in v.reasons)
    assert "verdict: FAIL" in format_verdict(v)
    out = plot_sampler_diagnostics(idata, tmp_path / "trace.png", n_dims=2)
    assert out.stat().st_size > 10_000
    assert (tmp_path / "trace_rank.png").stat().st_size > 10_000


def test_good_run_passes():
    idata = _run(_normal, warmup=300, samples=500, seed=1)
    fields = np.asarray(idata.posterior["z"].values)[..., None, :] * np.ones((2, 1))  # [c, d, 2, 2]
    v = diagnose(idata, field_samples=fields)
    assert v.status == "PASS", v.reasons
    assert v.reasons == []
    assert v.max_rhat_z <= 1.01 and v.min_ess_bulk_z >= 400
    assert np.isfinite(v.max_rhat_field) and len(v.ebfmi) == 4
    assert v.to_dict()["divergences"] == 0


def test_field_pixels_are_checked_too():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 500, 2))
    idata = az.from_dict(
        posterior={"z": z},
        sample_stats={"diverging": np.zeros((4, 500), bool)},
        dims={"z": ["latent"]},
    )
    field = rng.normal(size=(4, 500, 2, 3))
    field[:, :, 1, 2] = np.cumsum(rng.normal(size=(4, 500)), axis=1)  # one random-walk pixel
    v = diagnose(idata, field_samples=field)
    assert v.status == "FAIL"
    assert v.max_rhat_z < 1.01 < v.max_rhat_field
    assert any("over field" in r for r in v.reasons)


def test_laplace_style_idata_is_at_best_warn():
    rng = np.random.default_rng(0)
    idata = az.from_dict(posterior={"z": rng.normal(size=(2, 500, 3))}, dims={"z": ["latent"]})
    v = diagnose(idata)
    assert v.status == "WARN"
    assert any("no sampler statistics" in r for r in v.reasons)


@pytest.mark.parametrize("n_div,status", [(0, "PASS"), (5, "WARN"), (100, "FAIL")], ids=str)
def test_divergence_levels(n_div, status):
    rng = np.random.default_rng(0)
    div = np.zeros((4, 1000), bool)
    div.ravel()[:n_div] = True
    idata = az.from_dict(
        posterior={"z": rng.normal(size=(4, 1000, 2))},
        sample_stats={"diverging": div},
        dims={"z": ["latent"]},
    )
    assert diagnose(idata).status == status


def test_rhat_threshold_scales_with_quantities_and_draws():
    from bayesda.verify.verdict import RHAT_PASS, RHAT_WARN, rhat_threshold

    assert rhat_threshold(1, 4, 500) == RHAT_PASS  # one quantity, long run: the strict rule
    few, many = rhat_threshold(10, 4, 250), rhat_threshold(1325, 4, 250)
    assert RHAT_PASS <= few < many <= RHAT_WARN
    assert rhat_threshold(1325, 4, 4000) == RHAT_PASS
    # Fewer effective draws -> a looser level, never above the WARN level.
    levels = rhat_threshold(1325, 4, 250, ess_within=np.array([2000.0, 500.0, 10.0]))
    assert levels[0] < levels[1] < levels[2] == RHAT_WARN


def test_many_pixels_of_a_well_mixed_short_run_pass():
    """1325 independent iid 'pixels', 4 x 250 draws: the old fixed 1.01 cries wolf."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 250, 5))
    idata = az.from_dict(
        posterior={"z": z},
        sample_stats={"diverging": np.zeros((4, 250), bool)},
        dims={"z": ["latent"]},
    )
    field = rng.normal(size=(4, 250, 25, 53))
    v = diagnose(idata, field_samples=field)
    assert v.max_rhat_field > 1.01  # the old rule would have said WARN
    assert v.status == "PASS", v.reasons
    assert v.rhat_pass_field > 1.01


def test_one_shifted_chain_in_many_pixels_is_caught():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(4, 250, 5))
    idata = az.from_dict(
        posterior={"z": z},
        sample_stats={"diverging": np.zeros((4, 250), bool)},
        dims={"z": ["latent"]},
    )
    field = rng.normal(size=(4, 250, 25, 53))
    field[0, :, 3, 4] += 0.5  # one chain off by half a posterior SD at one pixel
    v = diagnose(idata, field_samples=field)
    assert v.status != "PASS"
    assert any("over field" in r for r in v.reasons)
