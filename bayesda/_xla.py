"""Process-level JAX set-up that must happen before :mod:`jax` is first imported.

On a CPU-only host, NUTS chains run fastest with ``chain_method="parallel"`` over one
XLA host device per core (measured ~2x over "vectorized" on 2 cores, see
``../shared/FINDINGS.md``). XLA reads ``--xla_force_host_platform_device_count`` only at
backend start-up, so we add it to ``XLA_FLAGS`` here, unless the user already set it.
On a GPU host the flag only adds CPU devices, which the default (GPU) backend ignores.
"""

from __future__ import annotations

import os
import sys


def configure_host_devices(n: int | None = None) -> None:
    """Ask XLA for ``n`` CPU devices (default: the number of cores), if jax is not loaded yet."""
    if "jax" in sys.modules:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    n = n or os.cpu_count() or 1
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
