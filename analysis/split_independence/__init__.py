"""Are the held-out fields of the 7-day block split independent of the training fields?"""
