"""Deterministic derived arrays cached on disk, verified on every read.

Some inputs bayesda derives are fixed functions of a few settings but slow to compute in a
fresh process: the land fraction of a grid (:func:`bayesda.geo.landmask.land_fraction`) needs
the 30 arc-second land mask, whose import alone takes about 4.5 s. :func:`cached_arrays`
computes such arrays once and keeps them in ``CACHE_ROOT/KIND/DIGEST.npz``:

* the file name is the SHA-256 of the key (a JSON-able dict naming everything the result
  depends on: the inputs, the source package's version, the algorithm's version), and the
  file stores that key again, so a different input never reads another's entry;
* the file stores the SHA-256 of its arrays; an entry that cannot be read, whose key differs
  or whose arrays do not match their digest (truncated, altered) is recomputed and
  rewritten, never used;
* entries are ``.npz`` read with ``allow_pickle=False`` (nothing executes on load) and
  written atomically (:func:`bayesda.runtime.files.atomic_write`), so a crash leaves the old entry
  or none; two processes writing the same entry write the same bytes;
* the cache is optional: where the directory cannot be written the result is returned
  uncached, and ``BAYESDA_DISK_CACHE=off`` turns it off.

The root is ``$BAYESDA_CACHE`` (as for the simulated weather of :mod:`bayesda.sim.heldsuarez`),
else ``$XDG_CACHE_HOME/bayesda`` or ``~/.cache/bayesda``. Entries are small (a grid's
land fraction is ``nlat * nlon`` float64) and may be deleted at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from bayesda.runtime.files import OutputError, atomic_write

__all__ = ["cache_root", "cached_arrays", "entry_path"]

_OFF = ("off", "0", "false", "no")
_KEY = "__key__"
_DIGEST = "__sha256__"


def cache_root() -> Path | None:
    """The cache directory (see the module docstring); None when turned off."""
    if os.environ.get("BAYESDA_DISK_CACHE", "").lower() in _OFF:
        return None
    where = os.environ.get("BAYESDA_CACHE")
    if where:
        return Path(where)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bayesda"


def _key_text(key: Mapping) -> str:
    try:
        return json.dumps(key, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"cache key {key!r} is not plain JSON ({err})") from err


def entry_path(kind: str, key: Mapping) -> Path | None:
    """Where the entry of ``key`` lives (None when the cache is off)."""
    root = cache_root()
    if root is None:
        return None
    if not kind.isidentifier():
        raise ValueError(f"{kind=} must be a plain name (letters, digits, underscores)")
    digest = hashlib.sha256(_key_text(key).encode()).hexdigest()
    return root / kind / f"{digest[:40]}.npz"


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read(path: Path, key_text: str) -> dict[str, np.ndarray] | None:
    """The entry's arrays, or None when it is missing or not valid for ``key_text``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {name: f[name] for name in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None
    key = stored.pop(_KEY, None)
    digest = stored.pop(_DIGEST, None)
    if key is None or digest is None or str(key) != key_text:
        return None
    if str(digest) != _digest(stored):
        return None
    return stored


def _write(path: Path, key_text: str, arrays: Mapping[str, np.ndarray]) -> None:
    # Optional: a cache that cannot be written (read-only home, full disk) costs only time.
    with contextlib.suppress(OSError, OutputError), atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, **{_KEY: np.str_(key_text), _DIGEST: np.str_(_digest(arrays))})


def cached_arrays(
    kind: str, key: Mapping, compute: Callable[[], Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """``compute()``, or the verified copy of its result from an earlier process.

    Args:
      kind: the cache's sub-directory (a plain name, e.g. ``"land_fraction"``).
      key: JSON-able dict of everything the result depends on (inputs, versions).
      compute: returns a dict of numeric NumPy arrays; called when no valid entry exists.

    Returns:
      The arrays (fresh, writable copies).

    Raises:
      TypeError: ``key`` is not plain JSON, or ``compute`` returned a non-numeric array
        (object arrays cannot be stored without pickle).
    """
    key_text = _key_text(key)
    path = entry_path(kind, key)
    if path is not None:
        hit = _read(path, key_text)
        if hit is not None:
            return hit
    arrays = {name: np.asarray(a) for name, a in compute().items()}
    for name, a in arrays.items():
        if name.startswith("__") or a.dtype.hasobject:
            raise TypeError(f"cannot cache array {name!r} of dtype {a.dtype} in {kind!r}")
    if path is not None:
        _write(path, key_text, arrays)
    return arrays
