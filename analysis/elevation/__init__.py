"""What does station height do on the NCEP grid, and does the lapse-rate adjustment help?"""
