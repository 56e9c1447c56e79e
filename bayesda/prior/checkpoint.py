"""Saving and loading trained VAE priors without pickle.

A model is a directory::

    model.json       VAEConfig, grid, variable and units, normalisation, split, training
                     provenance, metrics, package versions, created_at, and the SHA-256
                     of every other file below
    params.npz       the parameter tree, flattened: key = '/'-joined path
    norm.npz         per-pixel ``mean`` and ``sd`` (K) of the training anomalies
    repr_error.npz   ``factor`` [rank, nlat, nlon] K and ``diag_var`` [nlat, nlon] K^2; or,
                     for a stationary ``C`` (:func:`bayesda.prior.representation.stationary`),
                     its parameters ``structure="stationary"``, ``sd`` [nlat, nlon] K,
                     ``length_scale_km``, ``kind``, ``rank``, ``distance``, rebuilt at load;
                     or, for a homogeneous ``C`` on a doubly periodic grid
                     (:func:`bayesda.prior.representation.homogeneous`),
                     ``structure="homogeneous"``,
                     its eigenvalues ``power`` [nlat, nlon] K^2 and ``rank``
    climatology.nc   the climatology the anomalies are relative to (optional)
    surface_height.nc  the grid's surface height ``orog`` (m), for the lapse-rate
                     adjustment of station observations (optional; :mod:`bayesda.geo.orography`)
    MODEL_CARD.md    the human-readable card (optional)

A model is found by its directory or by its name (:func:`find_model`): the models shipped
with bayesda (``ncep-air``, ``hs-t21-tas``) travel inside the installed package, so
``load_model("ncep-air")`` works wherever bayesda is installed.

Nothing executes code on load: arrays are read with ``allow_pickle=False`` and the tree
is rebuilt from the keys, then checked against the shapes the config implies. Every file
that is loaded must be listed in model.json's hashes (:data:`LOADED_FILES`, and
:data:`OPTIONAL_FILES` when present) and is verified against its hash first, so a
truncated, altered or unlisted file is refused with a :class:`CheckpointError`. Writes go to a
temporary directory that is renamed into place.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pathlib
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import bayesda.runtime.export as aot
from bayesda.geo.grid import Grid
from bayesda.prior.generative import GenerativePrior
from bayesda.prior.representation import (
    HomogeneousSpec,
    RepresentationError,
    from_power,
    stationary_cached,
)
from bayesda.prior.vae import VAE, Decoder, Encoder, VAEConfig
from bayesda.runtime.arrays import to_device
from bayesda.runtime.files import MODEL_MARKER

__all__ = [
    "FORMAT_VERSION",
    "MODELS_ENV",
    "CheckpointError",
    "as_prior",
    "available_models",
    "check_target",
    "find_model",
    "flatten_params",
    "load_model",
    "model_search_path",
    "read_card",
    "save_model",
    "unflatten_params",
    "update_card",
]

FORMAT_VERSION = 1
_CARD = "model.json"
LOADED_FILES = ("params.npz", "norm.npz", "repr_error.npz")
OPTIONAL_FILES = ("climatology.nc", "surface_height.nc")
"""Files :func:`load_model` reads (plus :data:`OPTIONAL_FILES` when present): each must be
listed, with its SHA-256, in model.json."""
_PACKAGES = ("bayesda", "jax", "jaxlib", "flax", "optax", "numpyro", "numpy", "xarray")


class CheckpointError(ValueError):
    """A model directory is missing, incomplete, altered or inconsistent."""


def flatten_params(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten a nested dict of arrays to ``{'a/b/c': array}``.

    Raises:
      ValueError: a key contains '/' or a leaf is not an array.
    """
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        if "/" in str(key):
            raise ValueError(f"parameter name {key!r} contains '/'")
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, path + "/"))
        else:
            flat[path] = np.asarray(value)
    return flat


def unflatten_params(flat: Mapping[str, np.ndarray]) -> dict:
    """Inverse of :func:`flatten_params`."""
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise CheckpointError(f"parameter key {path!r} clashes with a leaf at {p!r}")
        node[leaf] = value
    return tree


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _expected_shapes(config: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape for ``config``: what ``params.npz`` must hold.

    Tracing the VAE's initialisation for them took 0.3-0.4 s of every model load; the shapes
    are a fixed function of the configuration, flax, jax and :mod:`bayesda.prior.vae`'s source,
    so they are kept in bayesda's disk cache (:func:`bayesda.runtime.diskcache.cached_arrays`).
    """
    import flax

    import bayesda.prior.vae as vae
    from bayesda.runtime.diskcache import cached_arrays

    key = {
        "config": config.to_dict(),
        "versions": {"flax": flax.__version__, "jax": jax.__version__},
        "vae_source": hashlib.sha256(pathlib.Path(vae.__file__).read_bytes()).hexdigest(),
    }
    stored = cached_arrays(
        "param_shapes",
        key,
        lambda: {k: np.asarray(v, np.int64) for k, v in _traced_shapes(config).items()},
    )
    return {k: tuple(int(n) for n in v) for k, v in stored.items()}


def _traced_shapes(config: VAEConfig) -> dict[str, tuple[int, ...]]:
    model = VAE(config)
    x = jax.ShapeDtypeStruct((1, config.nlat, config.nlon), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, jax.random.key(1)), x)
    flat = jax.tree_util.tree_flatten_with_path(shapes["params"])[0]
    return {"/".join(str(p.key) for p in path): tuple(v.shape) for path, v in flat}


def check_target(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse to write a model at ``path`` unless it is absent, empty, or (with
    ``overwrite``) a bayesda model directory; never replace another directory.

    A directory is a bayesda model only if its model.json says so: the marker and a hash
    list covering every file (:func:`bayesda.runtime.files.model_dir_problem`).

    Raises:
      FileExistsError: ``path`` exists and ``overwrite`` is False.
      CheckpointError: ``path`` exists and is not a bayesda model directory (even with
        ``overwrite``).
    """
    from bayesda.runtime.files import model_dir_problem

    path = pathlib.Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return
    problem = model_dir_problem(path)
    if problem is not None:
        raise CheckpointError(
            f"{path} exists and is not a bayesda model directory ({problem}); refusing to "
            "replace it even with --overwrite: choose another path or remove it yourself"
        )
    if not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def _write_atomic(
    path: pathlib.Path, fill: Callable[[pathlib.Path], None], overwrite: bool, check: bool = True
):
    """Build the directory in a sibling temp dir with ``fill``, then rename it to ``path``.

    ``check=False`` only for a rewrite that copies every file of ``path`` (update_card)."""
    if check:
        check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a model is meant to be shared
        fill(tmp)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_repr_error(repr_error: RepresentationError, shape: tuple[int, int]) -> None:
    if repr_error.diag_var.shape != shape or repr_error.factor.shape[1:] != shape:
        raise ValueError(
            f"repr_error shapes {repr_error.factor.shape}, {repr_error.diag_var.shape} "
            f"do not match grid {shape}"
        )


def _save_repr_error(path: pathlib.Path, repr_error: RepresentationError) -> None:
    spec = repr_error.spec
    if isinstance(spec, HomogeneousSpec):
        np.savez(
            path,
            structure=np.array("homogeneous"),
            power=np.asarray(spec.power, np.float32),
            rank=np.array(spec.rank, np.int64),
        )
        return
    if spec is not None:
        np.savez(
            path,
            structure=np.array("stationary"),
            sd=np.asarray(spec.sd, np.float32),
            length_scale_km=np.array(spec.length_scale_km, np.float64),
            kind=np.array(spec.kind),
            rank=np.array(spec.rank, np.int64),
            distance=np.array(spec.distance),
        )
        return
    np.savez(
        path,
        factor=np.asarray(repr_error.factor, np.float32),
        diag_var=np.asarray(repr_error.diag_var, np.float32),
    )


def _load_repr_error(path: pathlib.Path, grid: Grid) -> RepresentationError:
    """Read repr_error.npz: the factor and diagonal, or a stationary ``C``'s parameters."""
    rep = _load_npz(path)
    try:
        if "structure" not in rep:
            out = RepresentationError(rep["factor"], rep["diag_var"])
        elif str(rep["structure"]) == "stationary":
            if rep["sd"].shape != grid.shape:
                raise CheckpointError(f"{path}: sd shape {rep['sd'].shape} != grid {grid.shape}")
            out = stationary_cached(
                rep["sd"],
                grid,
                float(rep["length_scale_km"]),
                str(rep["kind"]),
                rank=int(rep["rank"]),
                distance=str(rep["distance"]),
            )
        elif str(rep["structure"]) == "homogeneous":
            if rep["power"].shape != grid.shape:
                raise CheckpointError(
                    f"{path}: power shape {rep['power'].shape} != grid {grid.shape}"
                )
            out = from_power(rep["power"], rank=int(rep["rank"]))
        else:
            raise CheckpointError(f"{path}: unknown structure {str(rep['structure'])!r}")
    except CheckpointError:
        raise
    except KeyError as err:
        raise CheckpointError(f"{path}: missing array {err}") from err
    except ValueError as err:
        raise CheckpointError(f"{path}: bad {str(rep.get('structure'))} parameters: {err}") from err
    if out.diag_var.shape != grid.shape or out.factor.shape[1:] != grid.shape:
        raise CheckpointError(f"{path}: shapes do not match grid {grid.shape}")
    return out


def _save_surface_height(path: pathlib.Path, height, grid: Grid) -> None:
    from bayesda.geo.orography import to_dataset

    to_dataset(np.asarray(height), grid).to_netcdf(path, engine="netcdf4")


def _load_surface_height(path: pathlib.Path, grid: Grid) -> np.ndarray:
    import xarray as xr

    ds = xr.load_dataset(path, engine="netcdf4")
    if "orog" not in ds:
        raise CheckpointError(f"{path}: no 'orog' variable")
    height = ds["orog"].to_numpy().astype(np.float64)
    same = (
        height.shape == grid.shape
        and np.allclose(ds["lat"], grid.lat)
        and np.allclose(ds["lon"], grid.lon)
    )
    if not same:
        raise CheckpointError(f"{path}: surface height {height.shape} is not on the model grid")
    height.setflags(write=False)
    return height


def _finish_card(directory: pathlib.Path, card: dict) -> None:
    """Hash every file but model.json into ``card['files']`` and write model.json."""
    card = dict(card)
    card["files"] = {
        p.name: _sha256(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != _CARD
    }
    with open(directory / _CARD, "w") as f:
        json.dump(card, f, indent=2, sort_keys=False)
        f.write("\n")


def save_model(
    path: str | os.PathLike,
    *,
    params: Mapping,
    config: VAEConfig,
    grid: Grid,
    norm_mean: np.ndarray,
    norm_sd: np.ndarray,
    repr_error: RepresentationError,
    climatology: Any = None,
    surface_height: np.ndarray | None = None,
    card: Mapping[str, Any] | None = None,
    model_card: str | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write a trained VAE prior to the directory ``path`` (atomically).

    Args:
      path: the model directory to create.
      params: the full VAE parameter tree (``TrainResult.params``).
      config: the architecture.
      grid: the grid of the fields; must match ``config``.
      norm_mean: ``[nlat, nlon]`` training anomaly mean, K.
      norm_sd: ``[nlat, nlon]`` training anomaly SD, K (> 0).
      repr_error: the decoder's representation error, K.
      climatology: an object with ``to_netcdf(path)`` (a
        :class:`bayesda.data.climatology.Climatology`), or None.
      surface_height: ``[nlat, nlon]`` surface height, m (NaN where unknown;
        :func:`bayesda.geo.orography.surface_height`), or None.
      card: JSON-able provenance and metrics merged into model.json (e.g. ``name``,
        ``variable``, ``split``, ``training``, ``metrics``).
      model_card: Markdown text for MODEL_CARD.md.
      overwrite: replace an existing directory.

    Returns:
      The path written.

    Raises:
      ValueError: inconsistent shapes or non-finite values.
      FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = pathlib.Path(path)
    if grid.shape != (config.nlat, config.nlon):
        raise ValueError(f"grid {grid.shape} does not match config ({config.nlat}, {config.nlon})")
    if config.periodic != grid.periodic:
        raise ValueError(f"config.periodic={config.periodic} but grid.periodic={grid.periodic}")
    flat = flatten_params(jax.device_get(params))
    expected = _expected_shapes(config)
    _check_params(flat, expected)
    norm_mean = np.asarray(norm_mean, np.float32)
    norm_sd = np.asarray(norm_sd, np.float32)
    for name, a in (("norm_mean", norm_mean), ("norm_sd", norm_sd)):
        if a.shape != grid.shape or not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite with shape {grid.shape}, got {a.shape}")
    if np.any(norm_sd <= 0):
        raise ValueError(f"norm_sd must be > 0, min is {norm_sd.min()}")
    _check_repr_error(repr_error, grid.shape)

    meta = {
        **MODEL_MARKER,
        "format_version": FORMAT_VERSION,
        "name": path.name,
        "variable": {
            "name": "tas",
            "units": "K",
            "long_name": "near-surface air temperature anomaly",
        },
        **dict(card or {}),
        "vae_config": config.to_dict(),
        "grid": grid.to_dict(),
        "normalisation": "x_norm = (anomaly - norm.npz:mean) / norm.npz:sd, per pixel, "
        "training split; decode() returns anomalies in K",
        "versions": _versions(),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }

    def fill(d: pathlib.Path):
        np.savez(d / "params.npz", **flat)
        np.savez(d / "norm.npz", mean=norm_mean, sd=norm_sd)
        _save_repr_error(d / "repr_error.npz", repr_error)
        if climatology is not None:
            climatology.to_netcdf(d / "climatology.nc")
        if surface_height is not None:
            _save_surface_height(d / "surface_height.nc", surface_height, grid)
        if model_card is not None:
            (d / "MODEL_CARD.md").write_text(model_card)
        _finish_card(d, meta)

    _write_atomic(path, fill, overwrite)
    return path


def _check_params(flat: Mapping[str, np.ndarray], expected: Mapping[str, tuple]) -> None:
    missing = sorted(set(expected) - set(flat))
    extra = sorted(set(flat) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"parameters do not match the config: missing {missing}, unexpected {extra}"
        )
    for k, shape in expected.items():
        if tuple(flat[k].shape) != shape:
            raise CheckpointError(
                f"parameter {k!r} has shape {flat[k].shape}, config implies {shape}"
            )
        if not np.all(np.isfinite(flat[k])):
            raise CheckpointError(f"parameter {k!r} has non-finite values")


def read_card(path: str | os.PathLike, *, verify: bool = True) -> dict:
    """Read model.json and (by default) check every listed file's SHA-256.

    Raises:
      CheckpointError: missing directory or model.json, unreadable JSON, a listed file
        missing, or a hash mismatch.
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise CheckpointError(f"model directory {str(path)!r} does not exist")
    try:
        card = json.loads((path / _CARD).read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"{path} has no {_CARD}; not a bayesda model") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path / _CARD} is not valid JSON: {err}") from err
    if card.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version={card.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    files = card.get("files")
    if not isinstance(files, dict) or "params.npz" not in files:
        raise CheckpointError(f"{path / _CARD} lists no file hashes")
    if verify:
        for name, digest in files.items():
            f = path / name
            if pathlib.Path(name).name != name or not f.is_file():
                raise CheckpointError(f"{path}: file {name!r} listed in {_CARD} is missing")
            actual = _sha256(f)
            if actual != digest:
                raise CheckpointError(
                    f"{f}: SHA-256 {actual[:12]}... does not match {digest[:12]}... in {_CARD} "
                    "(file truncated or altered)"
                )
    return card


def _decoder_digest(config: VAEConfig, params: Mapping[str, np.ndarray], mean, sd) -> str:
    """A hash of everything ``decode`` computes with: the configuration, the weights (the
    encoder's too) and the normalisation. Keys the exported programs
    (:mod:`bayesda.runtime.export`)."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name, arr in [*sorted(params.items()), ("norm.mean", mean), ("norm.sd", sd)]:
        a = np.ascontiguousarray(arr)
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _load_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err


def update_card(
    path: str | os.PathLike,
    *,
    card: Mapping[str, Any] | None = None,
    model_card: str | None = None,
    repr_error: RepresentationError | None = None,
    surface_height: np.ndarray | None = None,
) -> pathlib.Path:
    """Verify a model, then rewrite its model.json (merging ``card``) and MODEL_CARD.md.

    For adding metrics measured after training, replacing the representation error
    (re-estimated with another structure) or adding a surface height
    (:mod:`bayesda.geo.orography`); the other files are copied unchanged and the hashes
    recomputed. Atomic like :func:`save_model`.
    """
    path = pathlib.Path(path)
    meta = read_card(path)
    if repr_error is not None:
        _check_repr_error(repr_error, (len(meta["grid"]["lat"]), len(meta["grid"]["lon"])))
    meta.update({**dict(card or {}), **MODEL_MARKER})
    meta.pop("files", None)

    def fill(d: pathlib.Path):
        for f in path.iterdir():
            if f.is_file() and f.name != _CARD:
                shutil.copy2(f, d / f.name)
        if model_card is not None:
            (d / "MODEL_CARD.md").write_text(model_card)
        if repr_error is not None:
            _save_repr_error(d / "repr_error.npz", repr_error)
        if surface_height is not None:
            grid = Grid.from_dict(meta["grid"])
            _save_surface_height(d / "surface_height.nc", surface_height, grid)
        _finish_card(d, meta)

    _write_atomic(path, fill, overwrite=True, check=False)  # every file is copied over
    return path


MODELS_ENV = "BAYESDA_MODELS"
"""Environment variable: directories (separated by ``os.pathsep``) searched first for a model
given by name."""


def _shipped_models_dir() -> pathlib.Path:
    """Where the shipped models are: ``bayesda/_models`` in an installed wheel (the
    repository's ``models/`` is mapped there at build time, see pyproject.toml), else
    ``models/`` beside the package (a source checkout or an editable install)."""
    package = pathlib.Path(__file__).resolve().parents[1]
    installed = package / "_models"
    return installed if installed.is_dir() else package.parent / "models"


def model_search_path() -> list[pathlib.Path]:
    """The directories searched, in order, for a model given by name.

    1. each directory of ``$BAYESDA_MODELS`` (:data:`MODELS_ENV`, separated by ``os.pathsep``);
    2. the user's model directory, ``platformdirs.user_data_dir("bayesda") / "models"``
       (``~/.local/share/bayesda/models`` on Linux);
    3. the models shipped with bayesda.
    """
    import platformdirs

    dirs = [pathlib.Path(d) for d in os.environ.get(MODELS_ENV, "").split(os.pathsep) if d]
    dirs.append(pathlib.Path(platformdirs.user_data_dir("bayesda")) / "models")
    dirs.append(_shipped_models_dir())
    return dirs


def available_models() -> dict[str, pathlib.Path]:
    """Every model found by name: ``{name: directory}``, the first in
    :func:`model_search_path` order where a name occurs more than once."""
    found: dict[str, pathlib.Path] = {}
    for d in model_search_path():
        if d.is_dir():
            for sub in sorted(d.iterdir()):
                if (sub / _CARD).is_file():
                    found.setdefault(sub.name, sub)
    return found


def _is_name(model: str) -> bool:
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return bool(model) and model not in (".", "..") and not any(c in model for c in seps)


def find_model(model: str | os.PathLike) -> pathlib.Path:
    """The model directory meant by ``model``: a path, or the name of a model.

    A path that exists wins. Otherwise a bare name (no path separator, e.g. ``"ncep-air"``)
    is looked up in :func:`model_search_path`; the first directory holding ``NAME/model.json``
    is the model. Finding a model verifies nothing: :func:`load_model` checks its files.

    Raises:
      CheckpointError: no such directory and no model of that name; the message lists the
        directories searched and the models found.
    """
    path = pathlib.Path(model)
    if path.exists():
        return path
    text = os.fspath(model)
    if _is_name(text):
        for d in model_search_path():
            if (d / text / _CARD).is_file():
                return d / text
    known = available_models()
    names = ", ".join(sorted(known)) or "none"
    if _is_name(text):
        searched = os.pathsep.join(str(d) for d in model_search_path())
        raise CheckpointError(
            f"model {text!r} not found: no such directory, and no model of that name in "
            f"{searched}; models found by name: {names}"
        )
    hint = (
        f"; the model {path.name!r} is found by its name: load_model({path.name!r}), "
        f"--model {path.name}"
        if path.name in known
        else f"; models found by name: {names}"
    )
    raise CheckpointError(f"model directory {text!r} does not exist{hint}")


def as_prior(prior, where: str = "") -> GenerativePrior:
    """``prior`` as a :class:`GenerativePrior`: a model directory's path is loaded.

    Raises:
      TypeError: anything else, naming what was given and what is accepted.
    """
    if isinstance(prior, GenerativePrior):
        return prior
    if isinstance(prior, str | os.PathLike):
        return load_model(prior)
    prefix = f"{where}: " if where else ""
    raise TypeError(
        f"{prefix}prior must be a bayesda GenerativePrior (bayesda.load_model) or the path "
        f"of a model directory; got a {type(prior).__name__} (arguments swapped? the prior "
        "comes first, then the observations)"
    )


def load_model(path: str | os.PathLike, *, verify: bool = True) -> GenerativePrior:
    """Load a saved VAE prior.

    Args:
      path: the model directory, or the name of a model (``"ncep-air"``): see
        :func:`find_model`. A directory that exists wins over a name.
      verify: check file hashes (leave on unless you know why).

    Returns:
      A :class:`bayesda.prior.generative.GenerativePrior` whose ``decode(z [..., d]) -> [..., nlat,
      nlon]`` (K anomalies) and ``encode(anomaly [..., nlat, nlon]) -> (mean, logvar)`` are
      jitted closures over the trained parameters.

    Raises:
      CheckpointError: missing, truncated, altered or inconsistent checkpoint.
    """
    path = find_model(path)
    card = read_card(path, verify=verify)
    if verify:
        loaded = list(LOADED_FILES)
        loaded += [name for name in OPTIONAL_FILES if (path / name).exists()]
        unlisted = [name for name in loaded if name not in card["files"]]
        if unlisted:
            raise CheckpointError(
                f"{path}: {unlisted} not covered by the SHA-256 list in {_CARD}, so they "
                "cannot be verified; refusing to load them (a model saved by "
                "bayesda.prior.checkpoint.save_model lists every file; re-save it, or rehash a "
                "trusted copy with bayesda.prior.checkpoint.update_card)"
            )
    try:
        config = VAEConfig.from_dict(card["vae_config"])
        grid = Grid.from_dict(card["grid"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path / _CARD}: bad vae_config or grid: {err}") from err
    if grid.shape != (config.nlat, config.nlon):
        raise CheckpointError(f"{path}: grid {grid.shape} != config ({config.nlat}, {config.nlon})")

    flat = _load_npz(path / "params.npz")
    _check_params(flat, _expected_shapes(config))
    params = to_device(unflatten_params(flat))

    norm = _load_npz(path / "norm.npz")
    try:
        mean, sd = norm["mean"], norm["sd"]
    except KeyError as err:
        raise CheckpointError(f"{path}: missing array {err}") from err
    repr_error = _load_repr_error(path / "repr_error.npz", grid)
    if mean.shape != grid.shape or sd.shape != grid.shape:
        raise CheckpointError(
            f"{path / 'norm.npz'}: shapes {mean.shape}, {sd.shape} != {grid.shape}"
        )

    climatology = None
    if (path / "climatology.nc").is_file():
        from bayesda.data.climatology import Climatology

        climatology = Climatology.from_netcdf(path / "climatology.nc")
    surface_height = None
    if (path / "surface_height.nc").is_file():
        surface_height = _load_surface_height(path / "surface_height.nc", grid)

    mean_j, sd_j = to_device((mean, sd))
    dec_vars = {"params": params["decoder"]}
    enc_vars = {"params": params["encoder"]}
    decoder, encoder = Decoder(config), Encoder(config)

    @jax.jit
    def decode(z):
        return decoder.apply(dec_vars, z) * sd_j + mean_j

    aot.register(decode, _decoder_digest(config, flat, mean, sd))

    @jax.jit
    def encode(anomaly):
        return encoder.apply(enc_vars, (anomaly - mean_j) / sd_j)

    return GenerativePrior(
        decode=decode,
        latent_dim=config.latent_dim,
        grid=grid,
        repr_error=repr_error,
        climatology=climatology,
        encode=encode,
        surface_height=surface_height,
        card=card,
        name=str(card.get("name", path.name)),
    )
