"""The disk cache of exported programs (bayesda.runtime.export): same results, right keys,
safe fallbacks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesda.inference import sampler
from bayesda.prior.checkpoint import load_model
from bayesda.runtime import export as aot
from bayesda.settings import SamplerSettings

_REAL_CACHE_DIR = aot.cache_dir


@pytest.fixture
def where(tmp_path, monkeypatch):
    d = tmp_path / "exported"
    monkeypatch.setattr(aot, "cache_dir", lambda: d)
    return d


@jax.jit
def _f(x, y):
    return jnp.sin(x) @ y + 1.0


def _args():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), jnp.asarray(
        rng.normal(size=4), jnp.float32
    )


def test_no_key_is_the_jitted_function_itself():
    assert aot.cached(_f, "f", None) is _f


def test_export_then_load_gives_identical_results(where):
    args = _args()
    first = aot.cached(_f, "f", ("k",))
    a = first(*args)
    assert list(first.sources.values()) == ["exported"]
    assert len(list(where.glob("f-*.jaxexp"))) == 1
    later = aot.cached(_f, "f", ("k",))  # what a new process does
    b = later(*args)
    assert list(later.sources.values()) == ["loaded"]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(_f(*args)))
    np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
    # a new shape is a new program; the same shape is reused in memory
    later(*(jnp.concatenate([x, x]) if x.ndim == 2 else x for x in args))
    later(*args)
    assert later._cache_size() == 2
    assert len(list(where.glob("f-*.jaxexp"))) == 2


def test_key_and_environment_change_the_entry(where, monkeypatch):
    args = _args()
    aot.cached(_f, "f", ("k",))(*args)
    other = aot.cached(_f, "f", ("other",))
    other(*args)
    assert list(other.sources.values()) == ["exported"]
    monkeypatch.setattr(aot, "_source_digest", lambda: "edited source")
    edited = aot.cached(_f, "f", ("k",))
    edited(*args)
    assert list(edited.sources.values()) == ["exported"]
    assert len(list(where.glob("f-*.jaxexp"))) == 3


def test_unreadable_entry_is_exported_again(where):
    args = _args()
    aot.cached(_f, "f", ("k",))(*args)
    (path,) = where.glob("f-*.jaxexp")
    path.write_bytes(b"not a program")
    again = aot.cached(_f, "f", ("k",))
    np.testing.assert_array_equal(np.asarray(again(*args)), np.asarray(_f(*args)))
    assert list(again.sources.values()) == ["exported"]
    assert aot.cached(_f, "f", ("k",))(*args) is not None  # rewritten, now loadable


def test_off_and_inside_a_trace_use_plain_jit(where, monkeypatch):
    args = _args()
    monkeypatch.setenv("BAYESDA_AOT", "off")
    monkeypatch.setattr(aot, "cache_dir", _REAL_CACHE_DIR)  # it reads BAYESDA_AOT
    off = aot.cached(_f, "f", ("k",))
    off(*args)
    assert list(off.sources.values()) == ["jit"]
    monkeypatch.delenv("BAYESDA_AOT")
    inner = aot.cached(_f, "f", ("k",))
    out = jax.jit(lambda x, y: inner(x, y) * 2)(*args)  # traced: not cached
    np.testing.assert_allclose(np.asarray(out), 2 * np.asarray(_f(*args)), rtol=1e-6)
    assert inner._cache_size() == 0


def test_unexportable_function_falls_back(where):
    @jax.jit
    def with_callback(x):
        return jax.pure_callback(
            lambda a: np.asarray(a) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x
        )

    f = aot.cached(with_callback, "cb", ("k",))
    np.testing.assert_array_equal(np.asarray(f(jnp.ones(3))), 2 * np.ones(3))
    assert list(f.sources.values()) == ["jit"]


def test_checkpoint_fingerprint_follows_the_content(saved, tmp_path):
    path, params, mean, sd, rep = saved
    a, b = load_model(path), load_model(path)
    assert aot.fingerprint(a.decode) is not None
    assert aot.fingerprint(a.decode) == aot.fingerprint(b.decode)
    from bayesda.prior.checkpoint import save_model
    from bayesda.testing import TINY_VAE as CONFIG
    from bayesda.testing import TINY_VAE_GRID as GRID
    from bayesda.testing import vae_params as make_params

    other = save_model(
        tmp_path / "other",
        params=make_params(seed=5),
        config=CONFIG,
        grid=GRID,
        norm_mean=mean,
        norm_sd=sd,
        repr_error=rep,
    )
    assert aot.fingerprint(load_model(other).decode) != aot.fingerprint(a.decode)
    assert aot.fingerprint(jax.jit(lambda z: a.decode(z))) is None  # a rebuilt decoder: none


def _gauss_potential(x, args):
    mu, prec = args
    d = x - mu
    return 0.5 * d @ prec @ d


def test_sampler_programs_load_from_disk_with_identical_draws(where):
    dim, batch = 3, 4
    rng = np.random.default_rng(1)
    args = (
        jnp.asarray(rng.normal(size=(batch, dim)), jnp.float32),
        jnp.asarray(np.tile(np.eye(dim), (batch, 1, 1)), jnp.float32),
    )
    config = SamplerSettings(num_warmup=10, num_samples=20)
    call = dict(
        potential=_gauss_potential,
        args=args,
        keys=sampler.batch_keys([0], batch),
        x0=np.zeros((batch, dim), np.float32),
        inv_mass=np.tile(np.eye(dim, dtype=np.float32), (batch, 1, 1)),
        settings=config,
        cache_key=("gauss", "test"),
    )
    first = sampler.run_nuts(**call)
    n_files = len(list(where.glob("nuts-*.jaxexp")))
    assert n_files == 3  # init, the warmup segment, the sampling segment
    sampler._PROGRAMS.clear()  # what a new process has
    second = sampler.run_nuts(**call)
    plain = sampler.run_nuts(**{**call, "cache_key": None})
    assert len(list(where.glob("nuts-*.jaxexp"))) == n_files
    for got in (second, plain):
        np.testing.assert_array_equal(got.x, first.x)
        np.testing.assert_array_equal(got.num_steps, first.num_steps)


def test_an_exported_program_that_fails_to_run_falls_back(where, monkeypatch):
    args = _args()
    f = aot.cached(_f, "f", ("k",))

    def broken(self, exp):
        def call(*a):
            raise RuntimeError("cannot compile here")

        return call

    monkeypatch.setattr(aot.Cached, "_wrap", broken)
    np.testing.assert_array_equal(np.asarray(f(*args)), np.asarray(_f(*args)))
    assert list(f.sources.values()) == ["jit"]


def test_unused_entries_are_pruned_when_a_program_is_exported(where):
    import os
    import time

    args = _args()
    aot.cached(_f, "f", ("used",))(*args)
    (used,) = where.glob("f-*.jaxexp")
    old = time.time() - (aot.MAX_AGE_DAYS + 1) * 86400
    stale = where / "f-stale.jaxexp"
    stale.write_bytes(b"from an older version")
    crashed = where / ".f-x.jaxexp.123.tmp"
    crashed.write_bytes(b"interrupted write")
    for p in (used, stale, crashed):
        os.utime(p, (old, old))
    loaded = aot.cached(_f, "f", ("used",))
    loaded(*args)  # a load marks its entry used; it exports nothing, so prunes nothing
    assert list(loaded.sources.values()) == ["loaded"]
    assert stale.exists() and used.stat().st_mtime > old + 86400
    aot.cached(_f, "f", ("new",))(*args)  # an export prunes
    assert used.exists() and not stale.exists() and not crashed.exists()
    assert len(list(where.glob("f-*.jaxexp"))) == 2
    assert aot.prune(where / "missing") == 0
