"""What do gross errors among station observations do, and what does QC undo?"""
