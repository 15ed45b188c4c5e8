"""Defaults shared by the progressive-growing configs (ProGAN; StyleGAN v1 builds on them).

The values are the official ones: tkarras/progressive_growing_of_gans `train.py` /
`config.py` (TrainingSchedule, train_progressive_gan, G_paper / D_paper) and NVlabs/stylegan
`training/training_loop.py`. Per-resolution overrides (the official `minibatch_dict`,
`G_lrate_dict`, `D_lrate_dict`) are ((resolution, value), ...) pairs, because a ConfigDict
cannot hold integer keys; on the command line:
`--config.train.minibatch_dict='((4, 128), (8, 64))'`.
"""

import ml_collections

from stylegan_jax.configs.metrics_base import metrics_section
from stylegan_jax.configs.watchdog_base import watchdog_section

# Official "preset-v2" schedules by GPU count (ProGAN config.py, and the StyleGAN train.py
# presets taken from it): (minibatch_base, minibatch_dict, G/D lrate dict).
PRESET_V2 = {
    1: (4, {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4},
        {1024: 0.0015}),
    2: (8, {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8},
        {512: 0.0015, 1024: 0.002}),
    4: (16, {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16},
        {256: 0.0015, 512: 0.002, 1024: 0.003}),
    8: (32, {4: 512, 8: 256, 16: 128, 32: 64, 64: 32},
        {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}),
}


def pairs(d: dict) -> tuple:
    """{resolution: value} -> the ((resolution, value), ...) form the configs hold."""
    return tuple(sorted(d.items()))


def data_section() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.source = "bundled"  # bundled | tfrecord | tfds
    d.path = ""  # tfrecord: dataset directory; tfds: name[/config]
    d.split = "train"
    d.data_dir = ""  # tfds data_dir
    d.manual_dir = ""  # tfds manual_dir (celeb_a_hq)
    d.resolution = 32  # the final resolution; lower levels are box-downsampled
    d.aspect = (1, 1)  # (height, width) multiples of resolution: --config.data.resolution=WxH
    d.transform = "center-crop"  # bundled/tfds to a W x H ratio: center-crop | pad-to-ratio
    d.channels = 1
    d.xflip = True  # official mirror_augment
    d.use_labels = False
    d.ignore_labels = False  # True: train unconditionally on labelled data, on purpose
    d.threads = 0  # reader threads per process (0: one per core, at most 8; TFDS: AUTOTUNE)
    return d


def train_section() -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict()
    # Schedule (official TrainingSchedule defaults).
    t.batch_size = 16  # minibatch_base: global minibatch where minibatch_dict has no entry
    t.total_kimg = 15000.0
    t.lod_initial_resolution = 4
    t.lod_training_kimg = 600.0  # images shown at each resolution before the next fades in
    t.lod_transition_kimg = 600.0  # images over which the next resolution fades in
    t.minibatch_dict = ()  # ((resolution, global minibatch), ...)
    t.g_lr = 0.001  # G_lrate_base
    t.d_lr = 0.001  # D_lrate_base
    t.g_lrate_dict = ()  # ((resolution, lr), ...)
    t.d_lrate_dict = ()
    t.lrate_rampup_kimg = 0.0
    t.minibatch_repeats = 4  # minibatches between schedule evaluations
    t.d_repeats = 1  # D minibatches per G step
    t.reset_opt_for_new_lod = True  # zero the Adam moments when floor/ceil(lod) changes
    # Adam (official G_opt / D_opt).
    t.betas = (0.0, 0.99)
    t.eps = 1e-8
    # Loss: wgan_gp (G_wgan + D_wgan_gp) | logistic_r1 (G_logistic_nonsaturating +
    # D_logistic_simplegp).
    t.loss = "wgan_gp"
    t.wgan_lambda = 10.0
    t.wgan_epsilon = 0.001  # drift
    t.wgan_target = 1.0
    t.r1_gamma = 10.0
    # G EMA: ProGAN's fixed decay per D step (G_smoothing), or StyleGAN's half-life in kimg.
    t.ema_beta = 0.999
    t.ema_kimg = 0.0
    t.backend = "pmap"  # pmap | shard_map
    t.watchdog = watchdog_section()
    return t


def log_section() -> ml_collections.ConfigDict:
    lg = ml_collections.ConfigDict()
    lg.tick_kimg = 20.0  # official ticks are 160 (4x4) ... 20 (1024x1024) kimg
    lg.snapshot_kimg = 100.0  # G EMA grid at the current lod every N kimg
    lg.checkpoint_kimg = 200.0
    lg.keep_last = 3
    lg.keep_every_kimg = 1000.0
    lg.grid_seeds = 64  # an 8 x 8 grid
    lg.tensorboard = True
    return lg


def base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.family = "progan"
    c.seed = 0
    c.data = data_section()

    # G_paper / D_paper kwargs (official defaults).
    c.model = ml_collections.ConfigDict()
    c.model.fmap_base = 8192
    c.model.fmap_decay = 1.0
    c.model.fmap_max = 512
    c.model.latent_size = 512  # official None = nf(0) = min(fmap_base, fmap_max)
    c.model.normalize_latents = True
    c.model.use_pixelnorm = True
    c.model.pixelnorm_epsilon = 1e-8
    c.model.use_leakyrelu = True
    c.model.fused_scale = True
    c.model.mbstd_group_size = 4

    c.train = train_section()
    c.log = log_section()
    c.metrics = metrics_section()  # the official ProGAN loop evaluated no metrics
    return c


def apply_preset_v2(c: ml_collections.ConfigDict, gpus: int) -> None:
    """The official preset-v2 schedule for `gpus` devices (1, 2, 4 or 8)."""
    if gpus not in PRESET_V2:
        raise ValueError(f"preset-v2 exists for gpus in {sorted(PRESET_V2)}, got {gpus}")
    base_mb, minibatch, lrates = PRESET_V2[gpus]
    c.train.batch_size = base_mb
    c.train.minibatch_dict = pairs(minibatch)
    c.train.g_lrate_dict = c.train.d_lrate_dict = pairs(lrates)
    c.train.total_kimg = 12000.0


def parse_options(arg: str | None, defaults: dict, name: str) -> dict:
    """'res=256,gpus=8' -> {'res': '256', 'gpus': '8'} over `defaults`."""
    opts = dict(defaults)
    for item in (arg or "").split(","):
        if item:
            key, _, value = item.partition("=")
            if key not in opts:
                raise ValueError(f"configs/{name}.py: unknown option {key!r}; expected "
                                 + ", ".join(f"{k}=" for k in opts))
            opts[key] = value
    return opts
