"""Error rates of the convergence verdict: false alarms on good runs, misses on bad ones.

Good runs (the verdict should PASS):

* ``linear``: the linear-Gaussian prior ``g(z) = W z + b`` with ``W, b`` the shipped
  decoder's Jacobian and value at ``z = 0`` (latent 100, the NCEP grid's 1325 pixels, the
  shipped rank-400 Matern representation error), 50 station-like observations of a field
  drawn from that prior, NUTS at the reanalysis defaults. Its posterior is Gaussian in
  closed form; each run's posterior mean of ``z`` is compared with the exact one in units
  of its Monte Carlo standard error (``verified``: all 100 |z-scores| < 4.5).
* ``shipped``: the shipped model ``models/ncep-air`` on held-out NCEP times at the
  reanalysis defaults, several seeds of one time checked against a long reference run of
  that time (4 x 2000 draws) the same way.

Bad runs (the verdict should WARN or FAIL):

* ``stuck-chain``: a good run whose first chain stops moving after its first draw for
  long stretches (it repeats a draw with probability 0.98 per iteration, as a chain with
  a collapsed step size does); draws of ``z``, ``lp`` and the field are re-indexed alike.
* ``bimodal``: a good linear run turned into a two-mode posterior: each chain lands in
  mode A or B with probability 1/2 (chains started far apart that cannot cross), mode B
  shifted by 6 posterior SDs of ``z`` along a random direction (field shifted by ``W``
  times that). Runs where all chains land in one mode are wrong but invisible to any
  between-chain diagnostic; they are counted apart (``undetectable``).
* ``far-start``: real NUTS runs of the linear posterior with chains started from prior
  draws (tens of posterior SDs away in well-observed directions) and no warmup.
* ``short-warmup``: real NUTS runs with an adapted diagonal mass matrix, chains from the
  prior and 10 warmup iterations. ``far-start`` is bad by construction: with no warmup its
  first draws are the transient from tens of SDs away. ``short-warmup`` discards 10
  iterations, in which NUTS may already reach the typical set of a Gaussian: such a run
  counts as bad only when the closed form shows it (a posterior mean of ``z`` more than 5
  Monte Carlo standard errors off); the others are listed as inconclusive.

Rules compared: ``new`` (``bayesda.verify.verdict``: R-hat PASS level from
:func:`bayesda.verify.verdict.rhat_threshold`, over ``z`` + ``lp`` and over the field),
``old`` (fixed R-hat 1.01 over both), ``z-only`` (the new rule without the field R-hat).

Usage::

    BAYESDA_DATA_DIR=../shared/data python -m analysis.verdict_rates.verdict_rates \\
        --n-linear 96 --n-shipped 12
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
import zlib
from pathlib import Path

import numpy as np

from analysis.common.io import SHIPPED_MODEL, command, results_dir
from analysis.common.settings import STATED

STATUSES = ("PASS", "WARN", "FAIL")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion ``k / n``."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z**2 / n
    mid = (p + z**2 / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / den
    return (round(float(max(0.0, mid - half)), 4), round(float(min(1.0, mid + half)), 4))


def statuses(v) -> dict:
    """The verdict under the new rule, the old fixed-1.01 rule, and without the field R-hat."""
    worst = STATUSES.index(v.status)
    old = worst
    for r in (v.max_rhat_z, v.max_rhat_field):
        if np.isfinite(r) and r > 1.01:  # the old fixed level
            old = max(old, 1 if r <= 1.05 else 2)
    levels = [STATUSES.index(r.split(":")[0]) for r in v.reasons if "R-hat over field" not in r]
    return {"new": v.status, "old": STATUSES[old], "z-only": STATUSES[max(levels, default=0)]}


def linearised_prior():
    import jax
    import jax.numpy as jnp

    from bayesda.prior.checkpoint import load_model
    from bayesda.prior.generative import linear_prior

    shipped = load_model(SHIPPED_MODEL)
    z0 = jnp.zeros(shipped.latent_dim)
    W = np.asarray(jax.jacrev(shipped.decode)(z0))  # [lat, lon, d]
    b = np.asarray(shipped.decode(z0))
    return shipped, linear_prior(W, b, shipped.grid, shipped.repr_error, name="linearised")


def exact_posterior(prior, obs):
    """Mean and covariance of ``z | y`` for the linear prior and prepared observations."""
    from bayesda.inference.fields import repr_covariance_at_obs

    W = np.asarray(prior.decode(np.eye(prior.latent_dim, dtype=np.float32)), np.float64)
    W = W.reshape(prior.latent_dim, -1).T  # [pix, d] (decode is affine: subtract b)
    b = np.asarray(prior.decode(np.zeros(prior.latent_dim, np.float32)), np.float64).ravel()
    W = W - b[:, None]
    st = obs.stencil
    A = np.einsum("nk,nkd->nd", st.weight, W[st.idx])
    hb = np.einsum("nk,nk->n", st.weight, b[st.idx])
    S = repr_covariance_at_obs(st, prior.repr_error) + np.diag(obs.frame["sigma"].to_numpy() ** 2)
    Si_A = np.linalg.solve(S, A)
    prec = np.eye(prior.latent_dim) + A.T @ Si_A
    cov = np.linalg.inv(prec)
    mean = cov @ (Si_A.T @ (obs.frame["value"].to_numpy() - hb))
    return mean, cov, W


def zscores(z, ess, mean, cov):
    """``(posterior mean - exact) / MCSE`` per latent dimension."""
    sd = np.sqrt(np.diag(cov))
    return (z.reshape(-1, z.shape[-1]).mean(0) - mean) / (sd / np.sqrt(ess))


def make_obs(prior, n_runs, n_obs, seed):
    """One observation table with ``n_runs`` fake times, each a fresh truth and network."""
    import pandas as pd
    import xarray as xr

    rng = np.random.default_rng(seed)
    frames, times = [], []
    from bayesda.obs.table import pseudo_obs

    for k in range(n_runs):
        zt = rng.standard_normal(prior.latent_dim).astype(np.float32)
        truth = xr.DataArray(
            np.asarray(prior.decode(zt)),
            dims=("lat", "lon"),
            coords={"lat": prior.grid.lat, "lon": prior.grid.lon},
        )
        t = np.datetime64("2000-01-01T00") + np.timedelta64(6 * k, "h")
        df = pseudo_obs(truth, n_obs, network="station", sigma=0.5, seed=seed * 1000 + k)
        df["time"] = pd.Timestamp(t)
        frames.append(df)
        times.append(t)
    return pd.concat(frames, ignore_index=True), times


def _field_stats(a):
    """``(lp [chain, draw], field [chain, draw, lat, lon])`` of an Assimilation."""
    return np.asarray(a.idata.sample_stats["lp"].values), a.field


def _idata_with(a, z, lp):
    import arviz as az

    stats = {k: a.idata.sample_stats[k].values for k in a.idata.sample_stats.data_vars}
    stats["lp"] = lp
    return az.from_dict(
        posterior={"z": z},
        sample_stats=stats,
        dims={"z": ["latent"]},
        attrs={"max_tree_depth": a.idata.attrs["max_tree_depth"]},
    )


def stuck(a, rng):
    """The run with chain 0 sticking: it repeats its draw with probability 0.98."""
    z, field = a.z.copy(), a.field.copy()
    lp = _field_stats(a)[0].copy()
    n = z.shape[1]
    idx = np.zeros(n, int)
    for t in range(1, n):
        idx[t] = idx[t - 1] if rng.random() < 0.98 else t
    z[0], field[0], lp[0] = z[0, idx], field[0, idx], lp[0, idx]
    return _idata_with(a, z, lp), field


def bimodal(a, W, cov, rng):
    """Chains assigned to mode A or B at random; B shifted by 6 posterior SDs."""
    u = rng.standard_normal(cov.shape[0])
    u /= np.sqrt(u @ np.linalg.solve(cov, u))  # 1 posterior SD along u (Mahalanobis)
    shift = 6.0 * u
    modes = rng.integers(0, 2, size=a.z.shape[0])
    z, field = a.z.copy(), a.field.copy()
    lp = _field_stats(a)[0].copy()
    fshift = (W @ shift).reshape(field.shape[2:])
    z[modes == 1] += shift
    field[modes == 1] += fshift
    # Same log density in both modes (equal-weight mixture of two copies).
    return _idata_with(a, z, lp), field, bool(modes.min() == modes.max())


ROWS = Path.home() / ".cache" / "bayesda" / "verdict_rates_rows.json"


def save_rows(rows, extra=None, path: Path = ROWS):
    """Every run's record so far (large; outside the repository by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"rows": rows, "extra": extra or {}}, indent=1, default=str))
    tmp.replace(path)


def record(case, kind, v, extra=None):
    out = {
        "case": case,
        "kind": kind,
        **statuses(v),
        "max_rhat_z": round(v.max_rhat_z, 5),
        "max_rhat_field": round(v.max_rhat_field, 5),
        "rhat_pass_z": round(v.rhat_pass_z, 5),
        "rhat_pass_field": round(v.rhat_pass_field, 5),
        "min_ess_bulk": round(float(np.nanmin([v.min_ess_bulk_z, v.min_ess_bulk_field])), 1),
        "min_ess_tail": round(float(np.nanmin([v.min_ess_tail_z, v.min_ess_tail_field])), 1),
        "divergences": v.divergences,
        "reasons": v.reasons,
    }
    out.update(extra or {})
    return out


def run_linear(prior, args, settings, rows, rng, log):
    from bayesda.inference.assimilate import assimilate_batch, prepare_obs
    from bayesda.settings import DEFAULT
    from bayesda.verify.convergence import host_convergence
    from bayesda.verify.verdict import diagnose

    obs_df, times = make_obs(prior, args.n_linear, args.n_obs, seed=1)
    kinds = [
        ("linear", "good", dict(settings)),
        ("far-start", "bad", dict(settings, init="prior", num_warmup=0)),
        ("short-warmup", "bad", dict(settings, init="prior", mass="diag", num_warmup=10)),
    ]
    counts = {"linear": args.n_linear, "far-start": args.n_far, "short-warmup": args.n_short}
    for case, kind, sets in kinds:
        todo = times[: counts[case]]
        for i in range(0, len(todo), args.batch):
            group = todo[i : i + args.batch]
            t0 = time.perf_counter()
            res = assimilate_batch(
                prior,
                obs_df,
                group,
                seeds=[zlib.crc32(f"{case}|{t}".encode()) for t in group],
                progress_bar=False,
                options=STATED,
                sampler=DEFAULT.replace(**sets),
            )
            for a, t in zip(res, group, strict=True):
                obs = prepare_obs(prior, obs_df, time=t, pad=False, options=STATED)
                mean, cov, W = exact_posterior(prior, obs)
                ess = host_convergence(a.z).ess_bulk
                zs = zscores(a.z, ess, mean, cov)
                v = diagnose(a.idata, a.field)
                worst_z = float(np.max(np.abs(zs)))
                rows.append(record(case, kind, v, {"max_abs_zscore": round(worst_z, 2)}))
                if case == "linear":
                    srng = np.random.default_rng(rng.integers(2**31))
                    idata, field = stuck(a, srng)
                    rows.append(record("stuck-chain", "bad", diagnose(idata, field)))
                    idata, field, one_mode = bimodal(a, W, cov, srng)
                    rows.append(
                        record("bimodal", "bad", diagnose(idata, field), {"undetectable": one_mode})
                    )
            log(f"{case}: {i + len(group)}/{len(todo)} runs, {time.perf_counter() - t0:.1f} s")
            save_rows(rows, path=Path(args.rows))


def run_shipped(shipped, args, settings, rows, rng, log):
    import pandas as pd

    from bayesda.data.datasets import load_dataset
    from bayesda.data.split import block_split
    from bayesda.inference.assimilate import assimilate_batch
    from bayesda.obs.table import pseudo_obs
    from bayesda.settings import DEFAULT
    from bayesda.verify.convergence import host_convergence
    from bayesda.verify.verdict import diagnose

    ds = load_dataset("ncep-air")
    _, test = block_split(ds["time"].values)
    test_times = ds["time"].values[test]
    ref_time = test_times[0]
    others = test_times[1 : 1 + args.n_shipped // 2]
    frames = []
    for k, t in enumerate([ref_time, *others]):
        anom = shipped.climatology.to_anomaly(ds["tas"].sel(time=t))
        frames.append(pseudo_obs(anom, args.n_obs, network="station", sigma=0.5, seed=100 + k))
    obs_df = pd.concat(frames, ignore_index=True)
    obs_df["time"] = pd.to_datetime(obs_df["time"])

    t0 = time.perf_counter()
    ref = assimilate_batch(
        shipped,
        obs_df,
        [ref_time],
        seeds=[12345],
        progress_bar=False,
        options=STATED,
        sampler=DEFAULT.replace(
            **dict(settings, num_chains=4, num_samples=args.ref_draws, num_warmup=500)
        ),
    )[0]
    ref_mean = ref.z.reshape(-1, ref.z.shape[-1]).mean(0)
    ref_cov = np.cov(ref.z.reshape(-1, ref.z.shape[-1]).T)
    ref_ess = host_convergence(ref.z).ess_bulk
    v_ref = diagnose(ref.idata, ref.field)
    log(f"shipped reference: {v_ref.status}, {time.perf_counter() - t0:.1f} s")
    n_same = args.n_shipped - len(others)
    jobs = [(ref_time, s) for s in range(n_same)] + [(t, 0) for t in others]
    for i in range(0, len(jobs), args.batch):
        group = jobs[i : i + args.batch]
        t0 = time.perf_counter()
        res = assimilate_batch(
            shipped,
            obs_df,
            [t for t, _ in group],
            seeds=[1000 + 17 * s + k for k, (_, s) in enumerate(group)],
            progress_bar=False,
            options=STATED,
            sampler=DEFAULT.replace(**settings),
        )
        for a, (t, _) in zip(res, group, strict=True):
            v = diagnose(a.idata, a.field)
            extra = {"time": str(t)[:19]}
            if t == ref_time:
                ess = host_convergence(a.z).ess_bulk
                # MCSE of the difference: this run's and the reference's.
                sd = np.sqrt(np.diag(ref_cov))
                mcse = sd * np.sqrt(1 / ess + 1 / ref_ess)
                zs = (a.z.reshape(-1, a.z.shape[-1]).mean(0) - ref_mean) / mcse
                extra["max_abs_zscore"] = round(float(np.max(np.abs(zs))), 2)
            rows.append(record("shipped", "good", v, extra))
            idata, field = stuck(a, np.random.default_rng(rng.integers(2**31)))
            rows.append(record("shipped-stuck-chain", "bad", diagnose(idata, field)))
        log(f"shipped: {i + len(group)}/{len(jobs)} runs, {time.perf_counter() - t0:.1f} s")
        save_rows(rows, path=Path(args.rows))
    return {
        "reference": {
            "time": str(ref_time)[:19],
            "draws": f"4 x (500 + {args.ref_draws})",
            "verdict": v_ref.status,
            "max_rhat_z": round(v_ref.max_rhat_z, 4),
            "max_rhat_field": round(v_ref.max_rhat_field, 4),
            "min_ess_bulk": round(float(v_ref.min_ess_bulk_field), 0),
        }
    }


def _inconclusive(r) -> bool:
    """A short-warmup run that the closed form cannot tell from a good one."""
    return r["case"] == "short-warmup" and r["max_abs_zscore"] <= 5


def summarise(rows, rule):
    good = [r for r in rows if r["kind"] == "good"]
    bad = [r for r in rows if r["kind"] == "bad" and not r.get("undetectable")]
    bad = [r for r in bad if not _inconclusive(r)]
    fa = sum(r[rule] != "PASS" for r in good)
    miss = sum(r[rule] == "PASS" for r in bad)
    return {
        "false_alarm_rate": round(fa / max(len(good), 1), 4),
        "false_alarm_ci95": wilson(fa, len(good)),
        "miss_rate": round(miss / max(len(bad), 1), 4),
        "miss_ci95": wilson(miss, len(bad)),
        "n_good_runs": len(good),
        "n_bad_runs": len(bad),
    }


def per_case(rows):
    out = {}
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]
        kind = rs[0]["kind"]
        entry = {"kind": kind, "runs": len(rs)}
        if case in ("far-start", "short-warmup"):
            entry["mean_off_by_5_mcse"] = sum(r["max_abs_zscore"] > 5 for r in rs)
        if case == "short-warmup":
            entry["inconclusive_not_counted"] = sum(_inconclusive(r) for r in rs)
        if case == "bimodal":
            entry["undetectable_one_mode"] = sum(bool(r["undetectable"]) for r in rs)
            entry["undetectable_flagged"] = sum(r["new"] != "PASS" for r in rs if r["undetectable"])
            rs = [r for r in rs if not r["undetectable"]]
        checked = [r for r in rs if "max_abs_zscore" in r]  # shipped: only the reference time
        if checked and kind == "good":
            entry["checked_against_reference"] = len(checked)
            entry["verified_correct"] = sum(r["max_abs_zscore"] < 4.5 for r in checked)
        for rule in ("new", "old", "z-only"):
            entry[rule] = {s: sum(r[rule] == s for r in rs) for s in STATUSES}
        entry["max_rhat_z_median"] = round(float(np.median([r["max_rhat_z"] for r in rs])), 4)
        entry["max_rhat_field_median"] = round(
            float(np.nanmedian([r["max_rhat_field"] for r in rs])), 4
        )
        entry["rhat_pass_z"] = rs[0]["rhat_pass_z"]
        entry["rhat_pass_field"] = rs[0]["rhat_pass_field"]
        reasons = {}
        for r in rs:
            if r["kind"] == "good":
                for why in r["reasons"]:
                    key = why.split(" = ")[0]
                    reasons[key] = reasons.get(key, 0) + 1
        if reasons:
            entry["good_run_reasons"] = reasons
        out[case] = entry
    return out


def markdown(result, command):
    lines = [
        "# Error rates of the convergence verdict",
        "",
        f"Command: `{command}` ({result['date']}, load average at start "
        f"{result['load_average']}; {result['wall_s']:.0f} s). Settings of every good run: "
        f"{result['settings']}. 95% intervals: Wilson score.",
        "",
        "| rule | false alarms (good runs not PASS) | misses (bad runs PASS) |",
        "|---|---|---|",
    ]
    for rule, s in result["rules"].items():
        lines.append(
            f"| {rule} | {s['false_alarm_rate']:.3f} {tuple(s['false_alarm_ci95'])} of "
            f"{s['n_good_runs']} | {s['miss_rate']:.3f} {tuple(s['miss_ci95'])} of "
            f"{s['n_bad_runs']} |"
        )
    lines += [
        "",
        "| case | kind | runs | new P/W/F | old P/W/F | z-only P/W/F | median max R-hat z "
        "/ field | PASS level of the worst quantity z / field (first run) | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case, e in result["cases"].items():
        notes = []
        for k in (
            "verified_correct",
            "mean_off_by_5_mcse",
            "inconclusive_not_counted",
            "undetectable_one_mode",
        ):
            if k in e:
                notes.append(f"{k.replace('_', ' ')}: {e[k]}")
        if "good_run_reasons" in e:
            notes.append("; ".join(f"{k}: {n}" for k, n in e["good_run_reasons"].items()))
        cells = ["/".join(str(e[rule][s]) for s in STATUSES) for rule in ("new", "old", "z-only")]
        lines.append(
            f"| {case} | {e['kind']} | {e['runs']} | {' | '.join(cells)} | "
            f"{e['max_rhat_z_median']} / {e['max_rhat_field_median']} | "
            f"{e['rhat_pass_z']} / {e['rhat_pass_field']} | {'; '.join(notes)} |"
        )
    if "shipped_reference" in result:
        lines += ["", f"Shipped-model reference run: {result['shipped_reference']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-linear", type=int, default=96)
    p.add_argument("--n-far", type=int, default=48)
    p.add_argument("--n-short", type=int, default=48)
    p.add_argument("--n-shipped", type=int, default=12)
    p.add_argument("--ref-draws", type=int, default=2000)
    p.add_argument("--n-obs", type=int, default=50)
    p.add_argument("--batch", type=int, default=8, help="times per compiled program")
    p.add_argument("--warmup", type=int, default=None, help="default: the reanalysis default")
    p.add_argument("--draws", type=int, default=None, help="default: the reanalysis default")
    p.add_argument("--chains", type=int, default=None, help="default: the reanalysis default")
    p.add_argument("--out", default=str(results_dir("verdict_rates") / "verdict_rates"))
    p.add_argument("--rows", default=str(ROWS), help="where every run's record is saved")
    p.add_argument(
        "--summarise-only", action="store_true", help=f"re-summarise the runs saved in {ROWS}"
    )
    p.add_argument(
        "--add-to-saved",
        action="store_true",
        help=f"keep the linear and bad-run cases saved in {ROWS} and (re)run only the "
        "shipped-model case",
    )
    args = p.parse_args(argv)

    import bayesda

    bayesda.set_host_device_count()  # before the first JAX computation
    bayesda.enable_compilation_cache()
    from analysis.common.ncep import reanalysis_defaults

    settings = reanalysis_defaults(args.warmup, args.draws, args.chains)
    load = os.getloadavg()
    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    rows: list = []

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    if args.summarise_only:
        saved = json.loads(Path(args.rows).read_text())
        rows, extra = saved["rows"], saved["extra"]
    else:
        shipped, linear = linearised_prior()
        if args.add_to_saved:
            saved = json.loads(Path(args.rows).read_text())["rows"]
            rows = [r for r in saved if not r["case"].startswith("shipped")]
            log(f"kept {len(rows)} saved runs of the linear and bad-run cases")
        else:
            run_linear(linear, args, settings, rows, rng, log)
        extra = {}
        if args.n_shipped:
            extra = run_shipped(shipped, args, settings, rows, rng, log)
        save_rows(rows, extra, path=Path(args.rows))

    new = summarise(rows, "new")
    result = {
        **new,
        "cases": per_case(rows),
        "rules": {rule: summarise(rows, rule) for rule in ("new", "old", "z-only")},
        "settings": f"{settings['num_chains']} chains x ({settings['num_warmup']} warmup + "
        f"{settings['num_samples']} draws), "
        f"{args.n_obs} station-like obs, sigma 0.5 K",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in load],
        "wall_s": time.perf_counter() - t_start,
        "args": {k: v for k, v in vars(args).items() if k != "rows"},
    }
    if extra:
        result["shipped_reference"] = extra["reference"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out.with_suffix(".json"))
    cmd = (
        command(__spec__.name, [])
        + " "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in ("out", "rows", "summarise_only", "add_to_saved") and v is not None
        )
        + (" --add-to-saved" if args.add_to_saved else "")
    )
    md = markdown(result, cmd)
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
