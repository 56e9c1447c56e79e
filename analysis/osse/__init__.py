"""The perfect-model experiment: VAE prior vs PCA vs OI on simulated (Held-Suarez, QG) weather."""
