"""ProGAN smoke run on the bundled faces: 8x8 -> 16x16 -> 32x32 with fades, on a CPU.

Tiny networks, the official loop and WGAN-GP; ~3.5 minutes on 2 cores. The grids in
samples/ show the resolution doubling; WGAN-GP with one critic step converges slowly at
this scale (textures, not yet faces, at 20 kimg), while
`--config.train.loss=logistic_r1 --config.train.r1_gamma=1.0` shows faces by then.
"""

from stylegan_jax.configs.progan_base import base, pairs


def get_config():
    c = base()
    c.data.source = "bundled"
    c.data.resolution = 32
    c.data.channels = 1
    c.model.fmap_base = 256
    c.model.fmap_max = 64
    c.model.latent_size = 64
    c.train.batch_size = 16
    c.train.minibatch_dict = pairs({8: 32})
    c.train.lod_initial_resolution = 8
    c.train.lod_training_kimg = 3.0  # 8x8 to 3 kimg, 16x16 fades in to 6, ...
    c.train.lod_transition_kimg = 3.0  # ... stable to 9, 32x32 fades in to 12
    c.train.total_kimg = 20.0
    c.train.ema_beta = 0.95  # official 0.999 per step lags a run of ~1000 steps
    c.log.tick_kimg = 1.0
    c.log.snapshot_kimg = 1.0
    c.log.checkpoint_kimg = 5.0
    c.log.keep_every_kimg = 0.0
    c.log.grid_seeds = 36  # a 6 x 6 grid
    return c
