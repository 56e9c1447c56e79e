"""Real METAR stations: which method predicts withheld stations best (five-fold CV)?"""
