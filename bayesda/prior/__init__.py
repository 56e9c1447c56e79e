"""The generative prior: the VAE, its training and recipe, the representation-error
covariance, the hash-verified model directory and :class:`GenerativePrior`.
"""
