"""Where trained networks live on disk and how they are read back (see load.py)."""
