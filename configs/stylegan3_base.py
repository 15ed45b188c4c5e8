"""Defaults of every StyleGAN3 training config: the official `train.py --cfg=stylegan3-t|r`.

StyleGAN3 trains in the StyleGAN2 loop (`family = "stylegan3"`): the alias-free generator
with the StyleGAN2 discriminator, no path-length regularisation, no style mixing and no lazy
regularisation of G (`g_reg_interval = 0`), G lr 0.0025, a 2-layer mapping network, the
generator's running statistics moved only in Dmain, and a magnitude EMA that halves every
20 kimg of the global batch. `-r` adds 1x1 convolutions, radially symmetric filters, twice
the generator channels and the D input blur (sigma 10 fading over batch * 200 / 32 kimg).
"""

from stylegan_jax.configs.metrics_base import metrics_section
from stylegan_jax.configs.stylegan2_base import base as stylegan2_base

VARIANTS = ("t", "r")


def base(variant: str, batch: int = 32):
    """The official defaults of `--cfg=stylegan3-<variant> --batch=<batch>`."""
    if variant not in VARIANTS:
        raise ValueError(f"StyleGAN3 variant {variant!r}: expected one of {VARIANTS}")
    c = stylegan2_base()
    c.family = "stylegan3"
    m, t = c.model, c.train
    del m.g_architecture  # the alias-free generator has one architecture
    m.mapping_layers = 2
    m.channel_base, m.channel_max = 32768, 512  # official --cbase, --cmax (D; G: times ...)
    m.g_channel_multiplier = 2 if variant == "r" else 1  # ... this: -r doubles G's channels
    m.num_layers = 14  # synthesis layers (official default)
    m.conv_kernel = 1 if variant == "r" else 3
    m.use_radial_filters = variant == "r"
    m.magnitude_ema_kimg = 20.0  # magnitude_ema_beta = 0.5 ** (batch / (kimg * 1000))
    t.batch_size = batch
    t.g_lr, t.d_lr = 0.0025, 0.002
    t.pl_weight = 0.0
    t.style_mixing_prob = 0.0
    t.g_reg_interval = 0  # official G_reg_interval=None
    t.d_reg_interval = 16
    t.ema_kimg = batch * 10 / 32
    t.ema_rampup = 0.05
    t.blur_init_sigma = 10.0 if variant == "r" else 0.0
    t.blur_fade_kimg = batch * 200 / 32 if variant == "r" else 0.0
    c.metrics = metrics_section("fid50k_full", best="fid50k_full")  # official --metrics
    return c


def official_config(variant: str, arg: str | None):
    """A `configs/stylegan3_<variant>.py[:res=N,gamma=G]` preset: the official recommended
    configuration for that resolution (docs/configs.md: batch 32, gamma 0.5 at 128x128,
    quadrupled per doubling of the resolution), for a TFRecord dataset."""
    opts = dict(res="256", gamma="")
    for item in (arg or "").split(","):
        if item:
            key, _, value = item.partition("=")
            if key not in opts:
                raise ValueError(f"configs/stylegan3_{variant}.py: unknown option {key!r}; "
                                 "expected res=, gamma=")
            opts[key] = value
    res = int(opts["res"])
    c = base(variant)
    c.data.source = "tfrecord"
    c.data.channels = 3
    c.data.resolution = res
    c.train.r1_gamma = float(opts["gamma"]) if opts["gamma"] else 0.5 * (res / 128) ** 2
    return c
