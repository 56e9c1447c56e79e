"""A time-budgeted sweep of VAE priors on the simulated weather, on a GPU."""
