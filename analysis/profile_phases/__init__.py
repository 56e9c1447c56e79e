"""Where does one analysis time's wall time go, phase by phase?"""
