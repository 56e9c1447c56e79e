"""Does bayesda's withheld-observation check notice a prior that does not fit the data?"""
