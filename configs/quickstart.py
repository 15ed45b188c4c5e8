"""Quickstart: the bundled LFW faces, small networks, trains on a 2-core CPU in ~15 minutes.

`stylegan-jax train` with no arguments runs this into ./runs/quickstart.
"""

from configs.stylegan2_base import base


def get_config():
    c = base()
    c.data.source = "bundled"
    c.data.resolution = 32
    c.data.channels = 1
    c.model.z_dim = c.model.w_dim = 64
    c.model.mapping_layers = 2
    c.model.channel_base = 2048
    c.model.channel_max = 64
    c.model.num_bf16_res = 0
    c.model.mbstd_group_size = 4
    c.train.batch_size = 16
    c.train.total_kimg = 30.0
    c.train.g_lr = c.train.d_lr = 0.0025
    c.train.r1_gamma = 1.0
    c.train.ema_kimg = 1.0
    c.train.ema_rampup = 0.05
    c.log.tick_kimg = 1.0
    c.log.snapshot_kimg = 5.0
    c.log.checkpoint_kimg = 5.0
    c.log.keep_every_kimg = 0.0
    c.log.grid_seeds = 36  # a 6 x 6 grid
    return c
