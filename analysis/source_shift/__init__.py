"""Does the posterior stay calibrated when the truth comes from another source?"""
