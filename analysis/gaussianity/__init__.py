"""What does a Gaussian miss in the simulated and real fields (is there anything for a VAE)?"""
