"""Can winds alone, through a joint prior, give the unobserved surface pressure?"""
