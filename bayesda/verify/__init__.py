"""Is the answer right, and can it be trusted: convergence statistics, the PASS/WARN/FAIL
verdict, probabilistic scores and the baselines they are compared with.
"""
