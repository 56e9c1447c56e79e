"""Choose the representation error's structure on validation data, and apply it.

The representation error ``r = x - g(z)`` is modelled as ``N(0, F^T F + diag(d))`` with a
low-rank part of rank ``k`` (:mod:`bayesda.representation`). Which ``k`` gives honest
intervals is an empirical question, so this script answers it on the *validation* blocks of
the training period (never the test split, which stays for the benchmark). The validation
blocks are split in two, alternating whole 7-day blocks: for each rank, ``C`` is estimated
from the decoder's residuals on one half, and pseudo-observations of the other half's fields
are assimilated with MAP + Laplace (which matches NUTS on this model, see
``analysis/results/skill.md``) and scored at unobserved points. (Scoring on the same
fields that estimated ``C`` would flatter any low-rank part: it fits those very residuals.)
``--apply`` then estimates the chosen rank from all validation residuals.

Usage::

    BAYESDA_DATA_DIR=../shared/data python analysis/repr_error_structure.py --ranks 0,16
    BAYESDA_DATA_DIR=../shared/data python analysis/repr_error_structure.py --apply 0

``--apply K`` rewrites ``models/ncep-air/repr_error.npz`` with rank ``K`` (hashes renewed by
:func:`bayesda.checkpoint.update_card`) and records the table in the model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import bayesda  # noqa: F401  (XLA flags before jax)

HERE = Path(__file__).resolve().parent
NETWORKS = [("uniform", 20), ("uniform", 50), ("uniform", 200), ("station", 50), ("station", 200)]


def validation_residuals(prior, tas):
    """``[n_val, nlat, nlon]`` residuals ``x - g(encode_mean(x))`` on the validation blocks."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bayesda.split import block_split, validation_split

    train, _ = block_split(tas["time"].values)
    tas_train = tas.isel(time=np.flatnonzero(train))
    _, val = validation_split(tas_train["time"].values)
    x = np.asarray(
        prior.climatology.to_anomaly(tas_train.isel(time=np.flatnonzero(val))).values, np.float32
    )
    mean, _ = prior.encode(jnp.asarray(x))
    return x - np.asarray(jax.vmap(prior.decode)(mean)), tas_train["time"].values[val]


def score(prior, anomalies, n_times: int, seed: int = 0) -> list[dict]:
    import numpy as np

    from bayesda.infer import assimilate
    from bayesda.metrics import verify
    from bayesda.obs import pseudo_obs
    from bayesda.posterior import posterior_dataset

    pick = np.linspace(0, anomalies.sizes["time"] - 1, n_times).round().astype(int)
    rows = []
    for network, n in NETWORKS:
        vals = []
        for k, i in enumerate(pick):
            truth = anomalies.isel(time=i).drop_vars("time")
            obs = pseudo_obs(truth, n, network=network, seed=seed + k)
            a = assimilate(
                prior,
                obs,
                method="laplace",
                num_chains=1,
                num_samples=500,
                seed=seed + k,
                progress_bar=False,
            )
            v = verify(posterior_dataset(a, prior), truth, obs).sel(region="unobserved")
            vals.append({m: float(v[m]) for m in ("rmse", "crps", "coverage_90", "spread_skill")})
        rows.append(
            {
                "network": f"{network}-{n}",
                "rmse": float(np.sqrt(np.mean([v["rmse"] ** 2 for v in vals]))),
                "crps": float(np.mean([v["crps"] for v in vals])),
                "coverage_90": float(np.mean([v["coverage_90"] for v in vals])),
                "spread_skill": float(np.mean([v["spread_skill"] for v in vals])),
            }
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(HERE.parent / "models" / "ncep-air"))
    p.add_argument("--ranks", default="0,16")
    p.add_argument("--n-times", type=int, default=12)
    p.add_argument("--apply", type=int, default=None, help="write this rank into the model")
    p.add_argument("--out", default=str(HERE / "results" / "repr_error_structure"))
    args = p.parse_args(argv)

    from bayesda.checkpoint import load_model, read_card, update_card
    from bayesda.data import load_dataset
    from bayesda.representation import estimate

    prior = load_model(args.model)
    tas = load_dataset("ncep-air")["tas"]
    import numpy as np

    from bayesda.split import block_index

    residuals, val_times = validation_residuals(prior, tas)
    block = block_index(tas["time"].values)[np.searchsorted(tas["time"].values, val_times)]
    fit_half = np.isin(block, np.unique(block)[::2])
    anomalies = prior.climatology.to_anomaly(tas.sel(time=val_times[~fit_half]))
    results = {}
    t0 = time.perf_counter()
    for rank in [int(r) for r in args.ranks.split(",")]:
        candidate = dataclasses.replace(prior, repr_error=estimate(residuals[fit_half], rank=rank))
        results[rank] = score(candidate, anomalies, args.n_times)
        for r in results[rank]:
            print(json.dumps({"rank": rank, **r}), flush=True)
    lines = [
        "# Representation-error structure, chosen on validation fields",
        "",
        f"`python analysis/repr_error_structure.py --ranks {args.ranks} --n-times {args.n_times}`: "
        f"{int(fit_half.sum())} validation residual fields (alternate 7-day blocks) estimate `C`; "
        f"{args.n_times} times from the other validation blocks (training period, never the "
        "test split) are assimilated with MAP + Laplace "
        "(1 x 500 draws), sigma 0.5 K; scores at unobserved grid points. "
        f"Wall {time.perf_counter() - t0:.0f} s.",
        "",
        "| rank of F | network | RMSE (K) | CRPS (K) | 90% coverage | spread/skill |",
        "|---|---|---|---|---|---|",
    ]
    for rank, rows in results.items():
        for r in rows:
            lines.append(
                f"| {rank} | {r['network']} | {r['rmse']:.3f} | {r['crps']:.3f} | "
                f"{r['coverage_90']:.3f} | {r['spread_skill']:.2f} |"
            )
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(table)

    if args.apply is not None:
        rep = estimate(residuals, rank=args.apply)
        card = read_card(args.model)
        card_rep = dict(card.get("repr_error", {}))
        card_rep.update(
            rank=rep.rank,
            mean_sd_K=round(float(rep.sd.mean()), 4),
            chosen_by="analysis/repr_error_structure.py (validation fields)",
        )
        text = (Path(args.model) / "MODEL_CARD.md").read_text()
        marker = "\n## Representation-error structure"
        text = text.split(marker)[0].rstrip() + "\n" + marker.lstrip("\n") + "\n\n"
        text += (
            f"The shipped representation error has rank {rep.rank} "
            f"(mean marginal SD {rep.sd.mean():.3f} K), chosen on validation fields:\n\n"
            + "\n".join(lines[4:])
            + "\n"
        )
        update_card(args.model, card={"repr_error": card_rep}, model_card=text, repr_error=rep)
        print(f"wrote rank {rep.rank} into {args.model}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
