"""How long does loading the shipped model take in a fresh process?"""
