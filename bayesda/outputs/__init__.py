"""What a user reads: uncertainty maps, GeoTIFF layers, the posterior at sites and the
resumable reanalysis store.
"""
