"""Observations, from a file to a checked table: the table itself, the station readers, the
time window, physical plausibility, station elevation, capacity and superobbing, and the
observation operator ``H``.
"""
