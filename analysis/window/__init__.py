"""Windows of analysis times through learned latent dynamics (issue 28): the dynamics' fit and
forecast skill, the window against single-time bayesda and OI, the smoother's throughput."""
