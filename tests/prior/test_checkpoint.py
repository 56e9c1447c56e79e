"""Tests for safe checkpoints (bayesda.prior.checkpoint): round trip and refusal of bad files."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesda.prior.checkpoint import (
    CheckpointError,
    flatten_params,
    load_model,
    read_card,
    save_model,
    unflatten_params,
    update_card,
)
from bayesda.prior.representation import RepresentationError
from bayesda.prior.vae import Decoder, VAEConfig
from bayesda.testing import TINY_VAE, TINY_VAE_GRID, vae_params

CONFIG, GRID = TINY_VAE, TINY_VAE_GRID
make_params = vae_params


def test_round_trip_gives_identical_decoder(saved):
    path, params, mean, sd, rep = saved
    prior = load_model(path)
    z = jax.random.normal(jax.random.key(0), (4, CONFIG.latent_dim))
    want = Decoder(CONFIG).apply({"params": params["decoder"]}, z) * sd + mean
    # jit fuses differently from eager apply: equal to float32 rounding
    np.testing.assert_allclose(np.asarray(prior.decode(z)), np.asarray(want), rtol=1e-5, atol=1e-5)
    with np.load(path / "params.npz", allow_pickle=False) as stored:
        for key, value in flatten_params(params).items():
            np.testing.assert_array_equal(stored[key], value)  # bit-exact parameters
    np.testing.assert_array_equal(
        np.asarray(load_model(path).decode(z)), np.asarray(prior.decode(z))
    )
    assert prior.latent_dim == 3 and prior.grid == GRID and prior.name == "m"
    np.testing.assert_array_equal(prior.repr_error.factor, rep.factor)
    np.testing.assert_array_equal(prior.repr_error.diag_var, rep.diag_var)
    assert prior.card["metrics"] == {"x": 1.0} and prior.card["vae_config"]["latent_dim"] == 3
    assert set(prior.card["files"]) == {"params.npz", "norm.npz", "repr_error.npz", "MODEL_CARD.md"}
    mu, logvar = prior.encode(prior.decode(z))
    assert mu.shape == logvar.shape == (4, 3)
    # decode composes with jax transformations
    g = jax.grad(lambda z: jnp.sum(prior.decode(z) ** 2))(z[0])
    assert g.shape == (3,) and np.all(np.isfinite(np.asarray(g)))


def test_flatten_unflatten_round_trip():
    params = make_params()
    flat = flatten_params(params)
    assert "decoder/linear/kernel" in flat
    back = unflatten_params(flat)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(params)


def test_tampered_params_refused(saved):
    path = saved[0]
    data = bytearray((path / "params.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "params.npz").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(path)


def test_truncated_file_refused(saved):
    path = saved[0]
    data = (path / "repr_error.npz").read_bytes()
    (path / "repr_error.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or altered"):
        load_model(path)
    # without hash checks the reader itself still refuses the broken archive
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(path, verify=False)


def test_missing_checkpoint_and_missing_file_refused(saved, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model.json"):
        load_model(tmp_path / "empty")
    path = saved[0]
    (path / "norm.npz").unlink()
    with pytest.raises(CheckpointError, match="'norm.npz'.*missing"):
        load_model(path)


def test_config_mismatch_refused(saved):
    path = saved[0]
    card = json.loads((path / "model.json").read_text())
    card["vae_config"]["latent_dim"] = 5
    (path / "model.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="shape"):
        load_model(path)


def test_object_arrays_never_unpickled(saved):
    path = saved[0]
    flat = flatten_params(saved[1])
    flat["decoder/linear/kernel"] = np.array([{"evil": 1}], dtype=object)
    np.savez(path / "params.npz", **flat)
    update_card_hashes_by_hand(path)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(path)


def update_card_hashes_by_hand(path):
    import hashlib

    card = json.loads((path / "model.json").read_text())
    card["files"]["params.npz"] = hashlib.sha256((path / "params.npz").read_bytes()).hexdigest()
    (path / "model.json").write_text(json.dumps(card))


def test_save_refuses_overwrite_and_bad_shapes(saved, tmp_path):
    path, params, mean, sd, rep = saved
    kwargs = dict(
        params=params, config=CONFIG, grid=GRID, norm_mean=mean, norm_sd=sd, repr_error=rep
    )
    with pytest.raises(FileExistsError):
        save_model(path, **kwargs)
    with pytest.raises(ValueError, match="norm_sd"):
        save_model(tmp_path / "b", **{**kwargs, "norm_sd": sd[:-1]})
    with pytest.raises(CheckpointError, match="missing"):
        save_model(tmp_path / "c", **{**kwargs, "params": {"decoder": params["decoder"]}})
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written temp dirs left behind


def test_update_card_rehashes(saved):
    path = saved[0]
    before = (path / "params.npz").read_bytes()
    update_card(path, card={"metrics": {"x": 2.0}}, model_card="# new\n")
    card = read_card(path)
    assert card["metrics"] == {"x": 2.0}
    assert (path / "MODEL_CARD.md").read_text() == "# new\n"
    assert (path / "params.npz").read_bytes() == before
    load_model(path)


def test_update_card_replaces_the_representation_error(saved):
    from bayesda.prior.checkpoint import load_model, update_card

    path = saved[0]
    before = load_model(path)
    diag = RepresentationError(
        np.zeros((0, *before.grid.shape), np.float32), before.repr_error.variance.astype(np.float32)
    )
    update_card(path, repr_error=diag, card={"repr_error": {"rank": 0}})
    after = load_model(path)  # hashes verified
    assert after.repr_error.rank == 0
    np.testing.assert_allclose(after.repr_error.variance, before.repr_error.variance, rtol=1e-6)
    with pytest.raises(ValueError, match="grid"):
        update_card(path, repr_error=RepresentationError(np.zeros((0, 2, 2)), np.ones((2, 2))))


def test_stationary_repr_error_stored_as_parameters_and_rebuilt(saved, tmp_path):
    from bayesda.prior.representation import stationary

    path, *_ = saved
    sd = np.random.default_rng(5).uniform(0.5, 1.5, GRID.shape)
    rep = stationary(sd, GRID, 400.0, var_fraction=0.9, max_rank=20)
    update_card(path, card={"repr_error": {"structure": "stationary"}}, repr_error=rep)
    with np.load(path / "repr_error.npz", allow_pickle=False) as z:
        assert str(z["structure"]) == "stationary" and "factor" not in z.files
        assert int(z["rank"]) == rep.rank and float(z["length_scale_km"]) == 400.0
    prior = load_model(path)
    got = prior.repr_error
    assert got.spec is not None and got.rank == rep.rank and got.spec.kind == "matern32"
    np.testing.assert_allclose(got.variance, sd**2, rtol=1e-5)

    def cov(r):
        f = r.factor.reshape(r.rank, -1).astype(np.float64)
        return f.T @ f + np.diag(r.diag_var.ravel())

    np.testing.assert_allclose(cov(got), cov(rep), atol=1e-5)
    assert read_card(path)["repr_error"] == {"structure": "stationary"}
    # an old-format (factor + diagonal) model still loads: replace it back
    plain = RepresentationError(got.factor, got.diag_var)
    update_card(path, repr_error=plain)
    np.testing.assert_array_equal(load_model(path).repr_error.factor, got.factor)
    assert load_model(path).repr_error.spec is None


def test_homogeneous_repr_error_stored_as_its_spectrum_and_rebuilt(saved):
    from bayesda.prior.representation import homogeneous

    path, *_ = saved
    rng = np.random.default_rng(6)
    white = rng.standard_normal((20, *GRID.shape))
    rep = homogeneous(white + np.roll(white, 1, axis=2), max_rank=9)
    update_card(path, repr_error=rep)
    with np.load(path / "repr_error.npz", allow_pickle=False) as z:
        assert str(z["structure"]) == "homogeneous" and "factor" not in z.files
        assert z["power"].shape == GRID.shape and int(z["rank"]) == rep.rank <= 9
    got = load_model(path).repr_error
    np.testing.assert_allclose(got.factor, rep.factor, atol=1e-6)
    np.testing.assert_allclose(got.diag_var, rep.diag_var, atol=1e-6)
    np.savez(
        path / "repr_error.npz", structure=np.array("homogeneous"), power=np.ones((2, 2)), rank=1
    )
    from bayesda.prior.checkpoint import _finish_card

    card = read_card(path, verify=False)
    _finish_card(path, {k: v for k, v in card.items() if k != "files"})
    with pytest.raises(CheckpointError, match="power shape"):
        load_model(path)


def test_unknown_repr_error_structure_refused(saved):
    from bayesda.prior.checkpoint import _finish_card

    path, *_ = saved
    np.savez(path / "repr_error.npz", structure=np.array("wavelet"), sd=np.ones(GRID.shape))
    card = read_card(path, verify=False)
    _finish_card(path, {k: v for k, v in card.items() if k != "files"})
    with pytest.raises(CheckpointError, match="unknown structure"):
        load_model(path)


def test_expected_parameter_shapes_come_from_the_disk_cache(tmp_path, monkeypatch):
    import bayesda.prior.checkpoint as checkpoint

    monkeypatch.setenv("BAYESDA_CACHE", str(tmp_path))
    monkeypatch.delenv("BAYESDA_DISK_CACHE", raising=False)
    config = VAEConfig(nlat=6, nlon=9, latent_dim=5, channels=(3, 4))
    traced = checkpoint._traced_shapes(config)
    assert checkpoint._expected_shapes(config) == traced  # computed and written

    def boom(config):
        raise AssertionError("traced although cached")

    monkeypatch.setattr(checkpoint, "_traced_shapes", boom)
    assert checkpoint._expected_shapes(config) == traced  # read back
    with pytest.raises(AssertionError, match="traced"):  # another configuration: its own entry
        checkpoint._expected_shapes(VAEConfig(nlat=6, nlon=9, latent_dim=6, channels=(3, 4)))
