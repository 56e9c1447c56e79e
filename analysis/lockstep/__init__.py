"""How much of a large batch's NUTS work is spent waiting for the slowest chain?"""
