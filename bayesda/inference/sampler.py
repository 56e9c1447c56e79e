"""NUTS over a flat parameter vector, compiled once per shape and reused for every day.

numpyro's :class:`~numpyro.infer.MCMC` re-traces its chain runner on every ``run`` (with
``chain_method="parallel"`` it wraps a fresh closure in ``pmap`` each time), so each
assimilated day compiled or loaded a new XLA executable, and the mapped code added up: a
single process ran out of memory maps (``vm.max_map_count``) after about 200 days. This
module drives numpyro's own NUTS kernel (:func:`numpyro.infer.hmc.hmc`) instead, inside
functions that take *everything that changes from day to day* as arguments: the
observations, the starting points, the inverse mass matrix and the random keys. One
program per (potential, settings, shapes) is compiled and then reused, in this process and
(through JAX's persistent compilation cache) in later ones.

Layout. A run has ``B`` independent chains: ``num_chains`` chains for each of ``T`` analysis
times, so several times can share one program
(:func:`bayesda.inference.assimilate.assimilate_batch`).
The chain axis is split over the local JAX devices with :func:`jax.shard_map` (on a CPU
host ``bayesda.runtime.xla`` asks for ``max(cores, 4)`` host devices, one chain per device for the
default 4 chains). Chains that share a device are vectorised with :func:`jax.vmap` on an
accelerator, which is what a GPU wants, and run one after another (:func:`jax.lax.map`) on
a CPU: there, vectorised chains of the NCEP model deadlocked XLA (threads parked, no
progress for 13 minutes, 2 cores, 2 or 4 chains per host device), while the same program
with one chain per device, or with ``lax.map``, ran normally. The vectorised path ran on
one H200 (README, "Reanalysis on a GPU").

The iterations run in segments of :data:`SEGMENT` so that a progress bar can advance
between them without host callbacks in the compiled code (callbacks would keep the
program out of the persistent cache).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from numpyro.infer.hmc import hmc
from numpyro.infer.hmc_util import dual_averaging

import bayesda.runtime.export as aot
from bayesda.runtime.arrays import to_device
from bayesda.settings import MASSES, SamplerSettings

__all__ = [
    "Draws",
    "LAPLACE_WARMUP_TREE_DEPTH",
    "MASSES",
    "NutsKernel",
    "RESONANCE_BAND",
    "SEGMENT",
    "WARMUP_TREE_DEPTH",
    "batch_keys",
    "compiled_programs",
    "detune",
    "n_shards",
    "pool_step_sizes",
    "run_nuts",
]


SEGMENT = 50
"""Iterations per compiled segment (the progress bar's granularity)."""

WARMUP_TREE_DEPTH = 5
"""Largest NUTS tree depth during warmup with an adapted mass matrix ("diag", "dense").

While the step size wanders, warmup crosses the resonances described in :func:`detune`, where
trees grow to hundreds of steps. On an accelerator, where all chains of a batch advance
together, one such tree holds up every chain: on one H200 with 64 times x 4 chains, warmup's
100 iterations took 21.5 s against 4.8 s for the 500 sampling iterations
(``analysis/throughput/results/throughput.json``). Capping warmup trees at 31 steps bounds that. The
adapted masses are estimated from the warmup draws, which keep trees of up to 31 steps; with
the fixed Laplace mass the cap is :data:`LAPLACE_WARMUP_TREE_DEPTH`."""

LAPLACE_WARMUP_TREE_DEPTH = 3
"""Largest NUTS tree depth during warmup with the fixed Laplace mass matrix (7 steps).

Warmup then only adapts the step size, from each tree's mean acceptance probability, which
a 7-step tree measures as well as a longer one; no warmup draw is kept. With the Laplace
covariance as the mass the posterior is close to a whitened Gaussian and sampling trees are
7 steps long at the adapted step sizes, while at depth 5 warmup spent 11.2 steps per
iteration, in trees of 15 and 31 steps at the small step sizes that dual averaging tries on
its way. On the shipped model (``analysis/warmup/results/warmup_depth.md``: 4 held-out times x 2
seeds at 4 x (100 + 500), same seeds) depth 3 gave the same mean adapted step size (0.480),
7.0 steps per draw, all 8 runs PASS and within 3.4 Monte Carlo errors of long reference
runs, with 2,692 instead of 4,474 warmup gradients per time; the lockstep efficiency of
the 16 chains in warmup rose from 0.48 to 0.98, so chains that advance together (an
accelerator) wait about 690 instead of 2,330 leapfrog steps for 100 iterations."""

STEP_SIZE_WARMUP = "one window"
"""How warmup adapts the step size with the fixed Laplace mass matrix.

numpyro's schedule (Stan's) splits warmup into windows for mass-matrix adaptation and, at
the end of each middle window, restarts the step-size search at 10 x a reasonable step and
dual averaging from scratch, even when the mass matrix is not adapted. Its last window is
10% of warmup: 10 iterations at the reanalysis default of 100, 2 at 25, so the final step
size rests on a few iterations (25 iterations on the shipped model: step sizes about 1.4
against 0.43, ESS of z 148 against 2,600 per 2,000 draws, every verdict FAIL;
``analysis/warmup/results/warmup_sweep.md``). With ``mass="laplace"`` bayesda therefore runs
numpyro's NUTS transitions with its own step-size adaptation: numpyro's dual averaging
(same constants, target ``target_accept``) over the whole warmup in one window, and the
averaged step size at its end (then :func:`detune`)."""

RESONANCE_BAND = (0.965, 1.065)
"""Relative band around ``2 pi / (2^j - 1)`` that :func:`detune` moves a step size out of."""


def detune(step_size, band: tuple[float, float] = RESONANCE_BAND):
    """Move step sizes out of the resonances of NUTS on a whitened Gaussian.

    With the Laplace covariance as the mass matrix and a nearly Gaussian posterior the
    Hamiltonian flow is a rotation with period ``2 pi`` in every direction. When a tree of
    ``2^j - 1`` leapfrog steps spans about one period (``eps ~ 2 pi / (2^j - 1)``: 0.419 for
    15 steps, 0.203 for 31) its end points coincide, the summed momentum is about zero and
    the no-U-turn criterion sits on its edge: the tree keeps doubling. Measured on a
    100-dimensional standard normal with the exact mass
    (``analysis/resonance/results/resonance.md``):
    at ``eps = 0.419`` trees took 56 steps on average and 38% reached 63 or more, against 7
    to 15 steps just outside ``[0.405, 0.445]``; on the shipped model the chains whose
    adapted step size fell there took 40-48 steps per draw against 7-15 for the others,
    and batched chains (which advance in lockstep on an accelerator) all waited for them.

    A step size within ``band`` (relative) of a resonance is raised to just above the band,
    where trees stop one doubling earlier. The step size stays fixed during sampling, so
    the chain remains a valid MCMC kernel; the change is a few per cent, within what the
    warmup's own adaptation noise spans.

    Args:
      step_size: adapted step sizes (any shape; NumPy or JAX).
      band: ``(low, high)`` relative to each resonance.

    Returns:
      Step sizes of the same shape and dtype, as a NumPy array (a handful of numbers on
      the host: eager JAX ops here cost a lowering each in every new process).
    """
    eps = np.asarray(step_size)
    for j in range(2, 11):
        r = 2 * np.pi / (2**j - 1)
        inside = (eps > r * band[0]) & (eps < r * band[1])
        eps = np.where(inside, np.asarray(r * band[1], eps.dtype), eps)
    return eps


def pool_step_sizes(step_size, groups) -> np.ndarray:
    """Give every chain of a group the geometric mean of its group's adapted step sizes.

    The chains of one analysis time sample the same posterior with the same fixed Laplace
    mass matrix, so they estimate one step size; each chain's 100-iteration dual-averaging
    estimate is noisy (SD 0.022 about a mean of 0.480 on the shipped model), and the tree
    length is quantised: at or above 0.446 (after :func:`detune`) trees take 7 steps, below
    0.404 they take 15. Batched chains advance together on an accelerator, so one chain whose
    estimate lands below 0.404 makes every iteration of the whole batch cost 15 steps. None
    of 1,024 chains did at K = 256 times per program, but a normal fit to their log step
    sizes puts the chance that some chain of a K = 1024 batch (4,096 chains) does at about
    0.4 (``analysis/lockstep/results/lockstep_tail_per_chain.md``). Measured with pooling
    (``lockstep_tail.md``: SD 0.013 between times, every tree 7 steps) the fitted chance is
    about 1e-10 per time, 1e-7 for a K = 1024 batch. The pooled step size is fixed before
    sampling starts, so every chain remains an exact MCMC kernel; the chains stay independent given
    it (a chain stuck elsewhere stays stuck, and R-hat sees it).

    Args:
      step_size: ``[B]`` adapted step sizes (NumPy or JAX).
      groups: ``[B]`` integer labels; chains with the same label share their step size.

    Returns:
      ``[B]`` NumPy array, the dtype of ``step_size``.
    """
    eps = np.asarray(step_size)
    labels = np.asarray(groups)
    if labels.shape != eps.shape:
        raise ValueError(f"groups has shape {labels.shape}, step sizes {eps.shape}")
    _, index = np.unique(labels, return_inverse=True)
    index = index.reshape(-1)
    log_mean = np.bincount(index, np.log(eps.astype(np.float64))) / np.bincount(index)
    return np.exp(log_mean[index]).astype(eps.dtype)


class NutsKernel(NamedTuple):
    """What numpyro's ``NUTS`` takes, apart from what ``MCMC`` takes (warmup, draws, chains).

    Built from the run's :class:`~bayesda.settings.SamplerSettings` by :meth:`of`; a new
    value compiles a new program.

    Attributes:
      target_accept: dual-averaging target acceptance probability.
      max_tree_depth: NUTS maximum tree depth.
      mass: "laplace" (the given dense inverse mass matrix, fixed), "diag" (adapted
        diagonal, started at the identity) or "dense" (adapted dense, started at the given
        matrix).
    """

    target_accept: float = 0.8
    max_tree_depth: int = 10
    mass: str = "laplace"

    @classmethod
    def of(cls, settings: SamplerSettings) -> NutsKernel:
        """The kernel part of a run's sampler settings."""
        return cls(settings.target_accept, settings.max_tree_depth, settings.mass)


class _Static(NamedTuple):
    """What a compiled program depends on: the kernel and the warmup length (numpyro's
    ``init_kernel`` takes it for its adaptation schedule); not the number of draws."""

    num_warmup: int
    target_accept: float
    max_tree_depth: int
    mass: str


class Draws(NamedTuple):
    """Output of :func:`run_nuts`, as host numpy arrays; ``B`` chains, ``S`` draws.

    Attributes:
      x: ``[B, S, D]`` draws of the flat (unconstrained) parameter vector.
      num_steps: ``[B, S]`` leapfrog steps per draw.
      diverging: ``[B, S]`` bool.
      accept_prob: ``[B, S]`` mean Metropolis acceptance probability of the tree.
      energy: ``[B, S]`` Hamiltonian.
      potential_energy: ``[B, S]`` minus the log density.
      step_size: ``[B, S]`` the step size used.
      warmup_steps: ``[B]`` leapfrog steps spent in warmup.
      timings: seconds ``warmup`` (including any compilation) and ``sampling``,
        ``cache_hit``: True when no new program had to be compiled, and
        ``lockstep_warmup`` / ``lockstep_sampling``: mean leapfrog steps over the mean of
        each iteration's largest tree in the batch (what chains advancing together get).
    """

    x: np.ndarray
    num_steps: np.ndarray
    diverging: np.ndarray
    accept_prob: np.ndarray
    energy: np.ndarray
    potential_energy: np.ndarray
    step_size: np.ndarray
    warmup_steps: np.ndarray
    timings: dict


def n_shards(batch: int, devices: int | None = None) -> int:
    """Devices to split ``batch`` chains over: the largest divisor of ``batch`` <= devices."""
    devices = jax.local_device_count() if devices is None else devices
    return max(k for k in range(1, min(batch, devices) + 1) if batch % k == 0)


def _kernel(potential: Callable, args: Any, config: _Static):
    """numpyro's NUTS init/sample pair for the potential at ``args``.

    numpyro's ``hmc`` keeps its integrator and adaptation closures in ``nonlocal`` state
    set by ``init_kernel``; every traced function therefore builds its own pair and runs
    ``init_kernel`` (whose result it may discard) before it calls ``sample_kernel``.
    """
    init_kernel, sample_kernel = hmc(potential_fn=lambda x: potential(x, args), algo="NUTS")
    init = functools.partial(
        init_kernel,
        num_warmup=config.num_warmup,
        adapt_step_size=True,
        adapt_mass_matrix=config.mass != "laplace",
        dense_mass=config.mass != "diag",
        target_accept_prob=config.target_accept,
        max_tree_depth=config.max_tree_depth,
        trajectory_length=None,
    )
    return init, sample_kernel


def _warmup_config(config: _Static) -> _Static:
    cap = LAPLACE_WARMUP_TREE_DEPTH if config.mass == "laplace" else WARMUP_TREE_DEPTH
    return config._replace(max_tree_depth=min(config.max_tree_depth, cap))


def _init_chain(potential, config, key, x0, inv_mass, args):
    init, _ = _kernel(potential, args, config)
    return init(x0, inverse_mass_matrix=inv_mass, rng_key=key)


def _own_step_size(config: _Static) -> bool:
    return config.mass == "laplace"


def _segment_chain(potential, config, length, collect, state, args):
    own = not collect and _own_step_size(config)
    cfg = config if collect else _warmup_config(config)
    # own adaptation: numpyro's transitions with its adaptation off (num_warmup 0)
    init, sample_kernel = _kernel(potential, args, cfg._replace(num_warmup=0) if own else cfg)
    # Sets the kernel's closures; the new state is discarded (and dead code to XLA).
    init(state.z, inverse_mass_matrix=state.adapt_state.inverse_mass_matrix, rng_key=state.rng_key)
    _, da_update = dual_averaging()  # numpyro's warmup_adapter uses these defaults too

    def body(s, _):
        s = sample_kernel(s)
        if own:
            ss = da_update(config.target_accept - s.accept_prob, s.adapt_state.ss_state)
            adapt = s.adapt_state._replace(ss_state=ss, step_size=jnp.exp(ss[0]))
            s = s._replace(adapt_state=adapt)
        if not collect:
            return s, s.num_steps
        return s, (
            s.z,
            s.num_steps,
            s.diverging,
            s.accept_prob,
            s.energy,
            s.potential_energy,
            s.adapt_state.step_size,
        )

    return jax.lax.scan(body, state, None, length=length)


def _sequential(fn):
    """``fn`` over the leading axis one element at a time (``lax.map``)."""

    def mapped(*args):
        return jax.lax.map(lambda xs: fn(*xs), args)

    return mapped


class _Program(NamedTuple):
    init: Callable
    segment: Callable  # (length, collect) -> compiled function
    segments: dict

    def cache_size(self) -> int:
        """Compiled executables held (one per input shape of each function)."""
        fns: list[Any] = [self.init, *self.segments.values()]
        return sum(f._cache_size() for f in fns)


_PROGRAMS: dict = {}


def _program(potential: Callable, config: _Static, shards: int, cache_key: Any = None) -> _Program:
    """The jitted, sharded init and segment functions (cached per potential and settings).

    With a ``cache_key`` (the potential's content key) the lowered programs are also kept
    on disk for later processes (:mod:`bayesda.runtime.export`).
    """
    # The warmup cap is a module constant (analysis scripts change it): part of the keys.
    warm_depth = _warmup_config(config).max_tree_depth
    key = (id(potential), config, warm_depth, shards, cache_key)
    hit = _PROGRAMS.get(key)
    if hit is not None and hit[0] is potential:
        return hit[1]
    devices = jax.local_devices()[:shards]
    mesh = Mesh(np.array(devices), ("chain",))
    spec = PartitionSpec("chain")

    def sharded(fn, *what):
        # check_vma=False: numpyro's kernels mix per-chain and constant values in lax.cond.
        mapped = _sequential(fn) if devices[0].platform == "cpu" else jax.vmap(fn)
        jitted = jax.jit(
            jax.shard_map(mapped, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
        )
        disk_key = None if cache_key is None else (cache_key, config, warm_depth, shards, *what)
        return aot.cached(jitted, "nuts", disk_key, sharding=NamedSharding(mesh, spec))

    init = sharded(functools.partial(_init_chain, potential, config), "init")
    segments: dict = {}

    def segment(length: int, collect: bool):
        if (length, collect) not in segments:
            fn = functools.partial(_segment_chain, potential, config, length, collect)
            segments[(length, collect)] = sharded(fn, "segment", length, collect)
        return segments[(length, collect)]

    prog = _Program(init, segment, segments)
    _PROGRAMS[key] = (potential, prog)
    return prog


def _lengths(total: int) -> list[int]:
    return [SEGMENT] * (total // SEGMENT) + ([total % SEGMENT] if total % SEGMENT else [])


def _phase(prog: _Program, state, args, total: int, collect: bool, bar):
    """Advance ``total`` iterations in segments; return the state and each segment's output."""
    outs = []
    for length in _lengths(total):
        state, out = prog.segment(length, collect)(state, args)
        outs.append(out)
        if bar is not None:
            bar.set_postfix_str("sampling" if collect else "warmup", refresh=False)
            bar.update(length)
    return state, outs


def run_nuts(
    potential: Callable,
    args: Any,
    keys,
    x0,
    inv_mass,
    settings: SamplerSettings,
    *,
    progress_bar: bool = False,
    desc: str = "NUTS",
    cache_key: Any = None,
    step_size_groups=None,
) -> Draws:
    """Run ``B`` independent NUTS chains, each with its own arguments.

    Args:
      potential: pure ``(x [D], args) -> scalar`` minus log density; keep the same object
        across calls (it keys the compiled program).
      args: pytree of arrays with leading axis ``B`` (each chain's observations etc.).
      keys: ``[B, 2]`` PRNG keys (``jax.random.PRNGKey`` layout).
      x0: ``[B, D]`` starting points.
      inv_mass: ``[B, D, D]`` (``mass`` "laplace"/"dense") or ``[B, D]`` ("diag") inverse
        mass matrices.
      settings: the run's :class:`~bayesda.settings.SamplerSettings`, as the caller got
        them: the kernel (:meth:`NutsKernel.of`) and the warmup and draws per chain are read
        from it; the number of chains is ``B`` (the caller's batch of chains and times).
      progress_bar: show a tqdm bar over iterations.
      desc: the bar's label.
      cache_key: the potential's content key
        (:attr:`bayesda.inference.compiled.ModelFns.cache_key`): keep the lowered programs on
        disk for later processes (:mod:`bayesda.runtime.export`); None: in this process only.
      step_size_groups: ``[B]`` labels of chains that sample the same target with the same
        mass (the chains of one analysis time): with ``mass="laplace"`` they share the
        geometric mean of their adapted step sizes (:func:`pool_step_sizes`). None: each
        chain keeps its own. Ignored for adapted masses, whose step sizes belong to each
        chain's own mass matrix.

    Returns:
      :class:`Draws` (host arrays).
    """
    kernel = NutsKernel.of(settings)
    num_warmup, num_samples = settings.num_warmup, settings.num_samples
    if kernel.mass not in MASSES:
        raise ValueError(f"mass={kernel.mass!r} is not one of {MASSES}")
    if num_samples < 1 or num_warmup < 0:
        raise ValueError(f"need num_samples >= 1 and num_warmup >= 0, got {settings}")
    config = _Static(num_warmup, *kernel)
    x0 = to_device(x0)
    batch, dim = x0.shape
    want = (batch, dim, dim) if config.mass != "diag" else (batch, dim)
    if tuple(np.shape(inv_mass)) != want:
        raise ValueError(f"inv_mass has shape {np.shape(inv_mass)}, expected {want}")
    t0 = time.perf_counter()
    prog = _program(potential, config, n_shards(batch), cache_key)
    compiled_before = prog.cache_size()
    inv_mass = to_device(inv_mass, x0.dtype)
    state = prog.init(to_device(keys), x0, inv_mass, args)

    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_warmup + num_samples, desc=desc, leave=False)
    state, warm_steps = _phase(prog, state, args, num_warmup, False, bar)
    if _own_step_size(config):
        current = state.adapt_state.step_size
        adapted = np.asarray(current)
        if num_warmup > 0:  # the dual-averaging mean, as numpyro ends its warmup
            adapted = np.exp(np.asarray(state.adapt_state.ss_state[1])).astype(adapted.dtype)
            if step_size_groups is not None:
                adapted = pool_step_sizes(adapted, step_size_groups)
        # back where the sampler keeps it (same sharding: the compiled segment is reused)
        step = jax.device_put(detune(adapted), current.sharding)
        state = state._replace(adapt_state=state.adapt_state._replace(step_size=step))
    jax.block_until_ready(state)
    t1 = time.perf_counter()
    state, out = _phase(prog, state, args, num_samples, True, bar)
    if bar is not None:
        bar.close()
    fields = [np.concatenate([np.asarray(o[i]) for o in out], axis=1) for i in range(7)]
    timings = {
        "warmup": t1 - t0,
        "sampling": time.perf_counter() - t1,
        "cache_hit": prog.cache_size() == compiled_before,
        "lockstep_warmup": _lockstep([np.asarray(w) for w in warm_steps]),
        "lockstep_sampling": _lockstep([fields[1]]),
    }
    warmup_steps = (
        np.sum([np.asarray(s).sum(axis=1) for s in warm_steps], axis=0)
        if warm_steps
        else np.zeros(batch, np.int64)
    )
    x, num_steps, diverging, accept_prob, energy, potential_energy, step_size = fields
    return Draws(
        x=x,
        num_steps=num_steps,
        diverging=diverging,
        accept_prob=accept_prob,
        energy=energy,
        potential_energy=potential_energy,
        step_size=step_size,
        warmup_steps=np.asarray(warmup_steps, np.int64),
        timings=timings,
    )


def _lockstep(steps: list) -> float:
    """Useful fraction of the leapfrog work of chains that advance together: mean steps per
    iteration over the mean of each iteration's largest tree (1.0: no waiting)."""
    if not steps:
        return 1.0
    x = np.concatenate([np.asarray(a) for a in steps], axis=1)  # [B, iterations]
    worst = x.max(axis=0).mean()
    return float(x.mean() / worst) if worst > 0 else 1.0


def compiled_programs() -> int:
    """Number of cached (potential, settings, layout) programs; for tests and benchmarks."""
    return len(_PROGRAMS)


def batch_keys(seeds, num_chains: int) -> np.ndarray:
    """``[T * num_chains, 2]`` chain keys from one integer seed per time."""
    return np.concatenate(
        [np.asarray(jax.random.split(jax.random.PRNGKey(s), num_chains)) for s in seeds]
    )
