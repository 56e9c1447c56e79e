"""How often does the convergence verdict raise false alarms or miss bad runs?"""
