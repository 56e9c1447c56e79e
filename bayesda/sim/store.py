"""Resumable simulation stores: the driver shared by the simulators of the OSSE experiments.

A run integrates ``spinup_snapshots`` intervals (discarded), then writes one snapshot per
interval to a zarr store in chunks. After every chunk the model state is saved next to the
store (``<store>.restart/state_<n>.npz``, ``n`` = the store size it continues), so an
interrupted run resumes where it stopped and, XLA on one machine being deterministic,
produces the same fields as an uninterrupted one. The store's attributes record the
configuration (without its size, so a longer run extends the same store), the library
versions and the wall time of every call. Used by :mod:`bayesda.sim.heldsuarez` (Held-Suarez) and
:mod:`bayesda.sim.qg` (quasi-geostrophic turbulence), which supply the model as a
:class:`Stepper`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

__all__ = ["START", "SimulationResult", "Stepper", "cache_store_path", "run_store"]

START = np.datetime64("2001-01-01T00:00", "ns")  # nominal date of the first snapshot
_SIZE_KEYS = ("n_snapshots", "chunk")


class SimulationResult(NamedTuple):
    """What a simulation call returns.

    Attributes:
      path: the zarr store.
      n_written: snapshots in the store after this call.
      wall_seconds: wall time of this call (spin-up, integration and writing).
      total_wall_seconds: wall time of every call that built the store.
    """

    path: Path
    n_written: int
    wall_seconds: float
    total_wall_seconds: float


class Stepper(NamedTuple):
    """A simulator as the driver sees it.

    Attributes:
      initial_state: the state to spin up from.
      advance: ``state -> state`` one snapshot interval later.
      fields: ``state -> {name: array}`` (device or host arrays) of one snapshot.
      to_dataset: ``(frames, times) -> xr.Dataset`` of a chunk (host frames).
      save_state: ``(state, path, n_done)`` writes a restart file atomically.
      load_state: ``path -> state``.
    """

    initial_state: Any
    advance: Callable
    fields: Callable
    to_dataset: Callable
    save_state: Callable
    load_state: Callable


def cache_store_path(tag: str) -> Path:
    """``$BAYESDA_CACHE/osse/<tag>.zarr`` (``~/.cache/bayesda`` by default)."""
    root = Path(os.environ.get("BAYESDA_CACHE", Path.home() / ".cache" / "bayesda"))
    return root / "osse" / f"{tag}.zarr"


def run_store(  # noqa: C901
    path: Path,
    config,
    build: Callable[[], Stepper],
    *,
    title: str,
    versions: Callable[[], dict],
    check: tuple[str, str],
    step_setting: str,
    report_every: int,
    progress: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Run (or resume) a simulation into the zarr store ``path``.

    Args:
      path: the store.
      config: a frozen dataclass with ``n_snapshots``, ``chunk``, ``interval_hours``,
        ``spinup_days`` and the property ``spinup_snapshots``; recorded in the store.
      build: makes the :class:`Stepper` (called only when there is work to do).
      title: the store's ``title`` attribute.
      versions: ``() -> {package: version}`` for the store's attributes.
      check: ``(variable, name)``: every snapshot of ``variable`` must be finite (``name``
        is how the error calls it).
      step_setting: the time-step setting the error suggests lowering, e.g.
        ``"dt_minutes=60.0"``.
      report_every: spin-up intervals between progress messages.
      progress: called with a one-line message after spin-up and each chunk.

    Raises:
      ValueError: the store exists with a different configuration.
      FileNotFoundError: the store cannot be resumed (its restart state is missing).
      FloatingPointError: the model blew up.
    """
    import jax

    restart_dir = path.with_name(path.name + ".restart")
    say = progress or (lambda _msg: None)
    t_call = time.perf_counter()
    cfg = dataclasses.asdict(config)
    cfg_no_size = {k: v for k, v in cfg.items() if k not in _SIZE_KEYS}

    n_done, wall_before = 0, 0.0
    if path.exists():
        stored = xr.open_zarr(path, consolidated=False)
        prev = json.loads(stored.attrs["config"])
        if {k: v for k, v in prev.items() if k not in _SIZE_KEYS} != cfg_no_size:
            raise ValueError(
                f"{path} holds a run with config {prev}, not {cfg}: pass another "
                "path or delete the store"
            )
        n_done = int(stored.sizes["time"])
        wall_before = float(stored.attrs.get("wall_seconds", 0.0))
        stored.close()
    if n_done >= config.n_snapshots:
        say(f"{path}: {n_done} snapshots already there")
        return SimulationResult(path, n_done, time.perf_counter() - t_call, wall_before)

    model = build()
    step = np.timedelta64(int(round(config.interval_hours * 3600)), "s")
    if n_done:
        restart = restart_dir / f"state_{n_done}.npz"
        if not restart.exists():
            raise FileNotFoundError(
                f"{restart} missing: the store {path} cannot be resumed; delete it and start again"
            )
        state = model.load_state(restart)
        say(f"resuming {path} at snapshot {n_done}")
    else:
        state = model.initial_state
        for i in range(config.spinup_snapshots):
            state = model.advance(state)
            if (i + 1) % report_every == 0:
                say(
                    f"spin-up {(i + 1) * config.interval_hours / 24:.0f} / "
                    f"{config.spinup_days:g} days"
                )
        jax.block_until_ready(state)
        say(f"spin-up done ({time.perf_counter() - t_call:.1f} s)")

    restart_dir.mkdir(parents=True, exist_ok=True)
    var, name = check
    while n_done < config.n_snapshots:
        n = min(config.chunk, config.n_snapshots - n_done)
        frames = []
        for _ in range(n):
            state = model.advance(state)
            frames.append(model.fields(state))
        frames = jax.device_get(frames)
        if not all(np.isfinite(f[var]).all() for f in frames):
            raise FloatingPointError(
                f"non-finite {name} in snapshots {n_done}..{n_done + n}: the run is "
                f"unstable with {step_setting}; use a smaller one"
            )
        times = START + (n_done + np.arange(n)) * step
        ds = model.to_dataset(frames, times.astype("datetime64[ns]"))
        # the state is saved under the store size it continues, before the store grows: a
        # crash between the two writes leaves the previous state, which matches the store
        model.save_state(state, restart_dir / f"state_{n_done + n}.npz", n_done + n)
        wall = wall_before + time.perf_counter() - t_call
        ds.attrs.update(
            {
                "title": title,
                "config": json.dumps(
                    cfg_no_size | {"n_snapshots": config.n_snapshots, "chunk": config.chunk}
                ),
                "versions": json.dumps(versions()),
                "cpu_count": os.cpu_count() or 0,
                "wall_seconds": wall,
            }
        )
        if n_done == 0:
            ds.to_zarr(path, mode="w", consolidated=False)
        else:
            ds.to_zarr(path, append_dim="time", consolidated=False)
            import zarr

            zarr.open_group(str(path), mode="r+").attrs.update({"wall_seconds": wall})
        old = restart_dir / f"state_{n_done - config.chunk}.npz"
        if n_done - config.chunk > 0 and old.exists():
            old.unlink()
        n_done += n
        say(
            f"{n_done} / {config.n_snapshots} snapshots, {wall:.0f} s wall in all "
            f"(load {os.getloadavg()[0]:.1f})"
        )
    return SimulationResult(
        path, n_done, time.perf_counter() - t_call, wall_before + time.perf_counter() - t_call
    )
