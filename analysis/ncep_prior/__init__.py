"""Reproduce and evaluate the shipped NCEP VAE prior (models/ncep-air)."""
