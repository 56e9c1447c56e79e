"""Where things are: the grid convention, units, covariance kernels on the sphere, the land
mask and the surface height of a model grid.
"""
