"""The skill benchmark's parts that other studies reuse: networks, methods, scores, figures.

Observation networks (fixed locations, fresh N(0, sigma^2) noise per time), the methods
(bayesda NUTS and MAP + Laplace, optimal interpolation, the optimise-and-restart method,
climatology), scoring with :func:`bayesda.verify.metrics.verify` at unobserved grid points
and at all points, aggregation over times, the markdown table and the calibration figures.
The NCEP benchmark itself is :mod:`analysis.skill.benchmark_skill`; the perfect-model and QG
studies use the same pieces on simulated fields.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time as _time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from tqdm import tqdm

from analysis.common.io import atomic_write
from analysis.common.settings import STATED
from bayesda.geo.grid import Grid
from bayesda.verify import baselines, metrics

NETWORK_KINDS = ("uniform", "station")
METHODS = ("nuts", "laplace", "oi", "restarts", "climatology")
EXPENSIVE = ("nuts", "restarts")
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class BenchConfig:
    """Benchmark settings.

    Attributes:
      n_times: held-out times, evenly spaced over the test set.
      networks: ``(kind, n_obs)`` pairs; kind "uniform" (uniform over the area) or
        "station" (clustered, denser over land), see :func:`bayesda.obs.table.pseudo_obs`.
      methods: methods to run (subset of :data:`METHODS`).
      sigma: observation error SD, K.
      chains, warmup, draws: NUTS settings (Laplace: ``chains x draws`` draws).
      n_samples: draws of the Gaussian baselines.
      n_restarts: restarts of the optimisation baseline.
      expensive_stride: run :data:`EXPENSIVE` methods at every ``k``-th time only (the
        one-hour budget); the tables compare all methods on those paired times.
      method_strides: ``(method, k)`` pairs overriding the stride of single methods (e.g.
        NUTS at every time, restarts at every 10th); methods not named use
        ``expensive_stride`` if expensive, else 1.
      seed: master seed (networks, noise, samplers).
    """

    n_times: int = 60
    networks: tuple[tuple[str, int], ...] = (
        ("uniform", 20),
        ("uniform", 50),
        ("uniform", 200),
        ("station", 20),
        ("station", 50),
        ("station", 200),
    )
    methods: tuple[str, ...] = METHODS
    sigma: float = 0.5
    chains: int = 2
    warmup: int = 200
    draws: int = 200
    n_samples: int = 400
    n_restarts: int = 10
    expensive_stride: int = 3
    method_strides: tuple[tuple[str, int], ...] = ()
    seed: int = 0

    def stride(self, method: str) -> int:
        """Run ``method`` at every ``stride``-th time."""
        default = self.expensive_stride if method in EXPENSIVE else 1
        return dict(self.method_strides).get(method, default)


# Budget of the full run (2-core machine, nothing else running): NUTS 4 x (150 + 200) with
# the compiled sampler of bayesda.inference.sampler is about 5-10 s per time, restarts 4-6 s,
# Laplace
# about 1 s, OI 0.15 s, scoring ~0.1 s per method; NUTS and restarts at every 3rd of 60
# times (120 calls each) keeps the whole run under an hour.
FULL = BenchConfig(chains=4, warmup=150, draws=200)
QUICK = dataclasses.replace(FULL, n_times=6, networks=(("uniform", 50),), expensive_stride=1)


# --------------------------------------------------------------------------------------
# Networks and times
# --------------------------------------------------------------------------------------


def network_locations(grid: Grid, kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed locations ``(lat, lon)`` (degrees) of a "uniform" or "station" network.

    Drawn once per network by :func:`bayesda.obs.table.pseudo_obs` (uniform over the area, or
    clustered and denser over land) and kept for every time, as a real network would be.
    """
    from bayesda.obs.table import pseudo_obs

    if kind not in NETWORK_KINDS:
        raise ValueError(f"unknown network kind {kind!r}; expected one of {NETWORK_KINDS}")
    df = pseudo_obs(grid.template(), n, network=kind, sigma=1.0, seed=seed)
    return df["lat"].to_numpy(), df["lon"].to_numpy()


def observe(truth: xr.DataArray, lat, lon, sigma: float, seed: int) -> pd.DataFrame:
    """Observations ``H truth + e``, ``e ~ N(0, sigma^2)`` at fixed locations."""
    from bayesda.obs.table import pseudo_obs

    return pseudo_obs(truth, lat=lat, lon=lon, sigma=sigma, seed=seed)


def held_out_times(test: xr.DataArray, n: int) -> np.ndarray:
    """``n`` test-time indices evenly spaced over the (season-spanning) test set."""
    if n > test.sizes["time"]:
        raise ValueError(f"asked for {n} times but the test set has {test.sizes['time']}")
    return np.unique(np.round(np.linspace(0, test.sizes["time"] - 1, n)).astype(int))


# --------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------


def make_methods(
    cfg: BenchConfig, prior, bg: baselines.BackgroundCovariance, clim
) -> dict[str, Callable]:
    """Name -> ``f(obs_df, time, seed) -> posterior Dataset``."""
    grid = bg.grid

    def bayes(method: str):
        def run(obs, time, seed):
            from bayesda.inference.assimilate import assimilate
            from bayesda.inference.fields import posterior_dataset
            from bayesda.settings import SamplerSettings

            sampler = SamplerSettings(
                method=method,
                num_chains=cfg.chains,
                num_warmup=cfg.warmup,
                num_samples=cfg.draws,
            )
            a = assimilate(
                prior, obs, sampler=sampler, options=STATED, seed=seed, progress_bar=False
            )
            return posterior_dataset(a, prior)

        return run

    runners = {
        "nuts": bayes("nuts"),
        "laplace": bayes("laplace"),
        "oi": lambda obs, time, seed: baselines.optimal_interpolation(
            bg, obs, n_samples=cfg.n_samples, seed=seed
        ),
        "restarts": lambda obs, time, seed: baselines.optimise_restarts(
            prior, obs, n_restarts=cfg.n_restarts, seed=seed
        ),
        "climatology": lambda obs, time, seed: baselines.climatology_baseline(
            grid, clim.std(time).values, n_samples=cfg.n_samples, seed=seed
        ),
    }
    return {m: runners[m] for m in cfg.methods}


# --------------------------------------------------------------------------------------
# Scoring and aggregation
# --------------------------------------------------------------------------------------


def score_one(
    post: xr.Dataset, truth: xr.DataArray, obs: pd.DataFrame
) -> tuple[dict, np.ndarray, dict]:
    """Scores per region, the coverage curve, and pointwise (sd, error, weight) where unobserved."""
    v = metrics.verify(post, truth, obs)
    scores = {
        (str(r), name): float(v[name].sel(region=r))
        for r in v["region"].values
        for name in v.data_vars
    }
    unobs = ~metrics.observed_mask(Grid.from_xarray(truth), obs)
    curve = metrics.coverage(post, truth, list(LEVELS), mask=unobs).values
    w = np.broadcast_to(np.cos(np.deg2rad(truth["lat"].values))[:, None], truth.shape)
    sel = unobs.values
    point = {
        "sd": post["sd"].values[sel],
        "err": (post["mean"] - truth).values[sel],
        "w": w[sel],
    }
    return scores, curve, point


def _mean_se(x) -> tuple[float, float]:
    """Mean over times and its standard error (NaN for a single time)."""
    x = np.asarray(x, np.float64)
    return float(x.mean()), (float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else np.nan)


def _fmt(cell: pd.DataFrame, name: str, digits: int = 2, se: bool = True) -> str:
    if name not in cell.index:
        return "-"
    v, s = cell.loc[name, "value"], cell.loc[name, "se"]
    return f"{v:.{digits}f} +- {s:.{digits}f}" if se and np.isfinite(s) else f"{v:.{digits}f}"


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Pool per-time scores into one value (and standard error over times) per cell.

    RMSE and spread are pooled as roots of mean squares; the spread/skill ratio as
    ``sqrt(mean spread^2) / sqrt(mean (spread/ratio)^2)``, which keeps the finite-ensemble
    correction of :func:`bayesda.verify.metrics.spread_skill`; other scores are means over times.
    Standard errors treat times as independent (they are >= 1 week apart for most pairs).
    """
    out = []
    for (method, network, region), g in rows.groupby(["method", "network", "region"], sort=False):
        wide = g.pivot(index="time", columns="metric", values="value")
        n = len(wide)

        cells = {}
        for name in wide.columns:
            if name in ("rmse", "spread"):
                ms, se_ms = _mean_se(wide[name] ** 2)
                cells[name] = (np.sqrt(ms), se_ms / (2 * np.sqrt(ms)) if ms > 0 else np.nan)
            elif name == "spread_skill":
                skill2 = (wide["spread"] / wide["spread_skill"]) ** 2
                ratio = np.sqrt((wide["spread"] ** 2).mean() / skill2.mean())
                cells[name] = (ratio, np.nan)
            else:
                cells[name] = _mean_se(wide[name])
        for name, (value, se) in cells.items():
            out.append(
                dict(
                    method=method,
                    network=network,
                    region=region,
                    metric=name,
                    value=value,
                    se=se,
                    n_times=n,
                )
            )
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------


def markdown(summary: pd.DataFrame, cfg: BenchConfig, meta: dict) -> str:
    lines = [
        "# Skill of bayesda and baselines on held-out NCEP fields",
        "",
        f"Generated by `{meta['command']}` on {meta['created_at']} ({meta['machine']}), "
        f"total wall time {meta['total_s']:.0f} s.",
        "",
        f"- prior: `{meta['prior']}`; {meta['n_times']} held-out times "
        f"(block split, every 4th week), evenly spaced over {meta['time_range']}",
        f"- observations: sigma = {cfg.sigma} K, fixed locations per network, fresh noise per time",
        f"- NUTS: {cfg.chains} chains x ({cfg.warmup} warmup + {cfg.draws} draws); Laplace: "
        f"{cfg.chains} x {cfg.draws} draws; OI / climatology: {cfg.n_samples} exact draws; "
        f"restarts: {cfg.n_restarts}",
        "- scores (bayesda.verify.metrics.verify): RMSE of the posterior mean (root of the mean "
        "over times of the lat-weighted MSE), fair ensemble CRPS, 90% central-interval coverage, "
        "spread/skill ratio "
        "(finite-ensemble corrected; 1 = calibrated), mean +- standard error over times",
        "- wall_s: seconds per analysis time (mean over times after the first, which includes "
        "compilation; `wall_first_s` in the CSV)",
        "",
    ]
    subsets = [("paired", "times at which every method ran")]
    strided = [(m, cfg.stride(m)) for m in cfg.methods if cfg.stride(m) > 1]
    if strided:
        which = ", ".join(f"{m} at every {k}-th time" for m, k in strided)
        subsets.append(("all", f"every time each method ran ({which})"))
    for subset, what in subsets:
        for region, title in (("unobserved", "Unobserved grid points"), ("all", "All grid points")):
            sub = summary[(summary.subset == subset) & (summary.region == region)]
            lines += [
                f"## {title}: {what}",
                "",
                "| network | method | times | RMSE (K) | CRPS (K) | 90% cov. | spread/skill "
                "| s / time |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for (network, method), g in sub.groupby(["network", "method"], sort=False):
                cell = g.set_index("metric")
                n = int(cell.loc["rmse", "n_times"]) if "rmse" in cell.index else 0
                lines.append(
                    f"| {network} | {method} | {n} | {_fmt(cell, 'rmse')} | {_fmt(cell, 'crps')} | "
                    f"{_fmt(cell, 'coverage_90')} | {_fmt(cell, 'spread_skill', se=False)} | "
                    f"{_fmt(cell, 'wall_s', 1, se=False)} |"
                )
            lines.append("")
    return "\n".join(lines)


def figures(
    curves: dict, points: dict, cfg: BenchConfig, fig_dir: pathlib.Path, prefix: str
) -> list[pathlib.Path]:
    """Coverage vs nominal level, and binned spread vs error, per network and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    networks = [f"{k}-{n}" for k, n in cfg.networks]
    paths = []
    ncol = min(3, len(networks))
    nrow = int(np.ceil(len(networks) / ncol))

    fig, axes = plt.subplots(nrow, ncol, figsize=(max(4 * ncol, 5.5), 3.8 * nrow), squeeze=False)
    for ax, net in zip(axes.flat, networks, strict=False):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        for method in cfg.methods:
            c = curves.get((method, net))
            if c:
                ax.plot(LEVELS, np.mean(c, axis=0), marker="o", ms=3, label=method)
        ax.set(
            title=f"{net} obs", xlabel="nominal central-interval level", ylabel="empirical coverage"
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes.flat[0].legend(fontsize=8)
    for ax in list(axes.flat)[len(networks) :]:
        ax.set_visible(False)
    fig.suptitle("Calibration at unobserved points:\ncoverage vs nominal level", fontsize=10)
    fig.tight_layout()
    paths.append(fig_dir / f"{prefix}coverage.png")
    atomic_write(paths[-1], lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)

    fig, axes = plt.subplots(nrow, ncol, figsize=(max(4 * ncol, 5.5), 3.8 * nrow), squeeze=False)
    for ax, net in zip(axes.flat, networks, strict=False):
        top = 0.0
        for method in cfg.methods:
            p = points.get((method, net))
            if not p:
                continue
            sd = np.concatenate([q["sd"] for q in p])
            err = np.concatenate([q["err"] for q in p])
            w = np.concatenate([q["w"] for q in p])
            edges = np.quantile(sd, np.linspace(0, 1, 11))
            b = np.clip(np.searchsorted(edges, sd, side="right") - 1, 0, 9)
            spread = [
                np.sqrt(np.average(sd[b == i] ** 2, weights=w[b == i]))
                for i in range(10)
                if np.any(b == i)
            ]
            rmse = [
                np.sqrt(np.average(err[b == i] ** 2, weights=w[b == i]))
                for i in range(10)
                if np.any(b == i)
            ]
            ax.plot(spread, rmse, marker="o", ms=3, label=method)
            top = max(top, max(spread), max(rmse))
        ax.plot([0, top], [0, top], color="0.6", lw=1, ls="--")
        ax.set(
            title=f"{net} obs",
            xlabel="predicted SD (RMS in bin), K",
            ylabel="RMSE of mean in bin, K",
        )
    axes.flat[0].legend(fontsize=8)
    for ax in list(axes.flat)[len(networks) :]:
        ax.set_visible(False)
    fig.suptitle("Spread vs error at unobserved points\n(10 bins of predicted SD)", fontsize=10)
    fig.tight_layout()
    paths.append(fig_dir / f"{prefix}spread_error.png")
    atomic_write(paths[-1], lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------------------
# One network at every time
# --------------------------------------------------------------------------------------


def assimilate_network(
    cfg: BenchConfig, methods: dict, test: xr.DataArray, tidx: np.ndarray, k: int, grid: Grid
) -> tuple[list[dict], dict, dict, dict]:
    """Run every method on one network at every selected time and score it.

    The expensive methods (:data:`EXPENSIVE`) run only at every ``cfg.expensive_stride``-th
    time, the others at all times, unless ``cfg.method_strides`` says otherwise.

    Returns:
      Per-time score rows, coverage curves and pointwise (sd, error) per method, and the
      wall time of each call per method, s.
    """
    kind, n = cfg.networks[k]
    net = f"{kind}-{n}"
    lat, lon = network_locations(grid, kind, n, seed=cfg.seed + 1000 * k)
    rows, curves, points = [], {}, {}
    walls: dict[str, list[float]] = {m: [] for m in methods}
    for i, ti in enumerate(tqdm(tidx, desc=net, unit="time")):
        truth = test.isel(time=ti)
        t = truth["time"].values
        truth = truth.drop_vars("time")
        obs = observe(truth, lat, lon, cfg.sigma, seed=cfg.seed * 1_000_003 + 1000 * k + i)
        for method, fn in methods.items():
            if i % cfg.stride(method):
                continue
            t0 = _time.perf_counter()
            post = fn(obs, t, cfg.seed + i)
            walls[method].append(_time.perf_counter() - t0)
            scores, curve, point = score_one(post, truth, obs)
            for (region, name), value in scores.items():
                rows.append(
                    dict(
                        method=method,
                        network=net,
                        time=str(t),
                        region=region,
                        metric=name,
                        value=value,
                    )
                )
            curves.setdefault((method, net), []).append(curve)
            points.setdefault((method, net), []).append(point)
    return rows, curves, points, walls


def summarise(rows: list[dict], walls: dict, cfg: BenchConfig) -> pd.DataFrame:
    """Aggregate per-time rows over all times and over the paired subset, add wall times.

    Column ``subset`` is "paired" for the times at which every method ran (the fair
    comparison) and "all" for all the times each method ran.
    """
    per_time = pd.DataFrame(rows)
    counts = per_time.groupby("time")["method"].nunique()
    paired_times = counts.index[counts == per_time["method"].nunique()]
    parts = [
        aggregate(per_time).assign(subset="all"),
        aggregate(per_time[per_time.time.isin(paired_times)]).assign(subset="paired"),
    ]
    for (method, net), w in walls.items():
        steady = w[1:] if len(w) > 1 else w
        for subset in ("all", "paired"):
            for region in ("unobserved", "all"):
                for name, value in (("wall_s", np.mean(steady)), ("wall_first_s", w[0])):
                    parts.append(
                        pd.DataFrame(
                            [
                                dict(
                                    method=method,
                                    network=net,
                                    region=region,
                                    metric=name,
                                    value=float(value),
                                    se=np.nan,
                                    n_times=len(w),
                                    subset=subset,
                                )
                            ]
                        )
                    )
    summary = pd.concat(parts, ignore_index=True)
    order = {
        "subset": ["paired", "all"],
        "region": ["unobserved", "all"],
        "network": [f"{k}-{n}" for k, n in cfg.networks],
        "method": list(cfg.methods),
    }
    summary = summary.sort_values(
        ["subset", "region", "network", "method", "metric"],
        key=lambda col: (
            col.map({v: i for i, v in enumerate(order[col.name])}) if col.name in order else col
        ),
        kind="stable",
    ).reset_index(drop=True)
    cols = ["subset", "region", "network", "method", "metric", "value", "se", "n_times"]
    return summary[cols]
