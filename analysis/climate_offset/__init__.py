"""Does the large-scale offset prior absorb a climate that moved (a warm year, a gradient)?"""
