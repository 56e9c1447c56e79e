"""PCA-d reconstruction of held-out simulated temperature: the bar a VAE has to beat.

EOFs of the fit fields (training split minus validation blocks, as for the VAE), applied
to the test fields; RMSE in K, plain and cos-latitude weighted.

Usage::

    python -m analysis.osse.osse_pca --max-snapshots 6000

Writes analysis/osse/results/osse_pca_<var>.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from analysis.common.io import command, results_dir
from analysis.common.osse import cos_weights, load


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None)
    p.add_argument("--max-snapshots", type=int, default=None)
    p.add_argument("--dims", default="8,16,32,64,128,256")
    p.add_argument("--var", default="tas")
    p.add_argument("--out-dir", type=pathlib.Path, default=results_dir("osse"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    d = load(args.var, args.store, args.max_snapshots)
    a = d.fit.reshape(len(d.fit), -1).astype(np.float64)
    mu = a.mean(0)
    _, _, vt = np.linalg.svd(a - mu, full_matrices=False)
    b = d.test.reshape(len(d.test), -1) - mu
    w = cos_weights(d.lat, len(d.lon)).ravel()
    out = {
        "command": command(__spec__.name, argv),
        "var": args.var,
        "n_fit": len(d.fit),
        "n_test": len(d.test),
        "test_sd": float(d.test.std()),
        "rmse": {},
        "rmse_area_weighted": {},
    }
    for k in (int(v) for v in args.dims.split(",")):
        err = b - (b @ vt[:k].T) @ vt[:k]
        out["rmse"][k] = round(float(np.sqrt(np.mean(err**2))), 4)
        out["rmse_area_weighted"][k] = round(float(np.sqrt(np.mean(err**2 * w))), 4)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"osse_pca_{args.var}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
