"""ProGAN on CelebA-HQ 1024x1024: the official `-celebahq-preset-v2-1gpu-fp32` run.

4x4 -> 1024x1024, 600 kimg per resolution and 600 kimg per fade, 12000 kimg, WGAN-GP
(lambda 10, drift 0.001), Adam(0, 0.99, 1e-8) reset when new layers come in, G EMA 0.999
per step. `get_config("gpus=8")` picks the official preset for another device count
(1, 2, 4, 8): the global minibatch and learning rate per resolution.

Data: `stylegan-jax dataset --source DIR --dest ~/data/celebahq --resolution 1024
--min-resolution 4` stores every level (the pipeline box-averages any level not stored);
then `--config.data.path=~/data/celebahq`.
"""

from stylegan_jax.configs.progan_base import apply_preset_v2, base, parse_options


def get_config(arg: str | None = None):
    opts = parse_options(arg, dict(gpus="1"), "progan_celebahq")
    c = base()
    apply_preset_v2(c, int(opts["gpus"]))
    c.data.source = "tfrecord"
    c.data.resolution = 1024
    c.data.channels = 3
    c.data.xflip = True
    return c
