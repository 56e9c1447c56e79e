"""Windows of analysis times on held-out NCEP blocks: skill against single-time bayesda and OI.

For held-out windows of 9 six-hourly times (+-1 day; all inside one test block of the
model's split, so the truth and its neighbours were never trained on), each network
observes every time (fixed sites, fresh N(0, 0.5^2) noise per time) and each method
analyses the middle time:

  window        bayesda with the window model (bayesda.inference.window), all 9 times
  single        bayesda at the middle time alone (the same stated-error model as the window)
  spacetime_oi  OI with the empirical lagged covariance of the training fields over the
                same 9 times (bayesda.verify.baselines.spacetime_oi)
  single_oi     OI at the middle time alone

Networks (station-like sites, bayesda.obs.table.pseudo_obs, network="station"):

  station-N            the same N sites at every time (the house convention)
  station-N-rotating   the middle time's N sites as above; every other time N sites drawn
                       afresh from a pool of 5 N sites (networks whose reports come and go)
  station-N-gap        station-N with no observation at the middle time and its two
                       neighbours: the middle time is 12 h from the nearest observed time;
                       "single" is then the prior and "single_oi" the OI background

Scores at the middle time's unobserved grid points (not nearest to any of its network's
sites; for the gap, those of station-N), bayesda.verify.metrics.verify: CRPS (fair ensemble),
RMSE of the mean, 90% coverage, spread/skill; means over windows with standard errors over
windows. For the gap the interval's widening with the distance to the nearest observed
time is reported at 0, 1 and 2 steps.

The OI shrinkages (single-time and space-time) are chosen on windows of the validation
blocks with covariances from the fit blocks (CRPS, station-N and station-N-rotating), so
that the peers are tuned as fairly as the dynamics were.

``--throughput`` measures the single-time reanalysis and the smoother side by side on the
same observed times (bayesda.workflows.reanalysis / .smoother), same sampler settings.

Usage (repository root; nice, the machine is shared)::

    BAYESDA_DATA_DIR=../shared/data nice -n 10 python -m analysis.window.evaluate --windows 24
    ... -m analysis.window.evaluate --nuts-check 6   # NUTS against Laplace on a few windows
    ... -m analysis.window.evaluate --throughput     # reanalysis throughput, smoother vs single
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import xarray as xr

from analysis.common.io import SHIPPED_MODEL as MODEL
from analysis.common.io import command, write_json, write_text
from analysis.common.window import RESULTS, load_split

HALF = 4  # +-1 day of 6-hourly times
T = 2 * HALF + 1
SIGMA = 0.5
SHRINKAGES = (0.02, 0.05, 0.1, 0.2, 0.3)
METHODS = ("window", "single", "spacetime_oi", "single_oi")


def _ensemble_of_prior(prior, n: int, seed: int) -> xr.Dataset:
    """Draws of ``g(z) + r``, ``z ~ N(0, I)``: bayesda's answer at a time without data."""
    from bayesda.verify.baselines import ensemble_dataset

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, prior.latent_dim)).astype(np.float32)
    x = np.asarray(prior.decode(z)) + prior.repr_error.sample(rng, n)
    return ensemble_dataset(x[None], prior.grid, method="prior")


def window_centres(block_times: np.ndarray, n: int) -> list[int]:
    """``n`` window middles spread over the blocks (rows of ``block_times``), each with
    ``HALF`` times of its block on either side."""
    cands = [int(b[p]) for p in (6, 13, 20) for b in block_times]
    cands = sorted(cands)
    pick = np.unique(np.round(np.linspace(0, len(cands) - 1, n)).astype(int))
    return [cands[i] for i in pick]


def blocks_of(mask: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Rows of consecutive indices (one per whole 7-day block) where ``mask`` is True."""
    idx = np.flatnonzero(mask)
    cuts = np.flatnonzero(np.diff(times[idx]) != np.timedelta64(6, "h")) + 1
    runs = [r for r in np.split(idx, cuts) if r.size == 28]
    return np.stack(runs)


class Setup:
    """Everything shared: prior, anomalies, networks, covariances."""

    def __init__(self, args):
        from bayesda.obs.table import pseudo_obs
        from bayesda.prior.checkpoint import load_model

        self.args = args
        self.prior = load_model(args.model)
        self.split = load_split(self.prior)
        self.A = self.split.anomalies
        self.times = self.A["time"].values
        self.pools = {
            n: pseudo_obs(self.A.isel(time=0), 5 * n, network="station", sigma=1.0, seed=5 + n)
            for n in args.networks
        }

    def obs_for(self, n: int, layout: str, idx: np.ndarray, seed: int) -> list:
        """The observations of each window time (None where there are none)."""
        from bayesda.obs.table import pseudo_obs

        pool = self.pools[n]
        rng = np.random.default_rng([seed, n, 7])
        out = []
        for k, i in enumerate(idx):
            if layout == "gap" and abs(k - HALF) <= 1:
                out.append(None)
                continue
            sites = pool.iloc[:n]
            if layout == "rotating" and k != HALF:
                sites = pool.iloc[np.sort(rng.choice(len(pool), n, replace=False))]
            out.append(
                pseudo_obs(
                    self.A.isel(time=int(i)),
                    lat=sites["lat"].to_numpy(),
                    lon=sites["lon"].to_numpy(),
                    sigma=SIGMA,
                    seed=int(seed) * 100 + k,
                )
            )
        return out


def tune_shrinkage(setup: Setup) -> dict:
    """OI and space-time OI shrinkage by CRPS on validation windows (fit-block covariances)."""
    from bayesda.verify import baselines as B
    from bayesda.verify import metrics as M

    sp, A = setup.split, setup.A
    fit = A.isel(time=np.flatnonzero(sp.fit))
    val_blocks = blocks_of(sp.val, setup.times)
    centres = window_centres(val_blocks, setup.args.tune_windows)
    scores: dict = {("oi", a): [] for a in SHRINKAGES} | {("st", a): [] for a in SHRINKAGES}
    for a in SHRINKAGES:
        bg = B.BackgroundCovariance.from_anomalies(fit, shrinkage=a)
        st = B.SpaceTimeCovariance.from_anomalies(fit, T, step_hours=6, shrinkage=a)
        for w, c in enumerate(centres):
            idx = np.arange(c - HALF, c + HALF + 1)
            truth = A.isel(time=int(c))
            for n in setup.args.networks:
                mask = ~M.observed_mask(setup.prior.grid, setup.pools[n].iloc[:n])
                for layout in ("fixed", "rotating"):
                    obs = setup.obs_for(n, layout, idx, seed=10_000 + w)
                    ds = B.spacetime_oi(st, obs, HALF, n_samples=2, seed=w)
                    crps = M.crps_gaussian(ds["mean"], ds["sd"], truth, mask=mask)
                    scores[("st", a)].append(float(crps))
                    if layout == "fixed":
                        ds = B.optimal_interpolation(bg, obs[HALF], n_samples=2, seed=w)
                        crps = M.crps_gaussian(ds["mean"], ds["sd"], truth, mask=mask)
                        scores[("oi", a)].append(float(crps))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    best = {
        kind: min(SHRINKAGES, key=lambda a, kind=kind: mean[(kind, a)]) for kind in ("oi", "st")
    }
    print(f"shrinkage on validation: {best} ({len(centres)} windows)", flush=True)
    return {
        "single_oi": best["oi"],
        "spacetime_oi": best["st"],
        "validation_crps": {f"{k}/{a}": v for (k, a), v in mean.items()},
        "n_windows": len(centres),
    }


def sampler_settings(args, method: str):
    from bayesda.settings import SamplerSettings

    if method == "laplace":
        return SamplerSettings(method="laplace", num_chains=1, num_samples=args.draws)
    return SamplerSettings(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.draws)


def methods_for(setup: Setup, shrink: dict, sampler) -> dict[str, Callable]:
    """``name -> f(obs [T], idx [T], seed, targets) -> {target: posterior Dataset}``.

    NUTS runs each at its own default target acceptance (the window's is lower: its trees
    then take as many steps as a single time's, :data:`WINDOW_TARGET_ACCEPT`)."""
    from bayesda.inference.assimilate import assimilate
    from bayesda.inference.fields import posterior_dataset
    from bayesda.inference.window import STATED, WINDOW_TARGET_ACCEPT, assimilate_window
    from bayesda.verify import baselines as B

    window_sampler = sampler.replace(target_accept=WINDOW_TARGET_ACCEPT)

    prior, A = setup.prior, setup.A
    train = A.isel(time=np.flatnonzero(setup.split.train))
    bg = B.BackgroundCovariance.from_anomalies(train, shrinkage=shrink["single_oi"])
    st = B.SpaceTimeCovariance.from_anomalies(
        train, T, step_hours=6, shrinkage=shrink["spacetime_oi"]
    )
    ns = setup.args.draws

    def window(obs, idx, seed, targets):
        res = assimilate_window(
            prior, obs, setup.times[idx], seed=seed, sampler=window_sampler, want=targets
        )
        return {k: posterior_dataset(a, prior) for k, a in zip(targets, res, strict=True)}

    def single(obs, idx, seed, targets):
        out = {}
        for k in targets:
            if obs[k] is None:
                out[k] = _ensemble_of_prior(prior, ns, seed)
            else:
                a = assimilate(
                    prior, obs[k], sampler=sampler, options=STATED, seed=seed, progress_bar=False
                )
                out[k] = posterior_dataset(a, prior)
        return out

    def spacetime(obs, idx, seed, targets):
        return {k: B.spacetime_oi(st, obs, k, n_samples=ns, seed=seed) for k in targets}

    def single_oi(obs, idx, seed, targets):
        out = {}
        for k in targets:
            if obs[k] is None:
                out[k] = B.climatology_baseline(prior.grid, bg.sd, n_samples=ns, seed=seed)
            else:
                out[k] = B.optimal_interpolation(bg, obs[k], n_samples=ns, seed=seed)
        return out

    return {"window": window, "single": single, "spacetime_oi": spacetime, "single_oi": single_oi}


def score(post: xr.Dataset, truth: xr.DataArray, mask) -> dict:
    from bayesda.verify import metrics as M

    # the network's unobserved points (a time without observations has no mask of its own)
    crps = M.crps_ensemble(post, truth, mask=mask)
    ss = M.spread_skill(post, truth, mask=mask)
    return {
        "crps": float(crps),
        "mse": float(M.rmse(post, truth, mask=mask)) ** 2,
        "coverage_90": float(M.coverage(post, truth, 0.9, mask=mask)),
        "spread2": float(ss["spread"]) ** 2,
        "skill2": float(ss["skill"]) ** 2,
        "n_members": int(ss.attrs["n_members"]),
    }


def run_skill(setup: Setup, shrink: dict, sampler, *, layouts, n_windows, methods) -> pd.DataFrame:
    fns = methods_for(setup, shrink, sampler)
    test_blocks = blocks_of(setup.split.test, setup.times)
    centres = window_centres(test_blocks, n_windows)
    rows = []
    t_start = time.perf_counter()
    for n in setup.args.networks:
        from bayesda.verify import metrics as M

        mask = ~M.observed_mask(setup.prior.grid, setup.pools[n].iloc[:n])
        for layout in layouts:
            targets = [HALF - 2, HALF - 1, HALF] if layout == "gap" else [HALF]
            for w, c in enumerate(centres):
                idx = np.arange(c - HALF, c + HALF + 1)
                obs = setup.obs_for(n, layout, idx, seed=w)
                for m in methods:
                    t0 = time.perf_counter()
                    posts = fns[m](obs, idx, 1000 * w + n, targets)
                    wall = time.perf_counter() - t0
                    for k, post in posts.items():
                        truth = setup.A.isel(time=int(idx[k]))
                        rows.append(
                            {
                                "n": n,
                                "layout": layout,
                                "window": w,
                                "time": str(setup.times[c])[:13],
                                "method": m,
                                # steps to the nearest observed time (gap: none at HALF +- 1)
                                "distance": max(0, 2 - abs(k - HALF)) if layout == "gap" else 0,
                                "target": k,
                                "wall_s": wall / len(posts),
                                **score(post, truth, mask),
                            }
                        )
                print(
                    f"[{time.perf_counter() - t_start:6.0f} s] station-{n} {layout} window {w}: "
                    + ", ".join(
                        f"{r['method']} {r['crps']:.3f}"
                        for r in rows[-len(methods) * len(targets) :]
                        if r["target"] == HALF
                    ),
                    flush=True,
                )
    return pd.DataFrame(rows)


def _network_name(n: int, layout: str) -> str:
    return f"station-{n}" + ("" if layout == "fixed" else f"-{layout}")


def aggregate(df: pd.DataFrame, cmd: str) -> tuple[list, dict]:
    """The window.json rows (middle time) and their standard errors and paired ratios."""
    rows, extra = [], {}
    mid = df[df["target"] == HALF]
    for (n, layout), g in mid.groupby(["n", "layout"], sort=False):
        name = _network_name(n, layout)
        by = {m: x.set_index("window") for m, x in g.groupby("method")}
        for m, x in by.items():
            rows.append(
                {
                    "network": name,
                    "method": m,
                    "crps": round(float(x["crps"].mean()), 4),
                    "rmse": round(float(np.sqrt(x["mse"].mean())), 4),
                    "coverage_90": round(float(x["coverage_90"].mean()), 4),
                    "spread_skill": round(
                        float(np.sqrt(x["spread2"].mean() / x["skill2"].mean())), 4
                    ),
                    "n_times": int(len(x)),
                    "command": cmd,
                }
            )
            extra.setdefault(name, {})[m] = {
                "crps_se": round(float(x["crps"].std(ddof=1) / np.sqrt(len(x))), 4),
                "coverage_90_se": round(float(x["coverage_90"].std(ddof=1) / np.sqrt(len(x))), 4),
                "wall_s_per_time": round(float(x["wall_s"].mean()), 2),
            }
        if "window" in by:
            w = by["window"]["crps"]
            for peer in ("single", "spacetime_oi"):
                if peer in by:
                    p = by[peer]["crps"].reindex(w.index)
                    r = float(w.mean() / p.mean())
                    # delta method on the paired means
                    d = w / w.mean() - p / p.mean()
                    se = r * float(d.std(ddof=1) / np.sqrt(len(d)))
                    extra[name][f"crps_ratio_window_over_{peer}"] = {
                        "ratio": round(r, 4),
                        "se": round(se, 4),
                    }
    return rows, extra


def widening(df: pd.DataFrame) -> dict:
    """Gap windows: spread, coverage and spread/skill against the distance (steps) to the
    nearest observed time."""
    out: dict = {}
    gap = df[df["layout"] == "gap"]
    for (n, m), g in gap.groupby(["n", "method"]):
        out.setdefault(f"station-{n}-gap", {})[m] = {
            f"{6 * d} h": {
                "spread": round(float(np.sqrt(x["spread2"].mean())), 4),
                "coverage_90": round(float(x["coverage_90"].mean()), 4),
                "spread_skill": round(float(np.sqrt(x["spread2"].mean() / x["skill2"].mean())), 4),
                "crps": round(float(x["crps"].mean()), 4),
                "n_times": int(len(x)),
            }
            for d, x in g.groupby("distance")
        }
    return out


def throughput(setup: Setup, args) -> dict:
    """Per-time wall of the single-time reanalysis and the smoother on the same times."""
    import tempfile

    from bayesda.settings import ReanalysisSettings
    from bayesda.workflows.reanalysis import reanalyse
    from bayesda.workflows.smoother import reanalyse_smoother

    test_blocks = blocks_of(setup.split.test, setup.times)
    block = test_blocks[args.throughput_block]
    idx = block[HALF : HALF + args.throughput_times]
    n = setup.args.networks[0]
    frames = []
    ctx = np.arange(idx[0] - HALF, idx[-1] + HALF + 1)
    for k, o in enumerate(setup.obs_for(n, "fixed", ctx, seed=77)):
        o = o.copy()
        o["time"] = setup.times[ctx[k]]
        frames.append(o)
    obs = pd.concat(frames, ignore_index=True)
    start, end = setup.times[idx[0]], setup.times[idx[-1]]
    from bayesda.inference.window import WINDOW_TARGET_ACCEPT

    settings = ReanalysisSettings(seed=1)  # each as shipped: the reanalysis preset, and the
    smooth_settings = ReanalysisSettings(seed=1, target_accept=WINDOW_TARGET_ACCEPT)  # window's
    walls: dict = {"single": [], "smoother": []}
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        for rep in range(args.throughput_repeats):
            for kind in ("single", "smoother"):
                out = pathlib.Path(tmp) / f"{kind}{rep}.zarr"
                t0 = time.perf_counter()
                if kind == "single":
                    reanalyse(
                        setup.prior,
                        obs,
                        out,
                        start=start,
                        end=end,
                        settings=settings,
                        progress=False,
                    )
                else:
                    reanalyse_smoother(
                        setup.prior,
                        obs,
                        out,
                        start=start,
                        end=end,
                        settings=smooth_settings,
                        window_times=T,
                        stride=args.stride,
                        progress=False,
                    )
                wall = time.perf_counter() - t0
                walls[kind].append(wall / idx.size)
                verdicts = xr.open_zarr(out, consolidated=False)["verdict"].values.tolist()
                print(
                    f"throughput {kind} rep {rep}: {wall:.0f} s for {idx.size} times, "
                    f"verdicts {verdicts}",
                    flush=True,
                )
    single, smooth = np.mean(walls["single"]), np.mean(walls["smoother"])
    return {
        "throughput_ratio": round(float(single / smooth), 4),
        "throughput": {
            "single_s_per_time": [round(x, 1) for x in walls["single"]],
            "smoother_s_per_time": [round(x, 1) for x in walls["smoother"]],
            "n_times": int(idx.size),
            "period": [str(start)[:16], str(end)[:16]],
            "network": f"station-{n}",
            "sampler": "REANALYSIS preset, 4 chains x (100 warmup + 500 draws), both; target "
            f"acceptance 0.8 (single) and {WINDOW_TARGET_ACCEPT} (smoother), each's default",
            "smoother": {"window_times": T, "stride": args.stride},
            "order": "single then smoother, repeated; same process, same machine",
        },
    }


def assess(result: dict) -> list[dict]:
    """Each target of issue 28 against the measured numbers: ``{"target", "network",
    "value", "met"}`` (value None when not measured)."""
    out = []
    rows = {(r["network"], r["method"]): r for r in result.get("skill", [])}
    ratios = result.get("standard_errors", {})
    for (net, m), r in rows.items():
        if m != "window":
            continue
        for peer, bound in (("single", 0.85), ("spacetime_oi", 1.0)):
            q = ratios.get(net, {}).get(f"crps_ratio_window_over_{peer}")
            if q is not None:
                out.append(
                    {
                        "target": f"CRPS window / {peer} <= {bound}",
                        "network": net,
                        "value": q["ratio"],
                        "se": q["se"],
                        "met": bool(q["ratio"] <= bound),
                    }
                )
        cov, ss = r["coverage_90"], r["spread_skill"]
        out.append(
            {
                "target": "coverage_90 in [0.88, 0.92]",
                "network": net,
                "value": cov,
                "met": bool(0.88 <= cov <= 0.92),
            }
        )
        out.append(
            {
                "target": "spread_skill in [0.9, 1.1]",
                "network": net,
                "value": ss,
                "met": bool(0.9 <= ss <= 1.1),
            }
        )
    for net, by in result.get("interval_widening", {}).items():
        w = by.get("window")
        if w:
            spread = [w[k]["spread"] for k in ("0 h", "6 h", "12 h") if k in w]
            out.append(
                {
                    "target": "interval widens with the distance to the nearest observed time",
                    "network": net,
                    "value": spread,
                    "met": bool(all(a < b for a, b in zip(spread, spread[1:], strict=False))),
                }
            )
    if "throughput_ratio" in result:
        tr = result["throughput_ratio"]
        out.append(
            {
                "target": "smoother throughput / single-time >= 0.5",
                "network": result["throughput"]["network"],
                "value": tr,
                "met": bool(tr >= 0.5),
            }
        )
    return out


def markdown(result: dict) -> str:
    """``window.md``: the rows, their standard errors and the targets, readable alone."""
    lines = [
        "# Windows of analysis times (issue 28): held-out NCEP windows",
        "",
        f"Made by `{result.get('skill', [{}])[0].get('command', '?')}`"
        + (f" and `{result['throughput_command']}`" if "throughput_command" in result else "")
        + ". Scores at the middle time's unobserved grid points, means over windows "
        "(+- standard error over windows); `window.json` holds the same numbers.",
        "",
        "| network | method | windows | CRPS (K) | RMSE (K) | 90% cov. | spread/skill |",
        "|---|---|---|---|---|---|---|",
    ]
    se = result.get("standard_errors", {})
    for r in result.get("skill", []):
        e = se.get(r["network"], {}).get(r["method"], {})
        lines.append(
            f"| {r['network']} | {r['method']} | {r['n_times']} | {r['crps']:.3f} +- "
            f"{e.get('crps_se', float('nan')):.3f} | {r['rmse']:.3f} | {r['coverage_90']:.3f} +- "
            f"{e.get('coverage_90_se', float('nan')):.3f} | {r['spread_skill']:.3f} |"
        )
    lines += ["", "## Targets", "", "| target | network | value | met |", "|---|---|---|---|"]
    for t in result.get("targets", []):
        v = t["value"]
        if isinstance(v, float):
            v = f"{v:.3f}" + (f" +- {t['se']:.3f}" if "se" in t else "")
        lines.append(f"| {t['target']} | {t['network']} | {v} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(MODEL))
    p.add_argument("--networks", default="20,50")
    p.add_argument("--layouts", default="fixed,rotating,gap")
    p.add_argument("--windows", type=int, default=24, help="held-out windows per network")
    p.add_argument("--tune-windows", type=int, default=12, help="validation windows (shrinkage)")
    p.add_argument("--sampler", choices=("laplace", "nuts"), default="laplace")
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--draws", type=int, default=400)
    p.add_argument(
        "--nuts-check",
        type=int,
        default=0,
        metavar="K",
        help="instead: window and single with NUTS and with Laplace on the first K windows",
    )
    p.add_argument("--throughput", action="store_true")
    p.add_argument("--throughput-times", type=int, default=5)
    p.add_argument("--throughput-block", type=int, default=3)
    p.add_argument("--throughput-repeats", type=int, default=1)
    p.add_argument("--stride", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS / "window.json"))
    p.add_argument(
        "--report", action="store_true", help="only redo the targets and window.md from --out"
    )
    args = p.parse_args(argv)
    args.networks = [int(x) for x in args.networks.split(",")]
    cmd = command("analysis.window.evaluate", argv)
    import bayesda

    bayesda.set_host_device_count()
    bayesda.enable_compilation_cache()
    out_path = pathlib.Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.is_file() else {}
    t0 = time.perf_counter()
    if args.report:
        pass
    elif args.throughput:
        setup = Setup(args)
        tp = throughput(setup, args)
        result.update(tp)
        result["throughput_command"] = cmd
    elif args.nuts_check:
        setup = Setup(args)
        shrink = result.get("shrinkage") or tune_shrinkage(setup)
        nuts = sampler_settings(args, "nuts")  # the window's at WINDOW_TARGET_ACCEPT
        check = {}
        for kind, sampler in (("nuts", nuts), ("laplace", sampler_settings(args, "laplace"))):
            df = run_skill(
                setup,
                shrink,
                sampler,
                layouts=["fixed", "rotating"],
                n_windows=args.nuts_check,
                methods=("window", "single"),
            )
            df.to_csv(out_path.with_name(f"{out_path.stem}_check_{kind}.csv"), index=False)
            check[kind] = aggregate(df, cmd)[0]
        result["nuts_check"] = {"sampler": nuts.to_dict(), "command": cmd, **check}
    else:
        setup = Setup(args)
        shrink = tune_shrinkage(setup)
        sampler = sampler_settings(args, args.sampler)
        layouts = args.layouts.split(",")
        df = run_skill(
            setup, shrink, sampler, layouts=layouts, n_windows=args.windows, methods=METHODS
        )
        df.to_csv(out_path.with_suffix(".csv"), index=False)
        rows, extra = aggregate(df, cmd)
        result["skill"] = rows
        result["standard_errors"] = extra
        result["interval_widening"] = widening(df)
        result["shrinkage"] = shrink
        result["sampler"] = sampler.to_dict()
        dyn = json.loads((RESULTS / "dynamics.json").read_text())
        result["forecast"] = {"command": dyn["command"], **dyn["forecast"]}
        result["skill_wall_s"] = round(time.perf_counter() - t0, 1)
    result["targets"] = assess(result)
    write_json(out_path, result, indent=2)
    if "skill" in result:
        write_text(out_path.with_suffix(".md"), markdown(result))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
