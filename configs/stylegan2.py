"""Official preset `stylegan2`: config-f, FFHQ 1024, the StyleGAN2 paper's best network.

Mixed precision in the 4 highest resolutions, as in stylegan2-ada.

Point it at your data with e.g. `--config.data.source=tfrecord --config.data.path=DIR`.
"""

from stylegan_jax.configs.stylegan2_base import apply_official_preset, base


def get_config():
    c = base()
    apply_official_preset(c, res=1024, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=10,
                          ema=10, ramp=None, mapping=8)
    c.data.source = "tfrecord"
    c.data.channels = 3
    return c
