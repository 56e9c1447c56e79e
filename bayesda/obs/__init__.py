"""Observations, from a file to a checked table: the table itself, the station readers
(METAR bulletins as distributed in ``metar``, station positions by ICAO id in ``stationdb``),
the time window, physical plausibility, station elevation, capacity and superobbing, and the
observation operator ``H``.
"""
