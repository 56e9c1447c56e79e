"""A disk cache of exported JAX programs, so that a new process skips tracing and lowering.

JAX's persistent compilation cache (:func:`bayesda.enable_compilation_cache`) saves XLA's
compile step, but it is keyed on the lowered program: every new process must still trace
the Python code to a jaxpr and lower it to StableHLO before it can look the executable up.
For the MAP optimiser and the sampler's three programs that is 5-6 s of every fresh
``bayesda assimilate`` or ``bayesda demo`` on the project's 2-core machine
(``analysis/demo/results/demo_time_aot.md``). :func:`jax.export.export` serialises the lowered
program; a later process deserialises it (milliseconds) and calls it, and the compilation of
the call still hits the persistent cache.

A program may only be reused while nothing it closes over has changed, and a Python
callable does not say what it closes over. So a program is cached only under a key that the
caller builds from content:

* the decoder's fingerprint (:func:`register` / :func:`fingerprint`), a hash of the trained
  weights, normalisation and configuration that :func:`bayesda.prior.checkpoint.load_model` binds
  to the ``decode`` function object itself (a prior rebuilt around another ``decode`` has
  no fingerprint, so its programs are never cached);
* the caller's static settings (model options, sampler settings, device layout);
* the argument structure, shapes and dtypes;
* the environment: jax, jaxlib, numpyro, flax and optax versions, the backend and its
  device count, ``jax_enable_x64``, and a hash of bayesda's own source files (any code
  change invalidates every entry).

Anything that fails (no ``flatbuffers`` package, an unreadable or foreign entry, a program
``jax.export`` cannot serialise) falls back to the ordinary jitted function for that
signature, with a log message; results are the same either way (bit for bit on this
machine: ``tests/test_aot.py``). Entries live in ``exported/`` beside the compilation cache
(``$BAYESDA_JAX_CACHE``, default ``~/.cache/bayesda/jax``), a few MB each (the decoder's
weights are constants of the program); delete them at any time. Every change of bayesda's
source, a library version or the settings writes new entries and orphans the old ones, so
whenever a program is exported, entries unused for :data:`MAX_AGE_DAYS` days are deleted
(a load marks an entry used). ``BAYESDA_AOT=off`` disables the cache; it is also off
whenever the compilation cache is.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import jax

__all__ = [
    "MAX_AGE_DAYS",
    "Cached",
    "cache_dir",
    "cached",
    "environment",
    "fingerprint",
    "prune",
    "register",
    "register_namedtuples",
]

log = logging.getLogger(__name__)

_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SUFFIX = ".jaxexp"
_OFF = ("off", "0", "false", "no")

MAX_AGE_DAYS = 30
"""Entries (and interrupted writes) unused for this many days are deleted by :func:`prune`."""


def register(fn: Callable, digest: str) -> None:
    """Bind a content fingerprint to the function object ``fn`` (weakly)."""
    _FINGERPRINTS[fn] = str(digest)


def fingerprint(fn: Callable) -> str | None:
    """The fingerprint :func:`register` bound to ``fn``, or None."""
    try:
        return _FINGERPRINTS.get(fn)
    except TypeError:  # not weakly referenceable
        return None


def cache_dir() -> Path | None:
    """Where exported programs go: ``exported/`` in JAX's compilation cache directory.

    None (no caching) when ``BAYESDA_AOT`` is off or no compilation cache is configured.
    """
    if os.environ.get("BAYESDA_AOT", "").lower() in _OFF:
        return None
    where = jax.config.jax_compilation_cache_dir
    return Path(where) / "exported" if where else None


@functools.cache
def _source_digest() -> str:
    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def environment() -> tuple:
    """What every key includes: library versions, backend, devices, x64, bayesda's source."""
    import flax
    import jaxlib
    import numpyro
    import optax

    return (
        jax.__version__,
        jaxlib.__version__,
        numpyro.__version__,
        flax.__version__,
        optax.__version__,
        jax.default_backend(),
        jax.device_count(),
        bool(jax.config.jax_enable_x64),
        _source_digest(),
    )


def _signature(leaves: list, tree) -> tuple:
    avals = []
    for leaf in leaves:
        a = jax.typeof(leaf)
        avals.append((tuple(a.shape), str(a.dtype), bool(getattr(a, "weak_type", False))))
    return str(tree), tuple(avals)


_registered_namedtuples = False


def register_namedtuples(*types: type) -> None:
    """Let exported programs take and return these namedtuple types (named by module and
    class); registering one twice is harmless."""
    for nt in types:
        try:
            jax.export.register_namedtuple_serialization(
                nt, serialized_name=f"{nt.__module__}.{nt.__name__}"
            )
        except ValueError:  # registered already (by another import of this module)
            pass


def _register_namedtuples() -> None:
    """numpyro's sampler state is a tree of namedtuples; export must know how to name them."""
    global _registered_namedtuples
    if _registered_namedtuples:
        return
    from numpyro.infer.hmc import HMCState
    from numpyro.infer.hmc_util import HMCAdaptState

    register_namedtuples(HMCState, HMCAdaptState)
    _registered_namedtuples = True


def prune(where: Path, max_age_days: float = MAX_AGE_DAYS, now: float | None = None) -> int:
    """Delete entries in ``where`` not used for ``max_age_days``; return how many went.

    "Used" is the file's modification time, which a load refreshes. Leftovers of
    interrupted writes (``.*.tmp``) age the same way. Errors (a file another process just
    removed, a read-only directory) are ignored: pruning is housekeeping.
    """
    import time

    cutoff = (time.time() if now is None else now) - max_age_days * 86400.0
    removed = 0
    try:
        paths = [*where.glob(f"*{_SUFFIX}"), *where.glob(f".*{_SUFFIX}.*.tmp")]
    except OSError:
        return 0
    for path in paths:
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            pass
    if removed:
        log.info(
            "bayesda.runtime.export: removed %d entries unused for %s days", removed, max_age_days
        )
    return removed


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # a read-only cache still loads
        pass


class Cached:
    """A jitted function whose lowered programs are kept on disk (see the module docstring).

    Call it like the jitted function. Holds one callable per argument signature.
    """

    def __init__(self, jitted: Callable, name: str, key: Hashable, sharding: Any = None):
        self.jitted = jitted
        self.name = name
        self.key = key
        self.sharding = sharding
        self._calls: dict = {}
        self.sources: dict = {}  # signature -> "loaded" / "exported" / "jit"

    def __call__(self, *args):
        leaves, tree = jax.tree.flatten(args)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return self.jitted(*args)  # called inside another trace: nothing to cache
        sig = _signature(leaves, tree)
        fn = self._calls.get(sig)
        if fn is not None:
            return fn(*args)
        fn = self._calls[sig] = self._resolve(sig, args)
        if fn is self.jitted:
            return fn(*args)
        try:  # the first call compiles the exported program: any failure, the plain path
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - a genuine error repeats below and propagates
            log.info("bayesda.runtime.export: exported %s failed (%s); using jit", self.name, err)
            self.sources[sig] = "jit"
            fn = self._calls[sig] = self.jitted
            return fn(*args)

    def _cache_size(self) -> int:
        return len(self._calls)

    def _path(self, where: Path, sig: tuple) -> Path:
        h = hashlib.sha256(repr((environment(), self.name, self.key, sig)).encode())
        return where / f"{self.name}-{h.hexdigest()[:32]}{_SUFFIX}"

    def _wrap(self, exp) -> Callable:
        s = self.sharding
        return (
            jax.jit(exp.call, in_shardings=s, out_shardings=s)
            if s is not None
            else jax.jit(exp.call)
        )

    def _resolve(self, sig: tuple, args: tuple) -> Callable:
        where = cache_dir()
        if where is None:
            self.sources[sig] = "jit"
            return self.jitted
        try:
            from jax import export

            _register_namedtuples()
            path = self._path(where, sig)
        except Exception as err:  # noqa: BLE001 - any failure: the plain jitted function
            log.info("bayesda.runtime.export: %s not cached (%s)", self.name, err)
            self.sources[sig] = "jit"
            return self.jitted
        if path.is_file():
            try:
                exp = export.deserialize(bytearray(path.read_bytes()))
                self.sources[sig] = "loaded"
                _touch(path)  # used: not pruned
                return self._wrap(exp)
            except Exception as err:  # noqa: BLE001 - unreadable entry: export it again
                log.info("bayesda.runtime.export: %s unreadable (%s); exporting again", path, err)
        try:
            exp = export.export(self.jitted)(*args)
            data = exp.serialize()
        except Exception as err:  # noqa: BLE001 - not exportable: the plain jitted function
            log.info("bayesda.runtime.export: %s not exportable (%s)", self.name, err)
            self.sources[sig] = "jit"
            return self.jitted
        try:
            where.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # atomic: a concurrent reader sees all or nothing
        except OSError as err:
            log.info("bayesda.runtime.export: cannot write %s (%s)", path, err)
        prune(where)  # a new entry often orphans old ones (a new version or setting)
        self.sources[sig] = "exported"
        return self._wrap(exp)


def cached(jitted: Callable, name: str, key: Hashable | None, *, sharding: Any = None) -> Callable:
    """``jitted`` with its lowered programs cached on disk under ``key``.

    Args:
      jitted: a :func:`jax.jit`-wrapped function (positional arguments only).
      name: a short name (file names, logs).
      key: everything, besides the arguments' shapes and the environment, that the program
        depends on; None: do not cache (``jitted`` is returned as is).
      sharding: a sharding for every input and output (multi-device programs), or None.
    """
    if key is None:
        return jitted
    return Cached(jitted, name, key, sharding)
