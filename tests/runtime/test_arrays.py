"""Host values reach the device without compiling a program (bayesda.runtime.arrays)."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesda.runtime.arrays import to_device


@pytest.fixture
def compiles(caplog):
    """The names of the programs JAX compiles inside the test (``jax_log_compiles``)."""
    jax.config.update("jax_log_compiles", True)
    caplog.set_level(logging.DEBUG)
    try:
        yield lambda: [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    finally:
        jax.config.update("jax_log_compiles", False)


def test_to_device_compiles_nothing(compiles):
    # shapes no other test uses, so nothing is in this process's caches yet
    values = (np.arange(7 * 13, dtype=np.float64).reshape(7, 13), np.ones(11, bool), 3)
    out = to_device(values)
    assert compiles() == []
    # the capture works: a new jitted program is logged
    jax.jit(lambda x: x * 2 + 1)(out[0]).block_until_ready()
    assert len(compiles()) == 1


def test_to_device_matches_jnp_asarray():
    tree = {"a": np.linspace(0, 1, 5), "b": [np.int64(4), np.zeros((2, 3), np.float32)], "c": None}
    got, want = to_device(tree), jax.tree.map(jnp.asarray, tree)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert isinstance(g, jax.Array)
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_to_device_passes_jax_arrays_through_and_casts():
    x = jnp.arange(4.0)
    assert to_device(x) is x
    assert to_device(x, jnp.float32) is x
    y = to_device(np.arange(3), np.float32)
    assert y.dtype == jnp.float32
    assert to_device(jnp.arange(3), jnp.float32).dtype == jnp.float32
