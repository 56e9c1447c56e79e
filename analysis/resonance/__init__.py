"""Does NUTS resonate on a whitened Gaussian, and does the detuned step size prevent it?"""
