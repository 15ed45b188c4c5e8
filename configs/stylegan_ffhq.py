"""StyleGAN v1 on FFHQ: the official `sgan-ffhq-8gpu` run (1024x1024 by default).

8x8 -> final resolution, 600 kimg per resolution and per fade, 25000 kimg, the 8-GPU
preset-v2 minibatches and learning rates. Options (`get_config("res=256,gpus=8")`, e.g.
`--config stylegan_ffhq:res=256`): `res` the final resolution (8 ... 1024; the schedule
is the same, it just stops growing earlier), `gpus` the official preset (1, 2, 4, 8).

Data: `stylegan-jax dataset --source ~/ffhq/images1024x1024 --dest ~/data/ffhq --resolution
1024 --min-resolution 8` stores every level (the pipeline box-averages any level not
stored); then `--config.data.path=~/data/ffhq`.
"""

from stylegan_jax.configs.metrics_base import metrics_section
from stylegan_jax.configs.progan_base import apply_preset_v2, parse_options
from stylegan_jax.configs.stylegan_base import base


def get_config(arg: str | None = None):
    opts = parse_options(arg, dict(res="1024", gpus="8"), "stylegan_ffhq")
    c = base()
    apply_preset_v2(c, int(opts["gpus"]))
    c.train.total_kimg = 25000.0
    c.data.source = "tfrecord"
    c.data.resolution = int(opts["res"])
    c.data.channels = 3
    c.data.xflip = True
    c.metrics = metrics_section("fid50k", best="fid50k")  # the official v1 run's metric
    return c
