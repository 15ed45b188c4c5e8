"""Official preset `paper256`: the StyleGAN2-ADA paper's 256x256 setup (FFHQ / LSUN at 256).

Point it at your data with e.g. `--config.data.source=tfrecord --config.data.path=DIR`.
"""

from stylegan_jax.configs.stylegan2_base import apply_official_preset, base


def get_config():
    c = base()
    apply_official_preset(c, res=256, mb=64, mbstd=8, fmaps=0.5, lrate=0.0025, gamma=1,
                          ema=20, ramp=None, mapping=8)
    c.data.source = "tfrecord"
    c.data.channels = 3
    return c
