"""Gridded data: named datasets and their loading, the smoothed climatology, the shared
train/test split and the statistics of fields.
"""
