"""Write a tiny untrained VAE model directory and an observation table (for the bare-install check).

Usage: python .ci/tiny_model.py DIR  ->  DIR/model/ and DIR/obs.csv
"""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayesda.geo.grid import Grid
from bayesda.prior.checkpoint import save_model
from bayesda.prior.representation import RepresentationError
from bayesda.prior.vae import VAE, VAEConfig


def main(out: str) -> None:
    out_dir = pathlib.Path(out)
    config = VAEConfig(nlat=5, nlon=7, latent_dim=3, channels=(4,))
    grid = Grid(lat=np.linspace(40.0, 50.0, 5), lon=np.linspace(-10.0, 2.0, 7))
    x = jnp.zeros((1, config.nlat, config.nlon))
    params = jax.device_get(VAE(config).init(jax.random.key(0), x, jax.random.key(1))["params"])
    rng = np.random.default_rng(0)
    save_model(
        out_dir / "model",
        params=params,
        config=config,
        grid=grid,
        norm_mean=np.zeros(grid.shape, np.float32),
        norm_sd=np.ones(grid.shape, np.float32),
        repr_error=RepresentationError(
            (0.3 * rng.normal(size=(2, *grid.shape))).astype(np.float32),
            np.full(grid.shape, 0.1, np.float32),
        ),
        card={"name": "tiny"},
    )
    n = 8
    pd.DataFrame(
        {
            "lat": rng.uniform(41.0, 49.0, n),
            "lon": rng.uniform(-9.0, 1.0, n),
            "value": rng.normal(0.0, 1.0, n),
            "sigma": np.full(n, 0.5),
        }
    ).to_csv(out_dir / "obs.csv", index=False)


if __name__ == "__main__":
    main(sys.argv[1])
