"""The process around the computation: XLA set-up, threads, device arrays, optional imports,
the on-disk caches (exported programs, derived arrays) and safe, atomic file writes.

Nothing here knows about weather; everything else builds on it.
"""
