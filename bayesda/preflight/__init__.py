"""Real observations before the model: the pipeline (file, window, elevation, QC, check),
quality control, the run's own calibration check and the large-scale offset.
"""
