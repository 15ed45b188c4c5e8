"""A tiny StyleGAN2 training config for the loop tests: 16x16 bundled faces, 2 images per
fake device, a tick, grid and checkpoint every 2 iterations."""

from __future__ import annotations

from stylegan_jax.train import config as config_lib


def tiny_config(**train):
    c = config_lib.load_config("quickstart")
    c.data.resolution = 16
    c.model.z_dim = c.model.w_dim = 16
    c.model.channel_base = 128
    c.model.channel_max = 8
    c.model.mbstd_group_size = 2
    c.train.batch_size = 16  # 2 per fake device
    c.train.g_reg_interval = 2
    c.train.d_reg_interval = 2  # two lazy-phase programs (both regs, none) to compile
    c.train.total_kimg = 1.0
    c.log.tick_kimg = 0.032
    c.log.snapshot_kimg = 0.032
    c.log.checkpoint_kimg = 0.032  # every 2 iterations
    c.log.keep_last = 2
    c.log.grid_seeds = 4
    c.log.tensorboard = False
    for k, v in train.items():
        c.train[k] = v
    return c
