"""How much withheld-observation information does ``--calibrate auto`` need before it may fit?"""
