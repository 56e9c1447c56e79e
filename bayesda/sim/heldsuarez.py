"""Simulated weather for perfect-model experiments: Held-Suarez runs of the dinosaur core.

The simulator is `dinosaur <https://github.com/neuralgcm/dinosaur>`_'s spectral
primitive-equation dynamical core (sigma levels, semi-implicit IMEX RK3 time stepping)
with the Held & Suarez (1994) forcing: Newtonian relaxation of temperature towards a
zonally symmetric radiative-equilibrium profile and Rayleigh friction in the boundary layer.
It has baroclinic eddies, fronts and jets but no seasons, no diurnal cycle, no moisture and
no orography, so its climate is statistically zonally symmetric and stationary.

A run starts from an isothermal atmosphere at rest with a seeded surface-pressure bump,
integrates ``spinup_days`` and then writes one snapshot every ``interval_hours`` to a zarr
store in chunks. After every chunk the full model state is saved next to the store, so an
interrupted run resumes where it stopped and produces the same fields as an uninterrupted
one (XLA on one machine is deterministic). The store's attributes record the configuration,
the library versions and the wall time spent on this machine.

Output (the bayesda grid convention: ``(time, lat, lon)``, lat ascending, lon in
[-180, 180), periodic in longitude; Gaussian latitudes):

* ``tas``: temperature at the lowest model level (sigma ~ 0.95), K;
* ``ps``: surface pressure, hPa;
* ``ua``, ``va``: eastward and northward wind at the lowest model level, m s-1.

References:
  Held, I. M. and Suarez, M. J. (1994). A proposal for the intercomparison of the dynamical
  cores of atmospheric general circulation models. BAMS 75, 1825-1830.
  Whittaker, J. et al. / Hoyer, S. et al. (2023). Dinosaur: differentiable dynamics for
  global atmospheric modeling (NeuralGCM's dynamical core).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr

from bayesda.sim.store import SimulationResult, Stepper, cache_store_path, run_store

__all__ = [
    "HeldSuarezConfig",
    "PRESETS",
    "SimulationResult",
    "build_model",
    "default_store_path",
    "load_state",
    "simulate",
]

VARIABLES = ("tas", "ps", "ua", "va")


@dataclasses.dataclass(frozen=True)
class HeldSuarezConfig:
    """What to simulate.

    Attributes:
      grid: dinosaur spectral grid name: ``"T21"`` (32 x 64 Gaussian grid), ``"T31"``
        (48 x 96), ``"T42"`` (64 x 128).
      layers: number of equidistant sigma levels.
      dt_minutes: time step.
      interval_hours: time between saved snapshots (a multiple of ``dt_minutes``).
      spinup_days: days integrated before the first snapshot (discarded).
      n_snapshots: snapshots to save after spin-up.
      chunk: snapshots per written chunk (the unit of resumption).
      seed: seeds the initial surface-pressure perturbation.
    """

    grid: str = "T21"
    layers: int = 10
    dt_minutes: float = 60.0
    interval_hours: float = 6.0
    spinup_days: float = 200.0
    n_snapshots: int = 20_000
    chunk: int = 400
    seed: int = 0

    def __post_init__(self):
        if self.grid not in ("T21", "T31", "T42", "T85"):
            raise ValueError(f"grid={self.grid!r}: use one of T21, T31, T42, T85")
        steps = self.interval_hours * 60 / self.dt_minutes
        if self.dt_minutes <= 0 or abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
            raise ValueError(
                f"interval_hours={self.interval_hours} must be a positive multiple "
                f"of dt_minutes={self.dt_minutes}"
            )
        for name in ("layers", "n_snapshots", "chunk"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.spinup_days < 0:
            raise ValueError(f"spinup_days={self.spinup_days} must be >= 0")

    @property
    def steps_per_snapshot(self) -> int:
        return int(round(self.interval_hours * 60 / self.dt_minutes))

    @property
    def spinup_snapshots(self) -> int:
        return int(round(self.spinup_days * 24 / self.interval_hours))

    def tag(self) -> str:
        """Directory name that identifies the run (size excluded: a longer run extends it)."""
        return (
            f"hs-{self.grid}-L{self.layers}-dt{self.dt_minutes:g}-"
            f"every{self.interval_hours:g}h-spin{self.spinup_days:g}d-seed{self.seed}"
        )


PRESETS = {
    # the size the issue asks for (measured cost on 2 CPU cores in the README)
    "full": HeldSuarezConfig(),
    # what fitted this session's 2-core budget
    "small": HeldSuarezConfig(n_snapshots=6000),
    # for tests: seconds
    "tiny": HeldSuarezConfig(layers=4, spinup_days=2.0, n_snapshots=6, chunk=4),
}


def default_store_path(config: HeldSuarezConfig) -> Path:
    """``$BAYESDA_CACHE/osse/<tag>.zarr`` (``~/.cache/bayesda`` by default)."""
    return cache_store_path(config.tag())


class _Model(NamedTuple):
    advance: Callable  # state -> state after one snapshot interval
    initial_state: object
    to_fields: Callable  # state -> dict of nodal [lon, lat] numpy fields (SI-ish units)
    lat: np.ndarray  # [lat] degrees, as dinosaur orders them
    lon: np.ndarray  # [lon] degrees in [0, 360)
    column_fields: Callable  # state -> dict of nodal [level, lon, lat]: t K, u v m s-1, vor s-1
    sigma: np.ndarray  # [level] sigma of the level centres, top (small) to bottom


def build_model(
    config: HeldSuarezConfig,
    forcing: dict | None = None,
    tracer: tuple[Callable, float] | None = None,
) -> _Model:
    """The jitted model, with two hooks for experiments (analysis/gaussianity/osse_variants.py).

    ``forcing``: keyword overrides of dinosaur's ``HeldSuarezForcing`` in its units (e.g.
    ``{"dTy": 100 * units.degK}``); None = Held-Suarez. ``tracer``: ``(profile, days)``
    adds a passive tracer ``q`` (advected by the flow, no feedback) relaxed at every level
    towards ``profile(lat_degrees) -> [lat]`` with time scale ``days``, starting at the
    profile; ``column_fields`` then returns it as ``"q"``.
    """
    import jax
    import jax.numpy as jnp
    from dinosaur import (
        coordinate_systems,
        held_suarez,
        primitive_equations,
        primitive_equations_states,
        scales,
        sigma_coordinates,
        spherical_harmonic,
        time_integration,
        xarray_utils,
    )

    units = scales.units
    grid = getattr(spherical_harmonic.Grid, config.grid)()
    coords = coordinate_systems.CoordinateSystem(
        horizontal=grid, vertical=sigma_coordinates.SigmaCoordinates.equidistant(config.layers)
    )
    specs = primitive_equations.PrimitiveEquationsSpecs.from_si()
    init_fn, aux = primitive_equations_states.isothermal_rest_atmosphere(
        coords, specs, p0=1e5 * units.pascal, p1=5e3 * units.pascal
    )
    ref_temps = aux[xarray_utils.REF_TEMP_KEY]
    orography = primitive_equations.truncated_modal_orography(aux[xarray_utils.OROGRAPHY], coords)
    equations = primitive_equations.PrimitiveEquations(ref_temps, orography, coords, specs)
    forcing = held_suarez.HeldSuarezForcing(
        coords=coords,
        physics_specs=specs,
        reference_temperature=ref_temps,
        p0=1e5 * units.pascal,
        **dict(forcing or {}),
    )
    terms = [equations, forcing]
    lon_nodes, sin_lat = grid.nodal_axes
    q_eq = None
    if tracer is not None:
        profile, days = tracer
        lat_mesh = np.degrees(np.arcsin(grid.nodal_mesh[1]))  # [lon, lat]
        q_eq = np.broadcast_to(
            np.asarray(profile(lat_mesh), np.float64), (config.layers,) + lat_mesh.shape
        )
        rate = 1.0 / float(specs.nondimensionalize(days * units.day))
        hs = forcing

        class _WithTracer(time_integration.ExplicitODE):
            def explicit_terms(self, state):
                tend = hs.explicit_terms(state)
                dq = -rate * (grid.to_nodal(state.tracers["q"]) - q_eq)
                return dataclasses.replace(tend, tracers={"q": grid.to_modal(dq)})

        terms = [equations, _WithTracer()]
    dt = specs.nondimensionalize(config.dt_minutes * units.minute)
    step = time_integration.imex_rk_sil3(time_integration.compose_equations(terms), dt)
    # the hyperviscosity-like filter of dinosaur's Held-Suarez example
    step = time_integration.step_with_filters(
        step,
        [time_integration.exponential_step_filter(grid, dt, tau=0.0087504, order=1.5, cutoff=0.8)],
    )
    advance = jax.jit(time_integration.repeated(step, config.steps_per_snapshot))

    t_scale = float(specs.dimensionalize(1.0, units.degK).m)
    v_scale = float(specs.dimensionalize(1.0, units.meter / units.second).m)
    p_scale = float(specs.dimensionalize(1.0, units.pascal).m) / 100.0  # hPa

    @jax.jit
    def _fields(state):
        lowest = -1  # equidistant sigma levels are ordered top (small sigma) to bottom
        t = grid.to_nodal(state.temperature_variation[lowest]) + ref_temps[lowest]
        ps = jnp.exp(grid.to_nodal(state.log_surface_pressure[0]))
        u, v = spherical_harmonic.vor_div_to_uv_nodal(
            grid, state.vorticity[lowest], state.divergence[lowest]
        )
        return {"tas": t * t_scale, "ps": ps * p_scale, "ua": u * v_scale, "va": v * v_scale}

    def to_fields(state):
        return {k: np.asarray(v, dtype=np.float32) for k, v in _fields(state).items()}

    @jax.jit
    def _columns(state):
        t = grid.to_nodal(state.temperature_variation) + ref_temps[:, None, None]
        u, v = spherical_harmonic.vor_div_to_uv_nodal(grid, state.vorticity, state.divergence)
        vor = grid.to_nodal(state.vorticity)
        out = {"t": t * t_scale, "u": u * v_scale, "v": v * v_scale, "vor": vor / t_unit_s}
        if "q" in state.tracers:
            out["q"] = grid.to_nodal(state.tracers["q"])
        return out

    t_unit_s = float(specs.dimensionalize(1.0, units.second).m)

    def column_fields(state):
        return {k: np.asarray(v, dtype=np.float32) for k, v in _columns(state).items()}

    initial = init_fn(jax.random.PRNGKey(config.seed))
    if q_eq is not None:
        initial = dataclasses.replace(initial, tracers={"q": grid.to_modal(jnp.asarray(q_eq))})
    return _Model(
        advance,
        initial,
        to_fields,
        np.degrees(np.arcsin(sin_lat)),
        np.degrees(lon_nodes),
        column_fields,
        np.asarray(coords.vertical.centers),
    )


def _to_dataset(frames: list[dict], times: np.ndarray, model: _Model) -> xr.Dataset:
    """Stack nodal ``[lon, lat]`` frames into the bayesda convention."""
    lon = np.where(model.lon >= 180.0, model.lon - 360.0, model.lon)
    order_lon = np.argsort(lon)
    order_lat = np.argsort(model.lat)
    meta = {
        "tas": ("K", "air_temperature", "temperature at the lowest model level (sigma~0.95)"),
        "ps": ("hPa", "surface_air_pressure", "surface pressure"),
        "ua": ("m s-1", "eastward_wind", "eastward wind at the lowest model level"),
        "va": ("m s-1", "northward_wind", "northward wind at the lowest model level"),
    }
    data = {}
    for name in VARIABLES:
        arr = np.stack([f[name] for f in frames])  # [time, lon, lat]
        arr = arr[:, order_lon][:, :, order_lat].transpose(0, 2, 1)
        units, std, long = meta[name]
        data[name] = (
            ("time", "lat", "lon"),
            arr.astype(np.float32),
            {"units": units, "standard_name": std, "long_name": long},
        )
    coords = {
        "time": ("time", times),
        "lat": (
            "lat",
            model.lat[order_lat].astype(np.float64),
            {"units": "degrees_north", "long_name": "latitude (Gaussian)"},
        ),
        "lon": (
            "lon",
            lon[order_lon].astype(np.float64),
            {"units": "degrees_east", "long_name": "longitude"},
        ),
    }
    return xr.Dataset(data, coords=coords)


def _state_to_npz(state, path: Path, n_done: int) -> None:
    arrays = {
        f.name: np.asarray(getattr(state, f.name))
        for f in dataclasses.fields(state)
        if getattr(state, f.name) is not None and not isinstance(getattr(state, f.name), dict)
    }
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, n_done=np.int64(n_done), **arrays)
    os.replace(tmp, path)


def load_state(template, path: Path):
    """A model state saved as ``.npz`` (a restart file of :func:`simulate`), shaped like
    ``template`` (e.g. ``build_model(config).initial_state``)."""
    with np.load(path, allow_pickle=False) as f:
        values = {k: f[k] for k in f.files if k != "n_done"}
    return dataclasses.replace(template, **values)


def _versions() -> dict:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("dinosaur", "jax", "numpy", "xarray", "zarr")}


def simulate(
    config: HeldSuarezConfig,
    path: str | Path | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Run (or resume) a Held-Suarez simulation into a zarr store.

    Args:
      config: what to simulate.
      path: the zarr store; default :func:`default_store_path`.
      progress: called with a one-line message after spin-up and each chunk.

    Returns:
      A :class:`SimulationResult`.

    Raises:
      ValueError: the store exists with a different configuration.
      FloatingPointError: the model blew up (try a smaller ``dt_minutes``).
    """

    def build() -> Stepper:
        model = build_model(config)
        return Stepper(
            model.initial_state,
            model.advance,
            model.to_fields,
            lambda frames, times: _to_dataset(frames, times, model),
            _state_to_npz,
            lambda restart: load_state(model.initial_state, restart),
        )

    return run_store(
        Path(path) if path is not None else default_store_path(config),
        config,
        build,
        title="Held-Suarez simulation (dinosaur dynamical core)",
        versions=_versions,
        check=("tas", "temperature"),
        step_setting=f"dt_minutes={config.dt_minutes}",
        report_every=200,
        progress=progress,
    )
