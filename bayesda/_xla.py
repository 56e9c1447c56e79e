"""Process-level JAX set-up that must happen before :mod:`jax` is first imported.

Host devices: on a CPU-only host, NUTS chains run fastest with one XLA host device per
chain (:mod:`bayesda.sampler` splits the chains over the devices). We ask for
``max(cores, 4)`` devices so that the default 4 chains run side by side even on a 2-core
machine (see ``analysis/results/bench_assimilation.md`` for 2 vs 4 devices).
XLA reads ``--xla_force_host_platform_device_count`` only at backend start-up, so we add it
to ``XLA_FLAGS`` here, unless the user already set it.
On a GPU host the flag only adds CPU devices, which the default (GPU) backend ignores.

Compilation cache: :mod:`bayesda.sampler` compiles one program per model, settings and
shape, reused within a process. JAX's persistent compilation cache keys executables on the
HLO, so a later process with the same shapes loads the executable instead of compiling it
(measured: 5.1 s -> 0.6 s for a small model). The
cache is not size-capped (JAX's cap needs the ``filelock`` package); it holds a few MB per
model and may be deleted at any time. We point it at
``$BAYESDA_JAX_CACHE`` (default ``$XDG_CACHE_HOME/bayesda/jax`` or
``~/.cache/bayesda/jax``) unless the user configured JAX's cache already; set
``BAYESDA_JAX_CACHE=off`` to disable it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def configure_host_devices(n: int | None = None) -> None:
    """Ask XLA for ``n`` CPU devices (default ``max(cores, 4)``), if jax is not loaded yet."""
    if "jax" in sys.modules:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    n = n or max(os.cpu_count() or 1, 4)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


def configure_compilation_cache() -> None:
    """Enable JAX's persistent compilation cache (see the module docstring)."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    where = os.environ.get("BAYESDA_JAX_CACHE", "")
    if where.lower() in ("off", "0", "false", "no"):
        return
    if not where:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        where = str(Path(base) / "bayesda" / "jax")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = where
    # Cache even the small programs: numpyro's eager model initialisation compiles ~100 of
    # them one by one (measured 12.6 s in a fresh process, 3.6 s with them cached).
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
