"""Choose the representation error's structure on validation data, and apply it.

The representation error ``r = x - g(z)`` is modelled as ``N(0, C)``
(:mod:`bayesda.prior.representation`) with one of these structures:

* ``K`` (an integer): empirical, the residuals' top ``K`` principal directions plus the
  per-pixel remainder (``0``: per-pixel variance only, no correlation);
* ``matern32`` / ``sqexp``: stationary, ``C = S K S`` with the per-pixel residual SD and an
  isotropic correlation whose length scale is fitted to the residuals' empirical
  correlation-vs-distance (:func:`bayesda.prior.representation.fit_length_scale`);
  ``matern32:ml`` fits it by maximum likelihood instead, ``matern32@400`` fixes it (km).

Which gives honest intervals is an empirical question, so this script answers it on the
*validation* blocks of the training period (never the test split, which stays for the
benchmark). The validation blocks are split in two, alternating whole 7-day blocks: ``C``
(and any length scale) is estimated from the decoder's residuals on one half, and
pseudo-observations of the other half's fields are assimilated with MAP + Laplace (which
matches NUTS on this model, see ``analysis/skill/results/skill.md``) and scored at unobserved
points. (Scoring on the same fields that estimated ``C`` would flatter any empirical part:
it fits those very residuals.) Optimal interpolation is scored on the same fields and
observations for reference, its background covariance estimated from the training split
without the scored half (shrunk 2% to its diagonal, as in :mod:`analysis.skill.benchmark_skill`).
Several models can be compared (``--models d64=models/ncep-air,d100=/tmp/cand-d100``).

Usage::

    BAYESDA_DATA_DIR=../shared/data python -m analysis.repr_error.repr_error_structure \\
        --models d64=models/ncep-air,d100=/tmp/cand-d100 --structures 0,matern32 --n-times 24
    BAYESDA_DATA_DIR=../shared/data python -m analysis.repr_error.repr_error_structure --no-cv \\
        --model /tmp/cand-d100 --apply matern32

``--apply S`` estimates structure ``S`` from *all* validation residuals of ``--model`` (a
stationary length scale refitted on them) and rewrites that model's ``repr_error.npz``
(hashes renewed by :func:`bayesda.prior.checkpoint.update_card`; a stationary ``C`` is stored as
its parameters and rebuilt at load), recording the table in the model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import bayesda
from analysis.common.io import SHIPPED_MODEL, command, results_dir
from analysis.common.settings import STATED

NETWORKS = [("uniform", 20), ("uniform", 50), ("uniform", 200), ("station", 50), ("station", 200)]
METRICS = ("rmse", "crps", "coverage_90", "spread_skill")


def validation_residuals(prior, tas):
    """``[n_val, nlat, nlon]`` residuals ``x - g(encode_mean(x))`` on the validation blocks."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bayesda.data.split import block_split, validation_split

    train, _ = block_split(tas["time"].values)
    tas_train = tas.isel(time=np.flatnonzero(train))
    _, val = validation_split(tas_train["time"].values)
    x = np.asarray(
        prior.climatology.to_anomaly(tas_train.isel(time=np.flatnonzero(val))).values, np.float32
    )
    mean, _ = prior.encode(jnp.asarray(x))
    return x - np.asarray(jax.vmap(prior.decode)(mean)), tas_train["time"].values[val]


def build(structure: str, residuals, grid, *, var_fraction: float, max_rank: int):
    """``(RepresentationError, info)`` of ``structure`` estimated from ``residuals``."""
    import numpy as np

    from bayesda.prior.representation import (
        captured_fraction,
        estimate,
        fit_length_scale,
        stationary,
    )

    if structure.isdigit():
        rep = estimate(residuals, rank=int(structure))
        return rep, {"rank": rep.rank}
    kind, _, fixed = structure.partition("@")
    kind, _, how = kind.partition(":")
    info = {"kind": kind}
    if fixed:
        length = float(fixed)
        info["fit"] = "fixed"
    else:
        t0 = time.perf_counter()
        method = {"": "correlogram", "ml": "likelihood"}[how]
        length, fit = fit_length_scale(residuals, grid, kind, method=method)
        info.update(fit=method, fit_s=round(time.perf_counter() - t0, 1))
        if method == "correlogram":
            info["correlogram"] = {
                k: [round(float(v), 3) for v in fit[k]] for k in ("edges_km", "empirical", "model")
            }
        else:
            info["loglik_per_field"] = round(fit["objective_best"], 2)
    sd = np.sqrt(np.mean(np.square(residuals, dtype=np.float64), axis=0))
    t0 = time.perf_counter()
    rep = stationary(sd, grid, length, kind, var_fraction=var_fraction, max_rank=max_rank)
    info.update(
        length_scale_km=round(length, 1),
        rank=rep.rank,
        captured_fraction=round(captured_fraction(rep), 4),
        build_s=round(time.perf_counter() - t0, 1),
    )
    return rep, info


def _summary(vals: list[dict]) -> dict:
    import numpy as np

    return {
        "rmse": float(np.sqrt(np.mean([v["rmse"] ** 2 for v in vals]))),
        "crps": float(np.mean([v["crps"] for v in vals])),
        "coverage_90": float(np.mean([v["coverage_90"] for v in vals])),
        "spread_skill": float(np.mean([v["spread_skill"] for v in vals])),
        "n_times": len(vals),
    }


def _cases(anomalies, n_times: int, networks, seed: int):
    """``(network name, [(truth, obs, seed)])``: the same fields and observations for all."""
    import numpy as np

    from bayesda.obs.table import pseudo_obs

    pick = np.linspace(0, anomalies.sizes["time"] - 1, n_times).round().astype(int)
    for network, n in networks:
        cases = []
        for k, i in enumerate(pick):
            truth = anomalies.isel(time=i).drop_vars("time")
            cases.append((truth, pseudo_obs(truth, n, network=network, seed=seed + k), seed + k))
        yield f"{network}-{n}", cases


def score(prior, anomalies, n_times: int, seed: int = 0, networks=NETWORKS) -> list[dict]:
    """Laplace assimilation of each network's pseudo-obs, scored at unobserved points."""
    from bayesda.inference.assimilate import assimilate
    from bayesda.inference.fields import posterior_dataset
    from bayesda.settings import SamplerSettings
    from bayesda.verify.metrics import verify

    laplace = SamplerSettings(method="laplace", num_chains=1, num_samples=500)

    rows = []
    for name, cases in _cases(anomalies, n_times, networks, seed):
        vals = []
        for truth, obs, s in cases:
            a = assimilate(prior, obs, sampler=laplace, options=STATED, seed=s, progress_bar=False)
            v = verify(posterior_dataset(a, prior), truth, obs).sel(region="unobserved")
            vals.append({m: float(v[m]) for m in METRICS})
        rows.append({"network": name, **_summary(vals)})
    return rows


def score_oi(background, anomalies, n_times: int, seed: int = 0, networks=NETWORKS) -> list[dict]:
    """Optimal interpolation on the same fields and observations as :func:`score`."""
    from bayesda.verify.baselines import optimal_interpolation
    from bayesda.verify.metrics import verify

    rows = []
    for name, cases in _cases(anomalies, n_times, networks, seed):
        vals = []
        for truth, obs, s in cases:
            post = optimal_interpolation(background, obs, n_samples=500, seed=s)
            v = verify(post, truth, obs).sel(region="unobserved")
            vals.append({m: float(v[m]) for m in METRICS})
        rows.append({"network": name, **_summary(vals)})
    return rows


def _models(args) -> dict[str, str]:
    if not args.models:
        return {Path(args.model).name: args.model}
    out = {}
    for item in args.models.split(","):
        name, _, path = item.partition("=")
        out[name if path else Path(name).name] = path or name
    return out


def markdown(results: dict, header: str) -> list[str]:
    lines = [
        header,
        "",
        "| model | representation error | network | RMSE (K) | CRPS (K) | CRPS - OI | "
        "90% coverage | spread/skill |",
        "|---|---|---|---|---|---|---|---|",
    ]
    oi = {r["network"]: r for r in results.get("oi", [])}
    for r in results["rows"]:
        d = r["crps"] - oi[r["network"]]["crps"] if r["network"] in oi else float("nan")
        lines.append(
            f"| {r['model']} | {r['label']} | {r['network']} | {r['rmse']:.3f} | {r['crps']:.3f} | "
            f"{d:+.3f} | {r['coverage_90']:.3f} | {r['spread_skill']:.2f} |"
        )
    for r in results.get("oi", []):
        lines.append(
            f"| OI | full shrunk covariance | {r['network']} | {r['rmse']:.3f} | {r['crps']:.3f} | "
            f"+0.000 | {r['coverage_90']:.3f} | {r['spread_skill']:.2f} |"
        )
    return lines


def label(structure: str, info: dict) -> str:
    if structure.isdigit():
        return "per-pixel (rank 0)" if structure == "0" else f"empirical rank {structure}"
    how = {"correlogram": "correlogram fit", "likelihood": "ML fit", "fixed": "fixed"}
    return (
        f"{info['kind']} L={info['length_scale_km']:.0f} km, {how[info['fit']]} "
        f"(rank {info['rank']}, {100 * info['captured_fraction']:.1f}%)"
    )


def cross_validate(args, tas) -> tuple[dict, str]:
    import numpy as np

    from bayesda.data.split import block_index, block_split
    from bayesda.prior.checkpoint import load_model
    from bayesda.verify.baselines import BackgroundCovariance

    networks = [(n.split("-")[0], int(n.split("-")[1])) for n in args.networks.split(",")]
    structures = args.structures.split(",")
    results = {"rows": [], "fits": {}, "oi": []}
    times = tas["time"].values
    t0 = time.perf_counter()
    anomalies = clim0 = None
    for name, path in _models(args).items():
        prior = load_model(path)
        residuals, val_times = validation_residuals(prior, tas)
        block = block_index(times)[np.searchsorted(times, val_times)]
        fit_half = np.isin(block, np.unique(block)[::2])
        if anomalies is None:
            clim0 = prior.climatology
            anomalies = clim0.to_anomaly(tas.sel(time=val_times[~fit_half]))
            scored = val_times[~fit_half]
        else:  # every model must be scored on the same anomalies
            other = prior.climatology.to_anomaly(tas.sel(time=scored))
            assert np.allclose(other.values, anomalies.values, atol=1e-4), "climatologies differ"
        for structure in structures:
            rep, info = build(
                structure,
                residuals[fit_half],
                prior.grid,
                var_fraction=args.var_fraction,
                max_rank=args.max_rank,
            )
            results["fits"][f"{name}/{structure}"] = info
            print(json.dumps({"model": name, "structure": structure, **info}), flush=True)
            t1 = time.perf_counter()
            rows = score(
                dataclasses.replace(prior, repr_error=rep),
                anomalies,
                args.n_times,
                networks=networks,
            )
            for r in rows:
                r.update(
                    model=name,
                    structure=structure,
                    label=label(structure, info),
                    wall_s=round(time.perf_counter() - t1, 1),
                )
                print(json.dumps(r), flush=True)
            results["rows"].extend(rows)
    if not args.no_oi:
        train, _ = block_split(times)
        keep = train & ~np.isin(times, scored)
        bg = BackgroundCovariance.from_anomalies(
            clim0.to_anomaly(tas.isel(time=np.flatnonzero(keep)))
        )
        results["oi"] = score_oi(bg, anomalies, args.n_times, networks=networks)
        for r in results["oi"]:
            print(json.dumps({"model": "OI", **r}), flush=True)
    n_fit = int(fit_half.sum())
    header = (
        "# Representation-error structure, chosen on validation fields\n\n"
        f"`{command(__spec__.name, [])} --models {args.models or args.model} "
        f"--structures {args.structures} --networks {args.networks} --n-times {args.n_times} "
        f"--var-fraction {args.var_fraction} --max-rank {args.max_rank}`: "
        f"{n_fit} validation residual fields (alternate 7-day blocks) estimate `C` (and fit any "
        f"length scale); {args.n_times} times from the other validation "
        "blocks (training period, never the test split) are assimilated with MAP + Laplace "
        "(1 x 500 draws), sigma 0.5 K, the same fields and observations for every row; scores at "
        "unobserved grid points, mean over times (RMSE: root mean square). OI: background "
        "covariance from the training split minus the scored fields, shrunk 2% to its diagonal "
        f"(as in the skill benchmark). Wall {time.perf_counter() - t0:.0f} s on 2 CPU cores."
    )
    return results, header


def apply(args, tas, table_lines: list[str]) -> None:
    from bayesda.prior.checkpoint import load_model, read_card, update_card

    prior = load_model(args.model)
    residuals, _ = validation_residuals(prior, tas)
    rep, info = build(
        args.apply, residuals, prior.grid, var_fraction=args.var_fraction, max_rank=args.max_rank
    )
    card = read_card(args.model)
    card_rep = {
        k: v
        for k, v in card.get("repr_error", {}).items()
        if k not in ("structure", "kind", "length_scale_km", "captured_fraction")
    }
    card_rep.update(
        structure="empirical" if args.apply.isdigit() else "stationary",
        **{k: v for k, v in info.items() if k not in ("fit_s", "build_s")},
        mean_sd_K=round(float(rep.sd.mean()), 4),
        chosen_by="analysis/repr_error/repr_error_structure.py (validation fields)",
    )
    text = (Path(args.model) / "MODEL_CARD.md").read_text()
    marker = "\n## Representation-error structure"
    text = text.split(marker)[0].rstrip() + "\n" + marker.lstrip("\n") + "\n\n"
    text += (
        f"The shipped representation error is {label(args.apply, info)} (mean marginal SD "
        f"{rep.sd.mean():.3f} K), estimated from all {len(residuals)} validation residual "
        "fields; chosen on validation fields:\n\n" + "\n".join(table_lines) + "\n"
    )
    update_card(args.model, card={"repr_error": card_rep}, model_card=text, repr_error=rep)
    print(f"wrote {label(args.apply, info)} into {args.model}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        default=str(SHIPPED_MODEL),
        help="the model to cross-validate (without --models) and to --apply to",
    )
    p.add_argument("--models", default=None, help="name=dir,... to cross-validate")
    p.add_argument(
        "--structures",
        "--ranks",
        dest="structures",
        default="0,matern32",
        help="comma list: an integer rank, matern32, sqexp, or kind@length_km",
    )
    p.add_argument("--networks", default=",".join(f"{k}-{n}" for k, n in NETWORKS))
    p.add_argument("--n-times", type=int, default=24)
    p.add_argument("--var-fraction", type=float, default=0.99)
    p.add_argument("--max-rank", type=int, default=400)
    p.add_argument("--no-oi", action="store_true")
    p.add_argument("--no-cv", action="store_true", help="only --apply (table from --out)")
    p.add_argument("--apply", default=None, help="write this structure into --model")
    p.add_argument("--out", default=str(results_dir("repr_error") / "repr_error_structure"))
    args = p.parse_args(argv)

    from bayesda.data.datasets import load_dataset

    tas = load_dataset("ncep-air")["tas"]
    out = Path(args.out)
    if args.no_cv:
        lines = out.with_suffix(".md").read_text().splitlines()
        table = [x for x in lines if x.startswith("|")]
    else:
        results, header = cross_validate(args, tas)
        lines = markdown(results, header)
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        print("\n".join(lines))
        table = lines[2:]
    if args.apply is not None:
        apply(args, tas, table)
    return 0


if __name__ == "__main__":
    bayesda.set_host_device_count()  # one CPU device per chain, before any JAX computation
    bayesda.enable_compilation_cache()
    raise SystemExit(main())
