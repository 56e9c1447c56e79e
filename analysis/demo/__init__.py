"""What does a fresh ``bayesda demo`` cost per phase, and what did each speed-up change?"""
