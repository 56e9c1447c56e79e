"""Time the Held-Suarez simulator (dinosaur) per simulated 6 h: one trajectory, or N vmapped.

Usage (record ``uptime`` alongside)::

    python -m analysis.osse.osse_bench_simulator T21 10 60 1
    python -m analysis.osse.osse_bench_simulator T42 10 15 1

Arguments: grid, sigma levels, time step in minutes, trajectories (vmapped), and optionally
the number of timed 6-hour steps (8). Needs the ``osse`` extra (dinosaur).
"""

from __future__ import annotations

import argparse
import time


def bench(grid_name: str, layers: int, dt_min: float, nens: int, n: int = 8) -> dict:
    """Compile one 6-hour step of ``nens`` vmapped Held-Suarez trajectories, then time ``n``.

    Returns:
      ``{"compile_s", "s_per_member_6h", "h_for_20000", "finite", "max_abs_T"}``: the first
      call (compile and one step), seconds per trajectory and simulated 6 h, the hours that
      20,000 snapshots would take, and a sanity check of the final temperature variation.
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
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(n):
        s = f(s)
    jax.block_until_ready(s)
    el = time.perf_counter() - t
    T = coords.horizontal.to_nodal(s.temperature_variation)
    return {
        "compile_s": compile_s,
        "s_per_member_6h": el / n / nens,
        "h_for_20000": el / n / nens * 20000 / 3600,
        "finite": bool(jnp.all(jnp.isfinite(T))),
        "max_abs_T": float(jnp.abs(T).max()),
    }


def report(grid_name: str, layers: int, dt_min: float, nens: int, r: dict) -> str:
    """The three lines the script prints."""
    return "\n".join(
        [
            f"compile+1 {r['compile_s']}",
            f"{grid_name} {layers} {dt_min} {nens} {r['s_per_member_6h']:.4f} s per member-6h; "
            f"20000 snaps = {r['h_for_20000']:.2f} h",
            f"finite {r['finite']} {r['max_abs_T']}",
        ]
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid", help="dinosaur spherical-harmonic grid, e.g. T21, T42")
    p.add_argument("layers", type=int, help="sigma levels")
    p.add_argument("dt_min", type=float, help="time step, minutes")
    p.add_argument("nens", type=int, help="trajectories, vmapped")
    p.add_argument("n", type=int, nargs="?", default=8, help="timed 6-hour steps")
    a = p.parse_args(argv)
    r = bench(a.grid, a.layers, a.dt_min, a.nens, a.n)
    print(report(a.grid, a.layers, a.dt_min, a.nens, r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
