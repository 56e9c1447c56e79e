"""What does one value-and-gradient of the decoder cost, alone and inside a JAX loop?"""
