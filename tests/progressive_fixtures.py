"""Tiny progressive configs for the tests: 4x4 -> 8x8 -> 16x16 in 24 iterations of 16.

Schedule (minibatch 16, 4 minibatches per schedule evaluation = 64 images): 4x4 at lod 2
for images [0, 128); 8x8 from 128 (fading, lod 1.5) then stable from 192; 16x16 from 320
(fading, lod 0.5), stable (lod 0) from 384.
"""

from __future__ import annotations

from stylegan_jax.train import config as config_lib


def tiny_config(family: str, **train):
    c = config_lib.load_config(f"{family}_quick")
    c.data.resolution = 16
    c.model.fmap_base = 64
    c.model.fmap_max = 16
    if family == "stylegan":
        c.model.latent_size = c.model.dlatent_size = c.model.mapping_fmaps = 16
    else:
        c.model.latent_size = 16
    c.model.mbstd_group_size = 2
    c.train.batch_size = 16  # 2 per fake device
    c.train.minibatch_dict = ()
    c.train.lod_initial_resolution = 4
    c.train.lod_training_kimg = 0.064
    c.train.lod_transition_kimg = 0.128
    c.train.total_kimg = 1.0
    c.log.tick_kimg = 0.032
    c.log.snapshot_kimg = 0.016  # a grid after every iteration
    c.log.checkpoint_kimg = 0.064
    c.log.keep_last = 20
    c.log.grid_seeds = 4
    c.log.tensorboard = False
    for k, v in train.items():
        c.train[k] = v
    return c
