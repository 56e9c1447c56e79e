"""Do compiled programs and memory stay flat over hundreds of assimilations in one process?"""
