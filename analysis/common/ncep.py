"""Held-out NCEP times with station-like observations, and the reanalysis defaults.

The throughput, warmup, resonance, lockstep and verdict studies all assimilate the same
kind of case: held-out times of the shared 7-day block split of NCEP air temperature, 50
station-like pseudo-observations at fixed locations with fresh noise per time (sigma 0.5 K),
the shipped model ``models/ncep-air``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from analysis.common.io import SHIPPED_MODEL


def reanalysis_defaults(warmup=None, draws=None, chains=None) -> dict:
    """``num_chains``, ``num_warmup``, ``num_samples`` of the reanalysis default, each
    replaced by the given value when it is not None (the benchmarks' ``--warmup``/``--draws``)."""
    from bayesda.workflows.reanalysis import ReanalysisSettings

    d = ReanalysisSettings()
    return dict(
        num_chains=d.num_chains if chains is None else chains,
        num_warmup=d.num_warmup if warmup is None else warmup,
        num_samples=d.num_samples if draws is None else draws,
    )


def make_obs(path: Path, n_times: int, n_obs: int, seed: int = 0) -> list[str]:
    """Write the observations of the first ``n_times`` held-out times to the CSV ``path``.

    ``n_obs`` station-like locations are drawn once (``seed``) and kept; each time gets fresh
    N(0, 0.5^2) noise. Returns the times as ISO strings (seconds).
    """
    import numpy as np
    import pandas as pd

    import bayesda

    bayesda.set_host_device_count()  # before the first JAX computation
    bayesda.enable_compilation_cache()
    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import block_split
    from bayesda.obs.table import pseudo_obs
    from bayesda.prior.checkpoint import load_model

    prior = load_model(SHIPPED_MODEL)
    ds = load_dataset("ncep-air")
    _, test = block_split(ds["time"].values)
    times = ds["time"].values[test][:n_times]
    anom = prior.climatology.to_anomaly(ds["tas"].sel(time=times))
    first = pseudo_obs(anom.isel(time=0), n_obs, network="station", seed=seed)
    frames = [
        pseudo_obs(
            anom.isel(time=k), lat=first["lat"], lon=first["lon"], sigma=0.5, seed=seed + 1 + k
        )
        for k in range(times.size)
    ]
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return [str(np.datetime_as_string(t, "s")) for t in times]


def held_out_obs(n_times: int, n_obs: int, seed: int = 0):
    """:func:`make_obs` in memory: its observation table and its times (``datetime64``)."""
    import numpy as np
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "obs.csv"
        stamps = make_obs(path, n_times, n_obs, seed)
        obs = pd.read_csv(path)
    return obs, [np.datetime64(t) for t in stamps]


def reanalyse_cmd(obs: Path, out: Path, chains: int, warmup: int, draws: int) -> list[str]:
    """``python -m bayesda.cli.main reanalyse`` of the shipped model on ``obs`` into ``out``."""
    return [
        sys.executable,
        "-m",
        "bayesda.cli.main",
        "reanalyse",
        "--model",
        str(SHIPPED_MODEL),
        "--obs",
        str(obs),
        "--out",
        str(out),
        "--chains",
        str(chains),
        "--warmup",
        str(warmup),
        "--draws",
        str(draws),
        "--no-progress",
    ]
