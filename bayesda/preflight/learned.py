"""Quality control and the self-check of the learned-error model.

With learned errors (:mod:`bayesda.inference.errors`) what an observation may differ from
the field by is itself estimated: a departure is judged against the predictive of that
observation *including the site error the network shows*, not against the stated error
alone. Both steps fit the model quickly (MAP + Laplace in ``z``, the log scale and the
offset, the site SD summed out) and read the predictive of each station from its draws.

* :func:`withheld_predictions`: the stations in ``k`` folds; each fold is predicted by a fit
  to the other folds only, error scales included. A report's departure from that
  prediction cannot be hidden by the report itself: with the representation-error scale
  learnt, one 15 K error among 60 stations pulled a fit that included it to a scale of 6.5
  and the field within 1.4 K of itself (measured; leave-one-out by importance sampling of
  that fit could not undo it, Pareto k > 0.7 at 20 stations).
* :func:`learned_quality_control`: (1) a robust buddy check inside grid cells with three or
  more reports (a report far from its cell's median, in MADs and K); (2) the withheld
  predictions of the rest; (3) the posterior probability that a report is a gross error
  under a mixture, ``(1 - p) N(d; 0, v) + p N(d; 0, v + B^2)`` (as
  :mod:`bayesda.preflight.qc`), and any departure beyond :attr:`LearnedQC.max_departure`.
  Flagged reports are removed (a cell mean with one wrong report in it would carry it).
  Many stations that agree on an extreme predict each other, so they are not flagged.
* :func:`learned_check`: the scores of the withheld predictions: coverage of the 90%
  predictive interval, CRPS and mean z^2. It never scores an observation that fitted what
  it checks; after QC has removed reports it is recomputed on the rest.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from bayesda.settings import ModelOptions, SamplerSettings

__all__ = [
    "LearnedQC",
    "learned_check",
    "learned_quality_control",
    "predictive_draws",
    "withheld_predictions",
]


class LearnedQC(NamedTuple):
    """Settings of :func:`learned_quality_control`.

    Attributes:
      p_gross: prior probability that a report is a gross error.
      gross_sd: SD of a gross error, K.
      flag_above: flag a report whose probability of a gross error exceeds this.
      max_departure: flag any report whose leave-one-out departure exceeds this, K.
      buddy_k: buddy check: flag a report more than this many robust SDs (1.4826 MAD) from
        its cell's median...
      buddy_floor: ... and more than this many K (cells of three reports or more).
      draws: Laplace draws of each fit.
      folds: the withheld folds.
    """

    p_gross: float = 0.01
    gross_sd: float = 10.0
    flag_above: float = 0.5
    max_departure: float = 10.0
    buddy_k: float = 6.0
    buddy_floor: float = 8.0
    draws: int = 200
    folds: int = 5


def _laplace(prior, obs, options, draws, seed):
    from bayesda.inference.assimilate import assimilate

    sampler = SamplerSettings(method="laplace", num_chains=1, num_samples=draws)
    return assimilate(prior, obs, seed=seed, sampler=sampler, options=options, progress_bar=False)


def predictive_draws(a, lat, lon, sigma) -> tuple[np.ndarray, np.ndarray]:
    """``(mu [s, n], var [s, n])``: each draw's field at sites and the variance of an
    observation's error there (its ``sigma`` and the draw's site SD)."""
    from bayesda.obs.operator import bilinear_stencil, interpolate

    prior = a.prior
    s = a.field.shape[0] * a.field.shape[1]
    st = bilinear_stencil(prior.grid, np.asarray(lat), np.asarray(lon))
    mu = np.asarray(interpolate(a.field.reshape(s, *prior.grid.shape).astype(np.float64), st))
    tau = a.idata.posterior["site_sd"].values.reshape(s, 1).astype(np.float64)
    var = np.square(np.asarray(sigma, np.float64))[None, :] + tau**2
    return mu, var


def _buddy_check(df: pd.DataFrame, grid, settings: LearnedQC) -> np.ndarray:
    from bayesda.inference.errors import cells_of

    member = cells_of(grid, df).member
    y = df["value"].to_numpy(np.float64)
    flag = np.zeros(len(df), bool)
    for c in np.unique(member):
        rows = np.flatnonzero(member == c)
        if rows.size < 3:
            continue
        med = np.median(y[rows])
        mad = 1.4826 * np.median(np.abs(y[rows] - med))
        flag[rows] = np.abs(y[rows] - med) > max(settings.buddy_k * mad, settings.buddy_floor)
    return flag


def withheld_predictions(
    prior,
    obs: pd.DataFrame,
    options: ModelOptions | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    draws: int = 200,
) -> dict | None:
    """Each station's predictive from a fit to the other folds (see the module docstring).

    Returns:
      ``{"draws": [s, n] predictive draws of each report, "fold": [n], "folds": k,
      "site_sd": [k], "repr_scale": [k]}`` (the fits' posterior means), or None when there
      are fewer than ``2 * folds`` reports.
    """
    from bayesda.preflight.calibrate import holdout_folds

    options = options or ModelOptions()
    df = obs.reset_index(drop=True)
    n = len(df)
    if n < 2 * folds:
        return None
    fold = holdout_folds(n, folds, seed)
    out = np.zeros((draws, n))
    site_sd, repr_scale = [], []
    for k in range(folds):
        test = fold == k
        a = _laplace(prior, df[~test].reset_index(drop=True), options, draws, seed + k)
        mu, var = predictive_draws(
            a, df.loc[test, "lat"], df.loc[test, "lon"], df.loc[test, "sigma"]
        )
        rng = np.random.default_rng([seed, k, 91])
        out[:, test] = mu + np.sqrt(var) * rng.standard_normal(mu.shape)
        post = a.idata.posterior
        site_sd.append(float(post["site_sd"].mean()))
        repr_scale.append(float(post["repr_scale"].mean()))
    return {
        "draws": out,
        "fold": fold,
        "folds": folds,
        "site_sd": site_sd,
        "repr_scale": repr_scale,
    }


def _norm_logpdf(x, var):
    return -0.5 * (np.log(2 * np.pi * var) + x**2 / var)


def learned_quality_control(
    prior,
    obs: pd.DataFrame,
    options: ModelOptions | None = None,
    settings: LearnedQC | None = None,
    *,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict, dict | None]:
    """Flag and remove gross errors, judged against the learned predictive.

    Args:
      prior: the prior.
      obs: one analysis time's anomalies (lat, lon, value, sigma, ...).
      options: the model options (learned errors).
      settings: :class:`LearnedQC`.
      seed: seeds the folds and the fits' draws.

    Returns:
      ``(table, report, predictions)``: the reports kept, with columns ``departure``,
      ``departure_sd`` (from the withheld prediction, K), ``p_gross`` and ``qc`` (``"ok"``);
      a JSON-able report with the counts and every flagged report (``qc`` ``"buddy"`` or
      ``"gross"``); and the withheld predictions when no report was flagged (they then
      hold for the table returned; else None).
    """
    from bayesda.preflight.qc import flagged_records

    options = options or ModelOptions()
    settings = settings or LearnedQC()
    df = obs.reset_index(drop=True).copy()
    buddy = _buddy_check(df, prior.grid, settings)
    rest = df[~buddy].reset_index(drop=True)
    pred = withheld_predictions(
        prior, rest, options, folds=settings.folds, seed=seed, draws=settings.draws
    )
    d = np.full(len(df), np.nan)
    sd = np.full(len(df), np.nan)
    if pred is not None:
        y = rest["value"].to_numpy(np.float64)
        d[~buddy] = y - pred["draws"].mean(0)
        sd[~buddy] = pred["draws"].std(0)
    bad = np.log(settings.p_gross) + _norm_logpdf(d, sd**2 + settings.gross_sd**2)
    good = np.log1p(-settings.p_gross) + _norm_logpdf(d, sd**2)
    with np.errstate(invalid="ignore"):
        p_gross = 1.0 / (1.0 + np.exp(good - bad))
        gross = ~buddy & ((p_gross > settings.flag_above) | (np.abs(d) > settings.max_departure))
    df["departure"], df["departure_sd"], df["p_gross"] = d, sd, p_gross
    df["qc"] = np.where(buddy, "buddy", np.where(gross, "gross", "ok"))
    flagged = (df["qc"] != "ok").to_numpy()
    cols = (
        "station_id",
        "lat",
        "lon",
        "value",
        "sigma",
        "departure",
        "departure_sd",
        "p_gross",
        "qc",
    )
    report = {
        "model": "learned",
        "settings": settings._asdict(),
        "n_obs": len(df),
        "n_buddy": int(buddy.sum()),
        "n_gross": int(gross.sum()),
        "n_background": 0,
        "site_sd": float(np.mean(pred["site_sd"])) if pred else None,
        "repr_scale": float(np.mean(pred["repr_scale"])) if pred else None,
        "flagged": flagged_records(df, cols),
    }
    kept = df.loc[~flagged].reset_index(drop=True)
    kept.attrs = dict(obs.attrs)
    return kept, report, (pred if not gross.any() else None)


def learned_check(
    prior,
    obs: pd.DataFrame,
    options: ModelOptions | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    draws: int = 200,
    predictions: dict | None = None,
) -> dict:
    """The withheld-station check of the learned-error model (see the module).

    Args:
      prior, obs, options: as for :func:`withheld_predictions`.
      folds, seed, draws: the folds and the fits' draws.
      predictions: :func:`withheld_predictions` of ``obs`` already made (QC's).

    Returns:
      ``{"n", "folds", "coverage_90", "crps", "z2", "engine"}`` (JSON-able); ``folds`` is
      0 and the scores None when there are fewer than ``2 * folds`` reports.
    """
    pred = predictions or withheld_predictions(
        prior, obs, options, folds=folds, seed=seed, draws=draws
    )
    n = len(obs)
    if pred is None:
        return {
            "n": n,
            "folds": 0,
            "coverage_90": None,
            "crps": None,
            "z2": None,
            "engine": "laplace",
        }
    ydraw = pred["draws"]
    y = obs["value"].to_numpy(np.float64)
    lo, hi = np.quantile(ydraw, [0.05, 0.95], axis=0)
    srt = np.sort(ydraw, axis=0)
    m = srt.shape[0]
    i = np.arange(1, m + 1)[:, None]
    crps = np.mean(np.abs(srt - y), axis=0) - np.sum((2 * i - m - 1) * srt, 0) / m**2
    z2 = (y - ydraw.mean(0)) ** 2 / ydraw.var(0)
    return {
        "n": n,
        "folds": pred["folds"],
        "coverage_90": float(np.mean((y > lo) & (y < hi))),
        "crps": float(crps.mean()),
        "z2": float(z2.mean()),
        "engine": "laplace",
    }
