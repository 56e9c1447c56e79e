"""How many times per hour does the reanalysis assimilate, on CPU and GPU?"""
