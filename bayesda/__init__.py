"""bayesda: Bayesian data assimilation with a learned generative (VAE) prior.

A variational autoencoder's decoder ``g(z)`` serves as the prior over near-surface
temperature anomaly fields; observations constrain the latent ``z`` through a NumPyro
model, and NUTS samples the posterior of the whole field.

The top level is the public API (everything else is reachable in its module)::

    import bayesda

    bayesda.set_host_device_count()      # optional, first: one CPU device per NUTS chain
    bayesda.enable_compilation_cache()   # optional: reuse compiled programs across runs
    prior = bayesda.load_model("ncep-air")   # a shipped model by name, or a directory
    obs = bayesda.read_obs("obs.csv", climatology=prior.climatology, grid=prior.grid)
    result = bayesda.assimilate(prior, obs, sampler=bayesda.settings.DEMO)
    result.to_xarray(); result.diagnose(); result.plot("maps.png")

Importing :mod:`bayesda` has no side effects on the process and imports nothing heavy; the
names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bayesda._version import __version__
from bayesda.runtime.xla import enable_compilation_cache, set_host_device_count

# public name -> the module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "Assimilation": "bayesda.inference.result",
    "GenerativePrior": "bayesda.prior.generative",
    "Grid": "bayesda.geo.grid",
    "ModelOptions": "bayesda.settings",
    "ReanalysisSettings": "bayesda.workflows.reanalysis",
    "SamplerSettings": "bayesda.settings",
    "Verdict": "bayesda.verify.verdict",
    "assimilate": "bayesda.inference.assimilate",
    "assimilate_batch": "bayesda.inference.assimilate",
    "assimilate_to_run": "bayesda.workflows.run",
    "diagnose": "bayesda.verify.verdict",
    "load_model": "bayesda.prior.checkpoint",
    "pseudo_obs": "bayesda.obs.table",
    "read_obs": "bayesda.obs.table",
    "reanalyse": "bayesda.workflows.reanalysis",
    "verify": "bayesda.verify.metrics",
}
_SUBMODULES = ("settings",)

__all__ = [
    "Assimilation",
    "GenerativePrior",
    "Grid",
    "ModelOptions",
    "ReanalysisSettings",
    "SamplerSettings",
    "Verdict",
    "__version__",
    "assimilate",
    "assimilate_batch",
    "assimilate_to_run",
    "diagnose",
    "enable_compilation_cache",
    "load_model",
    "pseudo_obs",
    "read_obs",
    "reanalyse",
    "set_host_device_count",
    "settings",
    "verify",
]

if TYPE_CHECKING:  # pragma: no cover
    from bayesda import settings
    from bayesda.geo.grid import Grid
    from bayesda.inference.assimilate import assimilate, assimilate_batch
    from bayesda.inference.result import Assimilation
    from bayesda.obs.table import pseudo_obs, read_obs
    from bayesda.prior.checkpoint import load_model
    from bayesda.prior.generative import GenerativePrior
    from bayesda.settings import ModelOptions, SamplerSettings
    from bayesda.verify.metrics import verify
    from bayesda.verify.verdict import Verdict, diagnose
    from bayesda.workflows.reanalysis import ReanalysisSettings, reanalyse
    from bayesda.workflows.run import assimilate_to_run


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"bayesda.{name}")
    raise AttributeError(f"module 'bayesda' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
