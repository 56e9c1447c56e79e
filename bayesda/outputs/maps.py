"""Uncertainty maps of a posterior: mean with observations, SD with "fog", exceedance.

The "fog" marks where the observations told us little: the posterior SD is still more than
``fog_threshold`` times the climatological SD (the spread we would have with no data), so
the posterior mean there is mostly the prior's guess.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["plot_posterior"]


def _coast(ax, lat, lon):
    from matplotlib.collections import LineCollection

    try:
        from bayesda.geo.landmask import coastlines

        lines = coastlines(
            (float(lat.min()), float(lat.max())), (float(lon.min()), float(lon.max()))
        )
    except (ImportError, ValueError):  # no land mask available: maps without coastlines
        return
    # One artist for all polylines: a Line2D each (about 235 on the NCEP box) took 1.9 s
    # to create and draw over the six panels.
    ax.add_collection(LineCollection(lines, colors="0.15", linewidths=0.6, zorder=2))


def _hatch(ax, lat, lon, where, hatch):
    """Hatch the grid cells where ``where`` is True (cell-exact, no contour smoothing)."""
    if not np.any(where):
        return
    cells = np.ma.masked_where(~where, np.ones(where.shape))
    ax.pcolor(
        lon,
        lat,
        cells,
        hatch=hatch,
        facecolor="none",
        edgecolor="0.2",
        linewidth=0.0,
        shading="nearest",
    )


def _mark_flagged(ax, obs) -> None:
    """Red crosses on observations that quality control rejected (``qc`` column,
    bayesda.preflight.qc)."""
    if "qc" not in obs:
        return
    bad = np.asarray(obs["qc"]).astype(str) != "ok"
    if bad.any():
        ax.scatter(
            np.asarray(obs["lon"])[bad],
            np.asarray(obs["lat"])[bad],
            marker="x",
            c="red",
            s=70,
            linewidths=1.8,
            zorder=4,
            label=f"rejected by QC ({int(bad.sum())})",
        )
        ax.legend(loc="lower left", fontsize=7, framealpha=0.8)


def _panel(fig, ax, lat, lon, values, *, title, cmap, vmin, vmax, label, obs=None, obs_vals=None):
    import matplotlib.pyplot as plt

    mesh = ax.pcolormesh(lon, lat, values, cmap=cmap, vmin=vmin, vmax=vmax, shading="nearest")
    _coast(ax, lat, lon)
    if obs is not None:
        ax.scatter(
            obs["lon"],
            obs["lat"],
            c=obs_vals,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            s=22,
            edgecolors="k",
            linewidths=0.7,
            zorder=3,
        )
        _mark_flagged(ax, obs)
    ax.set_xlim(lon.min(), lon.max())
    ax.set_ylim(lat.min(), lat.max())
    ax.set_aspect(1.0 / np.cos(np.deg2rad(float(np.mean(lat)))))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("longitude (degrees east)", fontsize=8)
    ax.set_ylabel("latitude (degrees north)", fontsize=8)
    ax.tick_params(labelsize=7)
    cb = fig.colorbar(mesh, ax=ax, shrink=0.8)
    cb.set_label(label, fontsize=8)
    plt.setp(cb.ax.get_yticklabels(), fontsize=7)
    return mesh


IMAGE_FORMATS = ("png", "pdf", "svg")
"""The image formats the maps are written in, chosen by the file name's suffix."""


def image_format(path: str | Path) -> str:
    """The format of an image path from its suffix (:data:`IMAGE_FORMATS`).

    Raises:
      ValueError: another suffix (a PNG named ``maps.pdf`` or ``maps.csv`` would mislead).
    """
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise ValueError(
            f"{path}: the maps are written as {', '.join(IMAGE_FORMATS)}, chosen by the "
            f"suffix; {Path(path).suffix or 'no suffix'} is none of them"
        )
    return fmt


def plot_posterior(
    ds: xr.Dataset,
    obs: pd.DataFrame,
    *,
    truth: xr.DataArray | None = None,
    climatology_sd: xr.DataArray | np.ndarray | None = None,
    fog_threshold: float = 0.5,
    threshold: float | None = None,
    out: str | Path = "maps.png",
    title: str | None = None,
) -> Path:
    """Draw the posterior maps to a PNG.

    Args:
      ds: a :func:`bayesda.inference.fields.posterior_dataset` (``mean``, ``sd``, ``p_exceed``).
      obs: the assimilated observations (lat, lon, value in K).
      truth: the true anomaly ``(lat, lon)`` K, adds "truth" and "error" panels.
      climatology_sd: climatological SD ``(lat, lon)`` K; adds hatching ("fog") where
        ``sd / climatology_sd > fog_threshold``.
      fog_threshold: see above.
      threshold: which ``ds.threshold`` to map as an exceedance probability (default:
        the one closest to 0 K).
      out: the PNG path.
      title: figure title (default from ``ds.attrs``).

    Returns:
      The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, lon = ds["lat"].values, ds["lon"].values
    mean, sd = ds["mean"].values, ds["sd"].values
    thr = ds["threshold"].values
    t = float(thr[np.argmin(np.abs(thr))] if threshold is None else threshold)
    if not np.any(np.isclose(thr, t)):
        raise ValueError(f"threshold={t} not in the dataset's thresholds {thr.tolist()}")
    pex = ds["p_exceed"].sel(threshold=t, method="nearest").values
    truth_v = None if truth is None else np.asarray(getattr(truth, "values", truth), np.float64)
    if truth_v is not None and truth_v.shape != mean.shape:
        raise ValueError(
            f"truth shape {truth_v.shape} does not match the posterior grid {mean.shape}"
        )
    vals = [mean, obs["value"].to_numpy()] + ([truth_v] if truth_v is not None else [])
    amax = float(np.nanpercentile(np.abs(np.concatenate([np.ravel(v) for v in vals])), 99.5))
    if not (np.isfinite(fog_threshold) and fog_threshold > 0):
        raise ValueError(f"fog_threshold={fog_threshold!r} must be a finite number > 0")
    # With a truth: 2 x 3 (truth, mean, error / SD, P(exceed), 90% width). Without one:
    # 2 x 2 (mean, 90% width / SD, P(exceed)): every panel has a map, none is empty.
    ncol = 3 if truth_v is not None else 2
    fig, axes = plt.subplots(2, ncol, figsize=(5.2 * ncol, 7.4), constrained_layout=True)
    axes = np.atleast_2d(axes)
    anom = dict(cmap="RdBu_r", vmin=-amax, vmax=amax, label="temperature anomaly (K)")
    row0 = list(axes[0])
    row1 = list(axes[1])
    width_ax = row1.pop() if truth_v is not None else row0.pop()
    if truth_v is not None:
        _panel(
            fig,
            row0.pop(0),
            lat,
            lon,
            truth_v,
            title="truth (held out) and observations",
            obs=obs,
            obs_vals=obs["value"],
            **anom,
        )
    _panel(
        fig,
        row0.pop(0),
        lat,
        lon,
        mean,
        title=f"posterior mean and {len(obs)} observations",
        obs=obs,
        obs_vals=obs["value"],
        **anom,
    )
    if truth_v is not None:
        err = mean - truth_v
        emax = float(np.nanpercentile(np.abs(err), 99.5))
        ax = row0.pop(0)
        _panel(
            fig,
            ax,
            lat,
            lon,
            err,
            title=f"error: mean - truth (RMSE {np.sqrt(np.nanmean(err**2)):.2f} K)",
            cmap="PuOr_r",
            vmin=-emax,
            vmax=emax,
            label="error (K)",
        )
        ax.scatter(obs["lon"], obs["lat"], s=6, c="k", zorder=3)
    ax = row1.pop(0)
    sd_title = "posterior SD"
    _panel(
        fig,
        ax,
        lat,
        lon,
        sd,
        title=sd_title,
        cmap="viridis",
        vmin=0.0,
        vmax=float(np.nanmax(sd)),
        label="posterior SD (K)",
    )
    ax.scatter(obs["lon"], obs["lat"], s=6, c="w", edgecolors="k", linewidths=0.4, zorder=3)
    if climatology_sd is not None:
        csd = np.asarray(getattr(climatology_sd, "values", climatology_sd), np.float64)
        if csd.shape != sd.shape:
            raise ValueError(
                f"climatology_sd shape {csd.shape} does not match the posterior grid {sd.shape}"
            )
        ratio = sd / csd
        _hatch(ax, lat, lon, ratio > fog_threshold, "////")
        ax.contour(lon, lat, ratio, levels=[fog_threshold], colors="w", linewidths=0.8)
        ax.set_title(
            f"posterior SD; hatched: fog (SD > {fog_threshold:g} x climatological SD)", fontsize=10
        )
    ax = row1.pop(0)
    _panel(
        fig,
        ax,
        lat,
        lon,
        pex,
        title=f"P(anomaly > {t:g} K)",
        cmap="RdBu_r",
        vmin=0.0,
        vmax=1.0,
        label="probability",
    )
    ax.contour(lon, lat, pex, levels=[0.05, 0.95], colors="k", linewidths=0.5, linestyles=":")
    # the 90% interval panel, always drawn
    ax = width_ax
    q05, q95 = ds["q05"].values, ds["q95"].values
    width = q95 - q05
    _panel(
        fig,
        ax,
        lat,
        lon,
        width,
        title="width of the 90% credible interval",
        cmap="magma",
        vmin=0.0,
        vmax=float(np.nanmax(width)),
        label="q95 - q05 (K)",
    )
    if truth_v is not None:
        known = np.isfinite(truth_v)
        miss = known & ((truth_v < q05) | (truth_v > q95))
        _hatch(ax, lat, lon, miss, "xx")
        frac = miss.sum() / max(int(known.sum()), 1)
        ax.set_title(
            f"90% interval width; hatched: truth outside ({frac:.0%} of pixels)",
            fontsize=10,
        )
    a = ds.attrs
    parts = [
        f"{a.get('model_name', 'model')} posterior",
        a.get("time", ""),
        f"{a.get('n_obs', len(obs))} observations",
        a.get("sampler_method", ""),
    ]
    fig.suptitle(title or ", ".join(str(p) for p in parts if p), fontsize=12)
    from bayesda.runtime.files import atomic_write, writing

    out = Path(out)
    fmt = image_format(out)
    try:
        with writing(out), atomic_write(out) as tmp:  # a failed write keeps the old map
            fig.savefig(tmp, dpi=100, format=fmt)
    finally:
        plt.close(fig)
    return out
