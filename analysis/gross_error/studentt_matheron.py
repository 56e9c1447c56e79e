"""The Student-t likelihood and the Matheron step: the bullseye before and after (issue 13).

One held-out NCEP time, 50 station-like observations (sigma 0.5 K), one of them +15 K
wrong. ``likelihood="studentt"`` (MAP + Laplace) rejects it in the latent, but the
representation error was conditioned with the Gaussian rule on the *stated* sigma, which
put the 15 K back at the station. This script conditions the same latent draws both ways:

  before   r | z, y with the stated sigma_i (the old code)
  after    with the per-draw effective sigma of bayesda.preflight.qc.studentt_effective_sigma

and reports the posterior-mean error at the grid node nearest to the bad station and the
largest error within 500 km of it.

Output: analysis/gross_error/results/studentt_matheron.json. Usage:
  python -m analysis.gross_error.studentt_matheron
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

import numpy as np

import bayesda  # noqa: F401
from analysis.common.io import SHIPPED_MODEL, command, results_dir
from bayesda.data.datasets import load_dataset
from bayesda.data.split import block_split
from bayesda.inference.assimilate import assimilate
from bayesda.inference.fields import condition_representation_error
from bayesda.obs.operator import nearest_index
from bayesda.obs.table import pseudo_obs
from bayesda.prior.checkpoint import load_model
from bayesda.settings import ModelOptions, SamplerSettings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(SHIPPED_MODEL))
    p.add_argument("--out", default=str(results_dir("gross_error") / "studentt_matheron.json"))
    args = p.parse_args(argv)
    prior = load_model(args.model)
    data = load_dataset("ncep-air", os.environ.get("BAYESDA_DATA_DIR"))
    times = data["time"].values
    _, test = block_split(times)
    k = int(np.flatnonzero(test)[0])
    truth = prior.climatology.to_anomaly(data["tas"].isel(time=k)).drop_vars("time")
    obs = pseudo_obs(truth, 50, network="station", sigma=0.5, seed=0)
    bad = 10
    obs.loc[bad, "value"] += 15.0
    a = assimilate(
        prior,
        obs,
        sampler=SamplerSettings(method="laplace", num_chains=4, num_samples=250),
        options=ModelOptions(errors="stated", likelihood="studentt"),
        progress_bar=False,
        seed=0,
    )
    st = a.obs.stencil
    n = a.obs.n
    s = a.decoded.shape[0] * a.decoded.shape[1]
    dec = a.decoded.reshape(s, -1).astype(np.float64)
    mu = (dec[:, st.idx] * st.weight).sum(-1)
    resid = a.obs.arrays.y[:n][None, :] - mu
    r_before = condition_representation_error(
        np.random.default_rng(1), resid, a.obs.arrays.sigma[:n], st, prior.repr_error
    )
    field_before = dec.reshape(s, *prior.grid.shape) + r_before
    field_after = a.field.reshape(s, *prior.grid.shape)
    node = int(
        nearest_index(
            prior.grid, obs["lat"].to_numpy()[bad : bad + 1], obs["lon"].to_numpy()[bad : bad + 1]
        )[0]
    )
    la, lo = np.meshgrid(prior.grid.lat, prior.grid.lon, indexing="ij")
    b_lat, b_lon = np.radians(obs["lat"][bad]), np.radians(obs["lon"][bad])
    c = np.sin(np.radians(la)) * np.sin(b_lat) + np.cos(np.radians(la)) * np.cos(b_lat) * np.cos(
        np.radians(lo) - b_lon
    )
    near = 6371.0 * np.arccos(np.clip(c, -1, 1)) < 500.0
    out = {
        "time": str(np.datetime64(times[k], "s")),
        "bad_station": obs["station_id"][bad],
        "gross_error_K": 15.0,
    }
    for name, f in (("before", field_before), ("after", field_after)):
        err = f.mean(0) - truth.values
        out[name] = {
            "error_at_station_node_K": float(err.ravel()[node]),
            "max_abs_error_within_500km_K": float(np.abs(err[near]).max()),
            "rmse_within_500km_K": float(np.sqrt(np.mean(err[near] ** 2))),
        }
    out["command"] = command(__spec__.name, argv)
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
