"""Simulated truth: Gaussian random fields with exact posteriors, Held-Suarez weather
(dinosaur) and quasi-geostrophic turbulence (pyqg-jax) in resumable stores.
"""
