"""TensorFlow for the data code, imported on first use and kept off every GPU."""

from __future__ import annotations


def import_tensorflow():
    """tensorflow, imported on first use and kept off every GPU (JAX owns their memory)."""
    # Function-level: tensorflow is heavy, and the GPU machines' commands that read no
    # data (generate, serve, bench) run without it.
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf
