"""Export one variable of the simulated weather, split, to ONE compressed ``.npz`` for a GPU.

The GPU machine has no zarr (and the store is 240 MB); the sweep
(:mod:`analysis.osse_gpu.osse_gpu_sweep`) needs only the time-block split of the field it
trains on. The file's arrays are described in :mod:`analysis.common.export` (no pickle).

What is dropped to stay under the GPU transfer limit (30 MB): the other variables (ps, ua,
va) and precision below ``scale``. All 9200 snapshots of ``tas`` fit (29.5 MB).

Usage::

    python -m analysis.osse_gpu.osse_export --var tas --out .gpu/osse_tas.npz
"""

from __future__ import annotations

import argparse
import json
import pathlib

from analysis.common.export import export_arrays
from analysis.common.io import command
from analysis.common.osse import QG_UNITS, default_qg_store, default_store, open_field


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None, help="OSSE zarr store (default: the full preset)")
    p.add_argument("--var", default="tas")
    p.add_argument("--out", required=True, help="the .npz to write")
    p.add_argument("--max-snapshots", type=int, default=None)
    p.add_argument("--scale", type=float, default=0.01, help="quantisation step (units of var)")
    args = p.parse_args(argv)
    if args.store:
        store = pathlib.Path(args.store)
    else:
        store = default_qg_store() if args.var in QG_UNITS else default_store()
    da = open_field(args.var, store, args.max_snapshots)  # QG stores: relabelled and scaled
    meta = {
        "var": args.var,
        "units": da.attrs.get("units", ""),
        "store": str(store),
        "store_config": json.loads(da.attrs.get("config", "{}")),
        "n_snapshots": int(da.sizes["time"]),
        "dropped": f"other variables; precision below {args.scale} (int16 quantisation)",
        "command": command(__spec__.name, argv),
    }
    out = export_arrays(
        da.values,
        da["time"].values,
        da["lat"].values,
        da["lon"].values,
        args.out,
        scale=args.scale,
        meta=meta,
    )
    print(
        f"{out}: {out.stat().st_size / 1e6:.1f} MB, {meta['n_snapshots']} snapshots of {args.var}"
    )


if __name__ == "__main__":
    main()
