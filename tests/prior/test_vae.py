"""Tests for the VAE architecture (bayesda.prior.vae): shapes, padding, conv gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesda.prior.vae import (
    VAE,
    Decoder,
    PaddedConv,
    VAEConfig,
    conv_valid,
    kl_divergence,
    pad_field,
    stage_shapes,
)


def make_config(
    *, nlat=9, nlon=13, latent_dim=4, channels=(4, 4), periodic=False, linear_path=True
):
    return VAEConfig(
        nlat=nlat,
        nlon=nlon,
        latent_dim=latent_dim,
        channels=channels,
        periodic=periodic,
        linear_path=linear_path,
    )


def init(config, seed=0):
    x = jnp.zeros((1, config.nlat, config.nlon))
    return VAE(config).init(jax.random.key(seed), x, jax.random.key(seed + 1))["params"]


@pytest.mark.parametrize(
    "nlat,nlon,periodic,channels",
    [
        (25, 53, False, (8, 8)),
        (7, 11, False, (4,)),
        (12, 20, False, (4, 4, 4)),
        (8, 16, True, (4, 4)),
    ],
    ids=["ncep-25x53", "odd-7x11", "non-pow2-12x20", "global-8x16"],
)
def test_decoder_and_encoder_shapes(nlat, nlon, periodic, channels):
    config = make_config(nlat=nlat, nlon=nlon, periodic=periodic, channels=channels)
    params = init(config)
    model = VAE(config)
    z = jnp.ones((2, 3, config.latent_dim))
    out = model.apply({"params": params}, z, method="decode")
    assert out.shape == (2, 3, nlat, nlon) and out.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(out)))
    single = model.apply({"params": params}, z[0, 0], method="decode")
    assert single.shape == (nlat, nlon)
    np.testing.assert_allclose(single, out[0, 0], rtol=1e-5, atol=1e-5)
    mean, logvar = model.apply({"params": params}, out, method="encode")
    assert mean.shape == logvar.shape == (2, 3, config.latent_dim)


def test_stage_shapes_cover_the_grid():
    shapes = stage_shapes(25, 53, 2)
    assert shapes == [(7, 14), (13, 27), (25, 53)]
    for (h0, w0), (h1, w1) in zip(shapes[:-1], shapes[1:], strict=True):
        assert 2 * h0 >= h1 and 2 * w0 >= w1


def test_pad_field_wraps_longitude_only_when_periodic():
    x = jnp.arange(3 * 4, dtype=jnp.float32).reshape(1, 3, 4, 1)
    p = pad_field(x, 1, periodic=True)[0, ..., 0]
    assert p.shape == (5, 6)
    np.testing.assert_array_equal(p[1:-1, 0], x[0, :, -1, 0])  # west pad = east column
    np.testing.assert_array_equal(p[1:-1, -1], x[0, :, 0, 0])
    np.testing.assert_array_equal(p[0, 1:-1], x[0, 0, :, 0])  # lat repeats the edge
    e = pad_field(x, 1, periodic=False)[0, ..., 0]
    np.testing.assert_array_equal(e[1:-1, 0], x[0, :, 0, 0])
    np.testing.assert_array_equal(e[1:-1, -1], x[0, :, -1, 0])


def test_periodic_conv_commutes_with_longitude_roll():
    x = jax.random.normal(jax.random.key(0), (1, 6, 10, 2))
    conv = PaddedConv(3, periodic=True)
    params = conv.init(jax.random.key(1), x)
    rolled_then_conv = conv.apply(params, jnp.roll(x, 3, axis=2))
    conv_then_rolled = jnp.roll(conv.apply(params, x), 3, axis=2)
    np.testing.assert_allclose(rolled_then_conv, conv_then_rolled, rtol=1e-5, atol=1e-5)
    # a regional (edge-padded) conv does not commute: the check above can fail
    regional = PaddedConv(3, periodic=False)
    assert not np.allclose(
        regional.apply(params, jnp.roll(x, 3, axis=2)),
        jnp.roll(regional.apply(params, x), 3, axis=2),
    )


def test_conv_valid_gradients_match_lax():
    x = jax.random.normal(jax.random.key(0), (2, 7, 9, 3))
    k = jax.random.normal(jax.random.key(1), (3, 3, 3, 5))

    def reference(x, k):
        return jax.lax.conv_general_dilated(
            x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def loss(f):
        return lambda x, k: jnp.sum(jnp.sin(f(x, k)))

    np.testing.assert_allclose(conv_valid(x, k), reference(x, k), rtol=1e-5, atol=1e-5)
    for got, want in zip(
        jax.grad(loss(conv_valid), (0, 1))(x, k),
        jax.grad(loss(reference), (0, 1))(x, k),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_decode_is_jittable_and_differentiable():
    config = make_config()
    params = init(config)
    dec = Decoder(config)

    @jax.jit
    def energy(z):
        return jnp.sum(jnp.square(dec.apply({"params": params["decoder"]}, z)))

    z = jax.random.normal(jax.random.key(2), (config.latent_dim,))
    g = jax.grad(energy)(z)
    assert g.shape == z.shape and np.all(np.isfinite(np.asarray(g)))
    # directional finite difference agrees with the gradient
    v = jax.random.normal(jax.random.key(3), z.shape)
    eps = 1e-2
    fd = (energy(z + eps * v) - energy(z - eps * v)) / (2 * eps)
    np.testing.assert_allclose(fd, jnp.dot(g, v), rtol=2e-2, atol=1e-3)


def test_linear_path_is_optional_and_decoder_is_small():
    with_lin = init(make_config(linear_path=True))
    without = init(make_config(linear_path=False))
    assert "linear" in with_lin["decoder"] and "linear" not in without["decoder"]
    from bayesda.prior.vae import NCEP_AIR

    n_dec = sum(v.size for v in jax.tree_util.tree_leaves(init(NCEP_AIR)["decoder"]))
    assert n_dec < 1_000_000


def test_residual_blocks_add_two_convs_per_stage_and_are_off_by_default():
    config = VAEConfig(nlat=8, nlon=16, latent_dim=3, channels=(4, 4), periodic=True, res_blocks=2)
    params = init(config)
    assert {"res0_0a", "res0_1b", "res1_0a", "res1_1b"} <= set(params["decoder"])
    assert not any(k.startswith("res") for k in init(make_config())["decoder"])  # old models load
    assert VAEConfig.from_dict(config.to_dict()) == config
    z = jax.random.normal(jax.random.key(2), (5, 3))
    out = VAE(config).apply({"params": params}, z, method="decode")
    assert out.shape == (5, 8, 16) and np.all(np.isfinite(np.asarray(out)))
    # the blocks take part: zeroing one block's last kernel changes the output
    zeroed = jax.tree_util.tree_map(lambda a: a, params)
    zeroed["decoder"]["res1_1b"] = {
        k: jnp.zeros_like(v) for k, v in params["decoder"]["res1_1b"].items()
    }
    out0 = VAE(config).apply({"params": zeroed}, z, method="decode")
    assert float(jnp.max(jnp.abs(out - out0))) > 1e-6
    with pytest.raises(ValueError, match="res_blocks=-1"):
        VAEConfig(nlat=8, nlon=16, res_blocks=-1)


def test_kl_divergence_matches_closed_form():
    rng = np.random.default_rng(0)
    mean, logvar = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    var = np.exp(logvar)
    expected = 0.5 * np.sum(var + mean**2 - 1 - np.log(var), axis=-1)
    np.testing.assert_allclose(
        kl_divergence(jnp.asarray(mean), jnp.asarray(logvar)), expected, rtol=1e-5
    )
    assert float(kl_divergence(jnp.zeros(3), jnp.zeros(3))) == 0.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"latent_dim": 0}, "latent_dim=0"),
        ({"latent_dim": 1025}, "latent_dim=1025"),
        ({"channels": ()}, "channels"),
        ({"nlat": 1}, "nlat=1"),
    ],
    ids=["zero-latent", "big-latent", "no-channels", "tiny-grid"],
)
def test_config_rejects_bad_values(kwargs, match):
    base = {"nlat": 9, "nlon": 13}
    with pytest.raises(ValueError, match=match):
        VAEConfig(**{**base, **kwargs})


def test_config_accepts_latent_dims_of_the_simulated_weather_experiments():
    assert VAEConfig(nlat=32, nlon=64, latent_dim=256, periodic=True).latent_dim == 256


def test_config_dict_round_trip():
    config = make_config(periodic=True, channels=(8, 4))
    assert VAEConfig.from_dict(config.to_dict()) == config


def test_decode_supports_reverse_mode_hessian_but_not_pure_forward_mode():
    # conv_valid is a custom VJP: grad, jacrev and jax.hessian (forward over reverse, as
    # the Laplace approximation uses) work; pure forward mode (jvp, jacfwd) does not.
    config = make_config()
    params = init(config)
    dec = Decoder(config)

    def f(z):
        return jnp.sum(jnp.sin(dec.apply({"params": params["decoder"]}, z)))

    z = jax.random.normal(jax.random.key(4), (config.latent_dim,))
    h = jax.hessian(f)(z)
    h_rev = jax.jacrev(jax.jacrev(f))(z)
    np.testing.assert_allclose(h, h_rev, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h, h.T, rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jacfwd(f)(z)
