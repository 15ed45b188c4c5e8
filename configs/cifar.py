"""Official preset `cifar`: conditional CIFAR-10 as in the StyleGAN2-ADA paper.

Point it at your data with e.g. `--config.data.source=tfrecord --config.data.path=DIR`.
"""

from stylegan_jax.configs.stylegan2_base import apply_official_preset, base


def get_config():
    c = base()
    apply_official_preset(c, res=32, mb=64, mbstd=32, fmaps=1, lrate=0.0025, gamma=0.01,
                          ema=500, ramp=0.05, mapping=2)
    c.data.source = "tfrecord"
    c.data.channels = 3
    c.data.source = "tfds"
    c.data.path = "cifar10"
    c.data.use_labels = True
    c.data.xflip = False
    c.train.total_kimg = 100000.0
    c.train.pl_weight = 0.0  # official cifar: no path length regularization,
    c.train.style_mixing_prob = 0.0  # no style mixing,
    c.model.d_architecture = "orig"  # and the orig discriminator
    return c
