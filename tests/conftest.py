"""Test session setup: 8 fake CPU devices, set before jax is imported anywhere."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# tensorflow (data tests) must never grab an accelerator or flood the log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Commands the tests run (in this process or as subprocesses) share one persistent
# compilation cache of this session, never the user's ~/.cache.
if "SGJ_COMPILATION_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["SGJ_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="sgj-test-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["SGJ_COMPILATION_CACHE"], True)
