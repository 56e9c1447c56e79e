"""End-to-end jobs: a run directory, the reanalysis of many times, the demo."""
