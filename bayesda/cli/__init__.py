"""The ``bayesda`` command line: the outermost ring; nothing in the library imports it.

Importing this package imports no JAX: the parser builds in under a second.
"""
