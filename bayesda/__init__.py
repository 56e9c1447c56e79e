"""bayesda: Bayesian data assimilation with a learned generative (VAE) prior.

A variational autoencoder's decoder ``g(z)`` serves as the prior over near-surface
temperature anomaly fields; observations constrain the latent ``z`` through a NumPyro
model, and NUTS samples the posterior of the whole field.

Importing :mod:`bayesda` has no side effects on the process; call
:func:`set_host_device_count` and :func:`enable_compilation_cache` first to run the NUTS
chains one per CPU device and reuse compiled programs across processes.
"""

from bayesda._xla import enable_compilation_cache, set_host_device_count

__version__ = "0.1.0"

__all__ = ["__version__", "enable_compilation_cache", "set_host_device_count"]
