"""Host values to device arrays without compiling a program.

``jnp.asarray`` (and ``jnp.array``) of a NumPy array is an XLA program in jax 0.10
(``lax.stage``): one per new shape and dtype, which a fresh process must lower and fetch
from the compilation cache. On the project's 2-core machine that was 10-50 ms per array
(``analysis/demo/results/demo_overhead.md``): 34 of the 89 programs a demo process lowered.
:func:`jax.device_put` copies the buffer without a program and canonicalises the dtype the
same way (float64 to float32 unless ``jax_enable_x64``).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["to_device"]


def to_device(x: Any, dtype: Any = None) -> Any:
    """``x`` (an array, a scalar or a pytree of them) as device arrays, like ``jnp.asarray``.

    JAX arrays pass through unchanged (or are cast when ``dtype`` differs); host values are
    copied with :func:`jax.device_put`. ``None`` leaves stay ``None``.
    """

    def one(leaf):
        if isinstance(leaf, jax.Array):
            return leaf if dtype is None or leaf.dtype == dtype else leaf.astype(dtype)
        return jax.device_put(np.asarray(leaf, dtype))

    return jax.tree.map(one, x)
