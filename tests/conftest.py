"""Test session setup: 8 fake CPU devices, set before jax is imported anywhere."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
# The tests' networks are tiny: compiling is most of their time and LLVM's optimisation
# passes much of compiling. At level 0 the suite takes ~20% less time; XLA's own passes are
# unchanged and results differ from level 2 by float32 rounding only (a StyleGAN2 G's
# image and gradients: 6e-7 relative). Processes the tests start keep the flag.
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
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


import pytest  # noqa: E402 (after the environment above)


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Each module's compiled programs are dropped when it ends. A worker otherwise keeps
    every executable of the ~100 modules it runs (gigabytes), and twice in a full run a late
    module's compile crashed inside XLA's executable serialisation for the persistent cache
    (SIGSEGV; never alone). Later modules reload from that cache instead of compiling."""
    yield
    import jax

    jax.clear_caches()


def pytest_collection_modifyitems(items):
    """Modules with a slow test run first (otherwise in their order): with pytest-xdist
    handing whole modules to workers, the long ones then overlap instead of ending the run
    on one worker while the other idles."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a worker per core this process may use, at most 4 (each holds its own
    compiled programs; the suite's processes and XLA's threads use the rest)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 4))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished 6-iteration run of train_fixtures.tiny_config with three checkpoints (32,
    64 and 96 images), shared by the modules that read runs: (workdir, summary, log lines).
    Tests that change a run copy it first."""
    from train_fixtures import tiny_config

    from stylegan_jax.train import loop

    config = tiny_config()
    config.log.keep_last = 3
    workdir = tmp_path_factory.mktemp("tiny_run")
    lines = []
    summary = loop.train(config, workdir, stop_at_step=6, log=lines.append)
    return workdir, summary, lines
