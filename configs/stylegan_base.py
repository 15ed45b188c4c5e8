"""Defaults of the StyleGAN v1 configs: `G_style` / `D_basic` and the official training.

NVlabs/stylegan `train.py`: the ProGAN training loop and schedule (configs/progan_base.py)
with the non-saturating logistic loss + R1 (gamma 10), G EMA with a 10 kimg half-life,
style mixing 0.9, and training from 8x8.
"""

import ml_collections

from stylegan_jax.configs.progan_base import base as progan_base


def base():
    c = progan_base()
    c.family = "stylegan"

    # G_style (G_mapping + G_synthesis) / D_basic kwargs (official defaults).
    m = c.model = ml_collections.ConfigDict()
    m.latent_size = 512
    m.dlatent_size = 512
    m.mapping_layers = 8
    m.mapping_fmaps = 512
    m.mapping_lrmul = 0.01
    m.mapping_nonlinearity = "lrelu"
    m.normalize_latents = True
    m.fmap_base = 8192
    m.fmap_decay = 1.0
    m.fmap_max = 512
    m.use_noise = True
    m.nonlinearity = "lrelu"
    m.use_pixel_norm = False
    m.use_instance_norm = True
    m.fused_scale = "auto"  # fused up/down-sampling convs from 128x128 up
    m.blur_filter = (1.0, 2.0, 1.0)  # () for none
    m.dlatent_avg_beta = 0.995
    m.mbstd_group_size = 4
    m.mbstd_num_features = 1

    t = c.train
    t.total_kimg = 25000.0
    t.lod_initial_resolution = 8
    t.loss = "logistic_r1"
    t.r1_gamma = 10.0
    t.ema_beta = 0.0
    t.ema_kimg = 10.0  # G_smoothing_kimg
    t.style_mixing_prob = 0.9
    t.noise_mode = "random"  # synthesis noise while training
    return c
