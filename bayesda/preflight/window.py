"""Before sampling a window of analysis times: the same preflight at every time of the window.

:func:`preflight_window` runs :func:`bayesda.preflight.pipeline.preflight` (time window,
lapse-rate adjustment, QC, calibration check) once per window time on the same observation
table, and returns each time's observations. A window time with no observation within its
own time window is kept, with no observations: the window model carries information to it
from its neighbours.

What a window cannot take: a preflight step that changes the prior. ``offset`` adds latent
modes the dynamics know nothing of, and ``calibrate="auto"``/``"single"`` would rescale the
representation error differently at each time; both are refused. The calibration check
(``calibrate="off"``, the default) runs at the analysis time only, where its withheld
observations say whether the prior fits; the other times skip it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesda.preflight.pipeline import preflight

__all__ = ["preflight_window"]


def preflight_window(
    prior,
    obs: pd.DataFrame,
    times,
    *,
    centre: int | None = None,
    calibrate: str = "off",
    offset: str = "none",
    **kwargs,
) -> tuple[list, dict]:
    """Run the single-time preflight at every time of a window.

    Args:
      prior: the prior.
      obs: observations of (at least) the window's times: anomalies in K with a ``time``
        column (rows without one count at every time).
      times: the window's times.
      centre: the index of the analysis time (default: the middle one), where the
        calibration check runs.
      calibrate: ``"off"`` (check at the analysis time) or ``"none"``; the rescaling modes
        are refused.
      offset: must be ``"none"``.
      **kwargs: the other arguments of :func:`bayesda.preflight.pipeline.preflight`
        (``window``, ``qc``, ``folds``, ``seed``, ``qc_settings``, ``lapse``).

    Returns:
      ``(obs_by_time, record)``: one table per window time (None where no observation falls
      in that time's window) and ``{"times": [...], "by_time": [record or reason, ...]}``.

    Raises:
      ValueError: an unsupported ``calibrate`` or ``offset``, or no observation at any time.
    """
    if calibrate not in ("off", "none"):
        raise ValueError(
            f"calibrate={calibrate!r} rescales the prior at each time; a window of times "
            "takes 'off' (check at the analysis time) or 'none'"
        )
    if offset != "none":
        raise ValueError(
            f"offset={offset!r} adds latent modes the dynamics do not know; a window of "
            "times takes offset='none'"
        )
    times = list(times)
    centre = len(times) // 2 if centre is None else int(centre)
    frames: list = []
    records: list = []
    for k, t in enumerate(times):
        try:
            _, sel, record = preflight(
                prior,
                obs,
                time=t,
                calibrate=calibrate if k == centre else "none",
                offset="none",
                **kwargs,
            )
        except ValueError as err:
            if not str(err).startswith("no observation within"):
                raise
            frames.append(None)
            records.append({"time": str(np.datetime64(t, "s")), "skipped": str(err)})
            continue
        frames.append(sel)
        records.append(record)
    if all(f is None for f in frames):
        raise ValueError(
            f"no observation within the time window of any of the {len(times)} window times "
            f"({str(np.datetime64(times[0], 's'))} .. {str(np.datetime64(times[-1], 's'))})"
        )
    return frames, {"times": [str(np.datetime64(t, "s")) for t in times], "by_time": records}
