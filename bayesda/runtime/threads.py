"""One BLAS thread for loops of small linear algebra.

The calibration fit (:mod:`bayesda.preflight.calibrate`) and quality control
(:mod:`bayesda.preflight.qc`)
solve thousands of systems the size of one time's observations (tens to hundreds).
Multithreaded OpenBLAS makes each such call slower, and far slower when the cores are
busy: a 32 x 32 triangular solve took 5-8 ms with the default threads on a loaded
2-core machine against 22 us with one (``--calibrate auto`` on 40 observations: 70 s).
:func:`single_blas` runs a function with one BLAS thread (``threadpoolctl``) and restores
the setting afterwards. The same holds for the one large ``eigh`` that rebuilds a
stationary representation error at model load (1325 x 1325: 0.47 s idle with the default
threads, 0.51 s with one; 23 s against 1.7 s on the loaded machine).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

__all__ = ["single_blas"]

F = TypeVar("F", bound=Callable)


def single_blas(fn: F) -> F:
    """Decorate ``fn`` to run with one BLAS thread (its callers keep their setting)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
