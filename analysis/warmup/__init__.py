"""How much NUTS warmup does the Laplace mass matrix need?"""
