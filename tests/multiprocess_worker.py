"""One process of a multi-process test run (started by tests/test_multiprocess.py).

    python tests/multiprocess_worker.py WORKDIR OUT STOP_AT_STEP DEVICES [COORD NPROC PID]

Trains the tiny config with `DEVICES` fake CPU devices in this process (evaluating toy
FID, KID and precision/recall after 3 iterations, real features cached in
WORKDIR/stats_cache), then saves this process's own copy of the final state to
OUT/state_p<process>.npz.

`SGJ_TEST_COMPILE_DELAY=PROCESS:SECONDS` makes that process finish compiling that much
later than the others (a slow host, a cold cache on a slow file system).
`SGJ_TEST_PLAIN=1` trains without regularisers and metrics: a third of the compile time,
for tests about processes rather than about the step.
"""

import os
import sys

workdir, out, stop, devices, *dist = sys.argv[1:]
from stylegan_jax import distributed  # noqa: E402 (jax reads XLA_FLAGS at its first use)

os.environ["XLA_FLAGS"] = distributed.with_host_devices(os.environ.get("XLA_FLAGS", ""),
                                                        int(devices))
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

if dist:
    distributed.initialize(dist[0], int(dist[1]), int(dist[2]), heartbeat_timeout_s=10)

from toy_detectors import toy_detectors  # noqa: E402

from stylegan_jax.train import config as config_lib  # noqa: E402
from stylegan_jax.train import loop  # noqa: E402

if os.environ.get("SGJ_TEST_COMPILE_DELAY"):
    import time

    late_process, delay_s = os.environ["SGJ_TEST_COMPILE_DELAY"].split(":")
    barrier = distributed.barrier

    def late_barrier(name, timeout_s):
        if jax.process_index() == int(late_process) and name.startswith("compiled-stage"):
            print(f"worker: reaching the start line {delay_s} s late", flush=True)
            time.sleep(float(delay_s))
        return barrier(name, timeout_s)

    distributed.barrier = late_barrier

c = config_lib.load_config("quickstart")
c.data.resolution = 16
c.model.z_dim = c.model.w_dim = 16
c.model.channel_base, c.model.channel_max = 128, 8
c.model.mbstd_group_size = 2
c.train.batch_size = 8  # 2 per device on 4 devices
c.train.backend = "shard_map"
c.train.g_reg_interval, c.train.d_reg_interval = 1, 1  # every step: one program to compile
c.log.tick_kimg = c.log.snapshot_kimg = c.log.checkpoint_kimg = 0.016
c.log.grid_seeds = 4
c.log.tensorboard = False
# FID and KID share one generated pass (16 images), PR has its own (1000: its smallest count).
c.metrics.names = "fid16_full,kid16_full,pr1k3_full"
c.metrics.every_kimg, c.metrics.batch_size = 0.024, 8
c.metrics.cache_dir = os.path.join(workdir, "stats_cache")
if os.environ.get("SGJ_TEST_PLAIN"):
    c.train.r1_gamma = c.train.pl_weight = 0.0
    c.metrics.names = ""

summary = loop.train(c, workdir, stop_at_step=int(stop), log=lambda s: print(s, flush=True),
                     detectors=toy_detectors())
leaves = jax.tree_util.tree_leaves_with_path(summary["state"])
local = {jax.tree_util.keystr(p): np.asarray(x.addressable_shards[0].data) for p, x in leaves}
os.makedirs(out, exist_ok=True)
np.savez(os.path.join(out, f"state_p{jax.process_index()}.npz"), **local)
print("worker done", summary["step"], flush=True)
