"""Where trained networks live on disk and how they are read back.

    load          ONE "load from anything": network dir, run, run checkpoint, official pickle
      runs        a training run from its config.json and saved state (no trainer needed)
      networks    network directories (networks.json + msgpack), written atomically
        checkpoints   Orbax checkpoints: async saves, retention, damage detection
"""
