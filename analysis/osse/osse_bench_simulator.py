"""Time the Held-Suarez simulator (dinosaur) per simulated 6 h: one trajectory, or N vmapped.

Usage (the README table; record `uptime` alongside)::

    .venv/bin/python analysis/osse_bench_simulator.py T21 10 60 1
    .venv/bin/python analysis/osse_bench_simulator.py T42 10 15 1

Arguments: grid, sigma levels, time step in minutes, trajectories (vmapped).
"""

import sys
import time

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
grid_name, layers, dt_min, nens = (
    sys.argv[1],
    int(sys.argv[2]),
    float(sys.argv[3]),
    int(sys.argv[4]),
)
coords = coordinate_systems.CoordinateSystem(
    horizontal=getattr(spherical_harmonic.Grid, grid_name)(),
    vertical=sigma_coordinates.SigmaCoordinates.equidistant(layers),
)
ps = primitive_equations.PrimitiveEquationsSpecs.from_si()
init_fn, aux = primitive_equations_states.isothermal_rest_atmosphere(
    coords, ps, p0=1e5 * units.pascal, p1=5e3 * units.pascal
)
state = jax.vmap(init_fn)(jax.random.split(jax.random.PRNGKey(0), nens))
ref = aux[xarray_utils.REF_TEMP_KEY]
orog = primitive_equations.truncated_modal_orography(aux[xarray_utils.OROGRAPHY], coords)
eq = primitive_equations.PrimitiveEquations(ref, orog, coords, ps)
hs = held_suarez.HeldSuarezForcing(
    coords=coords, physics_specs=ps, reference_temperature=ref, p0=1e5 * units.pascal
)
dt = ps.nondimensionalize(dt_min * units.minute)
step = time_integration.imex_rk_sil3(time_integration.compose_equations([eq, hs]), dt)
step = time_integration.step_with_filters(
    step,
    [
        time_integration.exponential_step_filter(
            coords.horizontal, dt, tau=0.0087504, order=1.5, cutoff=0.8
        )
    ],
)
inner = int(round(360 / dt_min))
f = jax.jit(jax.vmap(time_integration.repeated(step, inner)))
t = time.perf_counter()
s = jax.block_until_ready(f(state))
print("compile+1", time.perf_counter() - t)
t = time.perf_counter()
n = int(sys.argv[5]) if len(sys.argv) > 5 else 8
for _ in range(n):
    s = f(s)
jax.block_until_ready(s)
el = time.perf_counter() - t
print(
    grid_name,
    layers,
    dt_min,
    nens,
    f"{el / n / nens:.4f} s per member-6h; 20000 snaps = {el / n / nens * 20000 / 3600:.2f} h",
)
T = coords.horizontal.to_nodal(s.temperature_variation)
print("finite", bool(jnp.all(jnp.isfinite(T))), float(jnp.abs(T).max()))
