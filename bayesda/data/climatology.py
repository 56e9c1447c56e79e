"""A smooth climatology (mean and standard deviation) by day of year and hour of day.

Model. For each pixel and each hour of day ``h`` present in the fitting data, the mean is a
harmonic regression on the annual cycle,

    mean_h(t) = a_0 + sum_{k=1..K} [a_k cos(k phi(t)) + b_k sin(k phi(t))],
    phi(t) = 2 pi (t - 2000-01-01) / 365.2425 days,

fitted by least squares to the times with that hour. The variance is the same regression
fitted to the squared residuals, floored at ``VAR_FLOOR_FRACTION`` times the pixel's mean
squared residual (so ``std`` is seasonal and always positive). Between the fitted hours,
mean and variance are interpolated linearly in hour of day (cyclically), so any time of day
can be evaluated.

``K`` is ``n_harmonics`` when the fitting data span at least ``MIN_SPAN_DAYS_FOR_HARMONICS``
days and 0 otherwise: with less than a year, the annual harmonics are not identifiable and
the fit is just the mean (and variance) of each hour of day, e.g. for one month of ERA5.

Anomalies are ``tas - mean`` in K (not divided by ``std``); computation is in float64 and
results are float32. The climatology is fitted only on what it is given: pass the training
period (:func:`bayesda.data.split.split_dataset`).
"""

from __future__ import annotations

import datetime as _dt
import os
import pathlib

import numpy as np
import pandas as pd
import xarray as xr

from bayesda.geo.grid import Grid

__all__ = [
    "Climatology",
    "EPOCH",
    "MIN_SPAN_DAYS_FOR_HARMONICS",
    "VAR_FLOOR_FRACTION",
    "YEAR_DAYS",
    "design_matrix",
]

EPOCH = np.datetime64("2000-01-01T00:00:00", "ns")
YEAR_DAYS = 365.2425
MIN_SPAN_DAYS_FOR_HARMONICS = 360.0
VAR_FLOOR_FRACTION = 0.01
_COEF_VARS = ("mean_coef", "var_coef", "var_floor")


def _phase(times: np.ndarray) -> np.ndarray:
    days = (times.astype("datetime64[ns]") - EPOCH) / np.timedelta64(1, "D")
    return 2.0 * np.pi * days / YEAR_DAYS


def design_matrix(times, n_harmonics: int) -> np.ndarray:
    """``[n, 1 + 2K]`` regressors ``[1, cos(phi), sin(phi), ..., cos(K phi), sin(K phi)]``."""
    phi = _phase(np.asarray(times))
    cols = [np.ones_like(phi)]
    for k in range(1, n_harmonics + 1):
        cols += [np.cos(k * phi), np.sin(k * phi)]
    return np.stack(cols, axis=-1)


def _hour_of_day(times: np.ndarray) -> np.ndarray:
    t = times.astype("datetime64[ns]")
    return ((t - t.astype("datetime64[D]")) / np.timedelta64(1, "h")).astype(np.float64)


def _hour_weights(hours_fit: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """``[n, nh]`` weights that interpolate linearly and cyclically between fitted hours."""
    nh = hours_fit.size
    w = np.zeros((hour.size, nh))
    rows = np.arange(hour.size)
    if nh == 1:
        w[:, 0] = 1.0
        return w
    lo = (np.searchsorted(hours_fit, hour, side="right") - 1) % nh
    hi = (lo + 1) % nh
    gap = (hours_fit[hi] - hours_fit[lo]) % 24.0
    frac = ((hour - hours_fit[lo]) % 24.0) / gap
    np.add.at(w, (rows, lo), 1.0 - frac)
    np.add.at(w, (rows, hi), frac)
    return w


def _harmonic_labels(n_harmonics: int) -> list[str]:
    return ["const"] + [f"{f}{k}" for k in range(1, n_harmonics + 1) for f in ("cos", "sin")]


def _time_values(time) -> tuple[np.ndarray, bool]:
    """Times as ``[n]`` datetime64[ns] and whether the input was a scalar."""
    if isinstance(time, xr.DataArray):
        time = time.values
    arr = np.asarray(pd.to_datetime(np.atleast_1d(np.asarray(time))).values, "datetime64[ns]")
    return arr, np.ndim(time) == 0


class Climatology:
    """Smooth mean and standard deviation of ``tas`` by day of year and hour of day.

    Wraps an :class:`xarray.Dataset` of coefficients (``mean_coef`` and ``var_coef`` with
    dims ``(hour, harmonic, lat, lon)``, ``var_floor (lat, lon)``); treat it as immutable.
    Build one with :meth:`fit` or :meth:`from_netcdf`.
    """

    def __init__(self, coefficients: xr.Dataset):
        missing = [v for v in _COEF_VARS if v not in coefficients]
        if missing:
            raise ValueError(f"climatology dataset lacks variables {missing}")
        dims = ("hour", "harmonic", "lat", "lon")
        for v in ("mean_coef", "var_coef"):
            if coefficients[v].dims != dims:
                raise ValueError(f"{v} has dims {coefficients[v].dims}, expected {dims}")
        self._ds = coefficients
        self._grid = Grid.from_xarray(coefficients)
        self._hours = np.asarray(coefficients["hour"].values, np.float64)
        self._mean = np.asarray(coefficients["mean_coef"].values, np.float64)
        self._var = np.asarray(coefficients["var_coef"].values, np.float64)
        self._floor = np.asarray(coefficients["var_floor"].values, np.float64)

    # --- construction -------------------------------------------------------------------
    @classmethod
    def fit(cls, tas: xr.DataArray, n_harmonics: int = 3) -> Climatology:
        """Fit the climatology to ``tas`` (time, lat, lon) in K.

        Args:
          tas: temperature on the bayesda grid (e.g. ``load_dataset(...)["tas"]`` of the
            training split). NaNs are not allowed.
          n_harmonics: annual harmonics ``K`` (reduced to 0 for data spanning under a year).

        Returns:
          The fitted :class:`Climatology`.

        Raises:
          ValueError: wrong dims, NaNs, or too few times per hour of day for the regression.
        """
        if isinstance(tas, xr.Dataset):
            tas = tas["tas"]
        if tuple(tas.dims) != ("time", "lat", "lon"):
            raise ValueError(f"tas must have dims (time, lat, lon), got {tuple(tas.dims)}")
        if int(n_harmonics) != n_harmonics or n_harmonics < 0:
            raise ValueError(f"{n_harmonics=} must be a non-negative integer")
        grid = Grid.from_xarray(tas)
        times = np.asarray(tas["time"].values, "datetime64[ns]")
        y = np.asarray(tas.values, np.float64).reshape(times.size, -1)
        if not np.all(np.isfinite(y)):
            bad = np.argwhere(~np.isfinite(y))[0]
            raise ValueError(f"tas has non-finite values, first at time index {bad[0]}")
        span = (times.max() - times.min()) / np.timedelta64(1, "D")
        k_eff = int(n_harmonics) if span >= MIN_SPAN_DAYS_FOR_HARMONICS else 0
        hour = _hour_of_day(times)
        hours = np.unique(hour)
        n_coef = 1 + 2 * k_eff
        mean_coef = np.empty((hours.size, n_coef, y.shape[1]))
        var_coef = np.empty_like(mean_coef)
        msq = np.zeros(y.shape[1])
        for i, h in enumerate(hours):
            sel = hour == h
            if sel.sum() < 2 * n_coef:
                raise ValueError(
                    f"only {int(sel.sum())} times at hour {h:g}, need >= {2 * n_coef} "
                    f"for {k_eff} harmonics"
                )
            x = design_matrix(times[sel], k_eff)
            mean_coef[i] = np.linalg.lstsq(x, y[sel], rcond=None)[0]
            r2 = np.square(y[sel] - x @ mean_coef[i])
            var_coef[i] = np.linalg.lstsq(x, r2, rcond=None)[0]
            msq += r2.sum(axis=0)
        floor = VAR_FLOOR_FRACTION * msq / times.size
        shape = (hours.size, n_coef, *grid.shape)
        coords = {
            "hour": ("hour", hours, {"units": "hours", "long_name": "hour of day (UTC)"}),
            "harmonic": ("harmonic", _harmonic_labels(k_eff)),
            **grid.coords(),
        }
        dims = ("hour", "harmonic", "lat", "lon")
        ds = xr.Dataset(
            {
                "mean_coef": (
                    dims,
                    mean_coef.reshape(shape),
                    {"units": "K", "long_name": "harmonic coefficients of the mean"},
                ),
                "var_coef": (
                    dims,
                    var_coef.reshape(shape),
                    {"units": "K2", "long_name": "harmonic coefficients of the variance"},
                ),
                "var_floor": (
                    ("lat", "lon"),
                    floor.reshape(grid.shape),
                    {"units": "K2", "long_name": "lower bound of the variance"},
                ),
            },
            coords=coords,
            attrs={
                "n_harmonics": k_eff,
                "n_harmonics_requested": int(n_harmonics),
                "period_start": str(times.min()),
                "period_end": str(times.max()),
                "n_times": int(times.size),
                "epoch": str(EPOCH),
                "year_days": YEAR_DAYS,
                "source": str(tas.attrs.get("source", "")) or "",
                "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "bayesda_version": _version(),
            },
        )
        return cls(ds)

    # --- properties ---------------------------------------------------------------------
    @property
    def grid(self) -> Grid:
        return self._grid

    @property
    def n_harmonics(self) -> int:
        return int(self._ds.attrs.get("n_harmonics", (self._mean.shape[1] - 1) // 2))

    @property
    def hours(self) -> np.ndarray:
        """``[nh]`` hours of day (UTC) the fit has coefficients for."""
        return self._hours.copy()

    @property
    def attrs(self) -> dict:
        return dict(self._ds.attrs)

    @property
    def dataset(self) -> xr.Dataset:
        """A copy of the coefficient dataset."""
        return self._ds.copy(deep=True)

    def __repr__(self) -> str:
        a = self._ds.attrs
        period = f"{a.get('period_start')}..{a.get('period_end')}"
        return (
            f"Climatology(grid={self.grid.shape}, n_harmonics={self.n_harmonics}, "
            f"hours={self._hours.tolist()}, period={period})"
        )

    # --- evaluation ---------------------------------------------------------------------
    def _evaluate(self, coef: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``[n, nlat, nlon]`` float64 value of the harmonic series ``coef`` at ``times``."""
        x = design_matrix(times, self._mean.shape[1] // 2)
        w = _hour_weights(self._hours, _hour_of_day(times))
        out = np.zeros((times.size, self.grid.size))
        flat = coef.reshape(coef.shape[0], coef.shape[1], -1)
        for i in range(self._hours.size):
            rows = np.flatnonzero(w[:, i])
            if rows.size:
                out[rows] += w[rows, i, None] * (x[rows] @ flat[i])
        return out.reshape(times.size, *self.grid.shape)

    def _wrap(
        self,
        values: np.ndarray,
        times: np.ndarray,
        scalar: bool,
        name: str,
        long_name: str,
        units: str,
    ) -> xr.DataArray:
        coords = self.grid.coords()
        attrs = {"units": units, "long_name": long_name}
        if scalar:
            return xr.DataArray(
                values[0].astype(np.float32),
                dims=("lat", "lon"),
                coords={**coords, "time": times[0]},
                name=name,
                attrs=attrs,
            )
        return xr.DataArray(
            values.astype(np.float32),
            dims=("time", "lat", "lon"),
            coords={"time": times, **coords},
            name=name,
            attrs=attrs,
        )

    def mean_values(self, time) -> np.ndarray:
        """Float64 climatological mean, ``[n, nlat, nlon]`` (or ``[nlat, nlon]`` for a scalar)."""
        times, scalar = _time_values(time)
        m = self._evaluate(self._mean, times)
        return m[0] if scalar else m

    def variance_values(self, time) -> np.ndarray:
        """Float64 climatological variance (floored), shaped like :meth:`mean_values`."""
        times, scalar = _time_values(time)
        v = np.maximum(self._evaluate(self._var, times), self._floor)
        return v[0] if scalar else v

    def mean(self, time) -> xr.DataArray:
        """Climatological mean in K at ``time`` (array: (time, lat, lon); scalar: (lat, lon))."""
        times, scalar = _time_values(time)
        return self._wrap(
            self._evaluate(self._mean, times),
            times,
            scalar,
            "tas_clim_mean",
            "climatological mean of near-surface air temperature",
            "K",
        )

    def std(self, time) -> xr.DataArray:
        """Climatological standard deviation in K at ``time``, shaped like :meth:`mean`."""
        times, scalar = _time_values(time)
        var = np.maximum(self._evaluate(self._var, times), self._floor)
        return self._wrap(
            np.sqrt(var),
            times,
            scalar,
            "tas_clim_std",
            "climatological standard deviation of near-surface air temperature",
            "K",
        )

    def _check_grid(self, da: xr.DataArray) -> None:
        other = Grid.from_xarray(da)
        if other != self.grid:
            raise ValueError(
                f"field grid {other.shape} lat {other.lat[0]}..{other.lat[-1]} lon "
                f"{other.lon[0]}..{other.lon[-1]} differs from the climatology's "
                f"{self.grid.shape} lat {self.grid.lat[0]}..{self.grid.lat[-1]} lon "
                f"{self.grid.lon[0]}..{self.grid.lon[-1]}"
            )

    def _shift(self, da: xr.DataArray, sign: float, name: str, long_name: str) -> xr.DataArray:
        if isinstance(da, xr.Dataset):
            da = da["tas" if sign < 0 else "anomaly"]
        if "time" not in da.coords:
            raise ValueError("the field needs a time coordinate (dimension or scalar)")
        self._check_grid(da)
        if da.dims[-2:] != ("lat", "lon"):
            da = da.transpose(..., "lat", "lon")
        m = self.mean_values(da["time"].values)
        if da["time"].ndim == 1 and da.dims[0] != "time":
            raise ValueError(f"time must be the leading dim, got {da.dims}")
        values = np.asarray(da.values, np.float64) + sign * m
        out = da.copy(data=values.astype(np.float32))
        out.name = name
        out.attrs = {"units": "K", "long_name": long_name}
        if sign > 0:
            out.attrs["standard_name"] = "air_temperature"
        return out

    def to_anomaly(self, tas: xr.DataArray) -> xr.DataArray:
        """``tas - mean(time)`` in K, float32, with the input's coords (time read from it)."""
        return self._shift(tas, -1.0, "anomaly", "near-surface air temperature anomaly")

    def from_anomaly(self, anom: xr.DataArray) -> xr.DataArray:
        """``anomaly + mean(time)`` in K: the inverse of :meth:`to_anomaly`."""
        return self._shift(anom, +1.0, "tas", "near-surface air temperature")

    # --- persistence --------------------------------------------------------------------
    def to_netcdf(self, path: str | os.PathLike) -> pathlib.Path:
        """Write the coefficients to netCDF atomically (temporary file, then rename)."""
        from bayesda.runtime.files import atomic_write

        path = pathlib.Path(path)
        with atomic_write(path) as tmp:  # a new file's permissions (umask), not mkstemp's 600
            self._ds.to_netcdf(tmp, engine="netcdf4")
        return path

    @classmethod
    def from_netcdf(cls, path: str | os.PathLike) -> Climatology:
        """Read a climatology written by :meth:`to_netcdf`."""
        ds = xr.load_dataset(path, engine="netcdf4")
        return cls(ds)


def _version() -> str:
    from bayesda._version import __version__

    return __version__
