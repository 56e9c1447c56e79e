"""bayesda: Bayesian data assimilation with a learned generative (VAE) prior.

A variational autoencoder's decoder ``g(z)`` serves as the prior over near-surface
temperature anomaly fields; observations constrain the latent ``z`` through a NumPyro
model, and NUTS samples the posterior of the whole field.
"""

from bayesda._xla import configure_compilation_cache, configure_host_devices

configure_host_devices()
configure_compilation_cache()

__version__ = "0.1.0"

__all__ = ["__version__"]
