"""How fast is one NUTS assimilation on the shipped model, and how close to the decoder's
gradient cost?
"""
