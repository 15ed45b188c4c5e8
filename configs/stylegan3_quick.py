"""StyleGAN3 on the bundled faces on a CPU: `--config stylegan3_quick` (-t) or `:r` (-r).

The official recipe (stylegan3_base.py) with tiny networks at 32x32 (6 synthesis layers of
32 channels: 1.4 GFLOP per image and iteration, ~19 img/s on 2 busy cores) and a batch of 16, so
the magnitude EMA and the EMA half-life follow the batch as officially; -r's D input blur
fades over 10 kimg instead of 100, which would cover the whole short run.
"""

from stylegan_jax.configs.stylegan3_base import base


def get_config(variant: str = "t"):
    c = base(variant, batch=16)
    c.data.source = "bundled"
    c.data.resolution = 32
    c.data.channels = 1
    c.model.z_dim = c.model.w_dim = 64
    c.model.channel_base = 1024  # 32 channels (-r: 64 in G)
    c.model.channel_max = 32
    c.model.num_layers = 6  # official 14: each layer is a filtered up/down-sampling
    c.model.num_bf16_res = 0
    c.train.total_kimg = 30.0  # faces by 20-30 kimg; 20-26 min at 19-26 img/s (busy cores)
    c.train.r1_gamma = 1.0
    c.train.aug = "noaug"  # as the quickstart: 30 kimg on these faces do not overfit
    if variant == "r":  # the official fade (100 kimg here) would blur this whole short run
        c.train.blur_fade_kimg = 10.0
    c.log.tick_kimg = 1.0
    c.log.snapshot_kimg = 5.0
    c.log.checkpoint_kimg = 5.0
    c.log.keep_every_kimg = 0.0
    c.log.grid_seeds = 36
    c.metrics.names = c.metrics.best = ""
    return c
