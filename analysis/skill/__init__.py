"""How skilful is bayesda against OI, climatology and optimise-and-restart on held-out NCEP
fields?
"""
