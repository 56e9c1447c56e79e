"""Opt-in process-level JAX set-up: host devices and the persistent compilation cache.

``import bayesda`` changes nothing in the process; call these explicitly (the ``bayesda``
command line, the demo, the analysis scripts and the test suite do), as early as possible
and before the first JAX computation::

    import bayesda
    bayesda.set_host_device_count()   # one CPU device per NUTS chain
    bayesda.enable_compilation_cache()

Host devices: on a CPU-only host, NUTS chains run fastest with one XLA host device per
chain (:mod:`bayesda.inference.sampler` splits the chains over the devices). By default we ask for
``max(cores, 4)`` devices so that the default 4 chains run side by side even on a 2-core
machine (see ``analysis/assimilation_speed/results/bench_assimilation.md`` for 2 vs 4 devices).
XLA reads ``--xla_force_host_platform_device_count`` only at backend start-up, so the flag
is added to ``XLA_FLAGS`` and takes effect only if no JAX computation ran yet (importing jax
is fine). This is the same mechanism as :func:`numpyro.set_host_device_count`.
On a GPU host the flag only adds CPU devices, which the default (GPU) backend ignores.

Compilation cache: :mod:`bayesda.inference.sampler` compiles one program per model, settings and
shape, reused within a process. JAX's persistent compilation cache keys executables on the
HLO, so a later process with the same shapes loads the executable instead of compiling it
(measured: 5.1 s -> 0.6 s for a small model). The cache is not size-capped (JAX's cap needs
the ``filelock`` package); it holds a few MB per model and may be deleted at any time.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

__all__ = [
    "default_cache_dir",
    "enable_compilation_cache",
    "set_host_device_count",
]

_FLAG = "--xla_force_host_platform_device_count"
_OFF = ("off", "0", "false", "no")


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())


def set_host_device_count(n: int | None = None) -> int | None:
    """Ask XLA for ``n`` CPU host devices (default ``max(cores, 4)``).

    Does nothing when ``XLA_FLAGS`` already sets the device count (the user's choice wins).
    Must run before the first JAX computation; afterwards it cannot take effect and warns
    (only if the running backend has a different number of CPU devices).

    Args:
      n: number of host devices; None: ``max(os.cpu_count(), 4)``.

    Returns:
      The requested count, or None when the user's ``XLA_FLAGS`` already set one.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG.lstrip("-") in flags:
        return None
    n = int(n or max(os.cpu_count() or 1, 4))
    if n < 1:
        raise ValueError(f"need n >= 1 host devices, got {n}")
    if _backends_started():
        import jax

        have = jax.local_device_count("cpu")
        if have != n:
            warnings.warn(
                f"set_host_device_count({n}) called after JAX started with {have} CPU "
                "device(s); call it before the first JAX computation",
                RuntimeWarning,
                stacklevel=2,
            )
        return n
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={n}".strip()
    return n


def default_cache_dir() -> Path | None:
    """``$BAYESDA_JAX_CACHE``, else ``$XDG_CACHE_HOME/bayesda/jax`` or ``~/.cache/bayesda/jax``.

    None when ``BAYESDA_JAX_CACHE`` is ``off`` (or 0, false, no).
    """
    where = os.environ.get("BAYESDA_JAX_CACHE", "")
    if where.lower() in _OFF:
        return None
    if where:
        return Path(where)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bayesda" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Enable JAX's persistent compilation cache (see the module docstring).

    Args:
      path: cache directory; None: keep a ``JAX_COMPILATION_CACHE_DIR`` the user set,
        else :func:`default_cache_dir` (``BAYESDA_JAX_CACHE=off`` disables it).

    Returns:
      The cache directory in use, or None when disabled.
    """
    if path is None:
        if "JAX_COMPILATION_CACHE_DIR" in os.environ:
            return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
        path = default_cache_dir()
        if path is None:
            return None
    where = str(path)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = where
    # Cache even the small programs: numpyro's eager model initialisation compiles ~100 of
    # them one by one (measured 12.6 s in a fresh process, 3.6 s with them cached).
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    if "jax" in sys.modules:  # jax read the environment on import: set its config too
        import jax

        jax.config.update("jax_compilation_cache_dir", where)
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs",
            float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
        )
        jax.config.update(
            "jax_persistent_cache_min_entry_size_bytes",
            int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]),
        )
    return Path(where)
