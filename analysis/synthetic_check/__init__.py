"""Does the whole method recover an exact Gaussian posterior?"""
