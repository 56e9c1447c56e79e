"""From observations to a posterior: the NumPyro model, observations prepared for it, the
compiled functions, NUTS, posterior fields, the result object and the batched path.
"""
