"""Official preset `paper512`: the StyleGAN2-ADA paper's 512x512 setup (e.g. AFHQ, MetFaces).

Point it at your data with e.g. `--config.data.source=tfrecord --config.data.path=DIR`.
"""

from stylegan_jax.configs.stylegan2_base import apply_official_preset, base


def get_config():
    c = base()
    apply_official_preset(c, res=512, mb=64, mbstd=8, fmaps=1, lrate=0.0025, gamma=0.5,
                          ema=20, ramp=None, mapping=8)
    c.data.source = "tfrecord"
    c.data.channels = 3
    return c
