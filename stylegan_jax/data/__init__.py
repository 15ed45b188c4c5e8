"""Face datasets: sources, the dataset tool and its on-disk format.

Nothing here imports tensorflow at import time; only TFDS sources and the dataset tool's
writer do, lazily, and they hide every GPU from it.
"""
