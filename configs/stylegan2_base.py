"""Defaults shared by every StyleGAN2 training config (the official stylegan2-ada values).

Each preset file imports `base()` and overrides a few fields, as the official
`train.py --cfg=...` presets do.
"""

import ml_collections

from stylegan_jax.configs.metrics_base import metrics_section
from stylegan_jax.configs.watchdog_base import watchdog_section


def base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.family = "stylegan2"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.source = "bundled"  # bundled | tfrecord | tfds
    c.data.path = ""  # tfrecord: dataset directory; tfds: name[/config]
    c.data.split = "train"
    c.data.data_dir = ""  # tfds data_dir
    c.data.manual_dir = ""  # tfds manual_dir (celeb_a_hq)
    c.data.resolution = 32
    c.data.aspect = (1, 1)  # (height, width) multiples of resolution: --config.data.resolution=WxH
    c.data.transform = "center-crop"  # bundled/tfds to a W x H ratio: center-crop | pad-to-ratio
    c.data.channels = 1
    c.data.xflip = True  # mirror augmentation (official --mirror)
    c.data.use_labels = False
    c.data.ignore_labels = False  # True: train unconditionally on labelled data, on purpose
    c.data.threads = 0  # reader threads per process (0: one per core, at most 8; TFDS: AUTOTUNE)

    c.model = ml_collections.ConfigDict()
    c.model.z_dim = 512
    c.model.w_dim = 512
    c.model.mapping_layers = 8
    c.model.channel_base = 32768  # fmaps * 32768
    c.model.channel_max = 512
    c.model.g_architecture = "skip"
    c.model.d_architecture = "resnet"
    c.model.conv_clamp = 256.0
    c.model.num_bf16_res = 4  # official: fp16 in the 4 highest resolutions; -1: every block
    c.model.remat_resolution = 0  # blocks at and above it recompute activations (0: off)
    c.model.mbstd_group_size = 4
    c.model.mbstd_num_channels = 1

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 32  # global batch (all devices, all processes)
    c.train.batch_per_device = 0  # micro-batch per device (official batch_gpu); 0: no rounds
    c.train.total_kimg = 25000.0
    c.train.g_lr = 0.002
    c.train.d_lr = 0.002
    c.train.betas = (0.0, 0.99)
    c.train.eps = 1e-8
    c.train.r1_gamma = 10.0
    c.train.pl_weight = 2.0
    c.train.pl_decay = 0.01
    c.train.pl_batch_shrink = 2
    c.train.style_mixing_prob = 0.9
    c.train.g_reg_interval = 4
    c.train.d_reg_interval = 16
    c.train.ema_kimg = 10.0
    c.train.ema_rampup = -1.0  # < 0: none (official `ramp=None`)
    c.train.noise_mode = "random"  # synthesis noise during training
    c.train.backend = "pmap"  # pmap | shard_map
    # ADA (official train.py defaults: --aug=ada --augpipe=bgc --target=0.6).
    c.train.aug = "ada"  # noaug | fixed (p = aug_p throughout) | ada (p adjusted)
    c.train.augpipe = "bgc"  # an official pipe: blit, geom, color, filter, noise, cutout,
    #                          bg, bgc, bgcf, bgcfn, bgcfnc
    c.train.aug_p = 0.0  # fixed: the strength; ada: the initial strength
    c.train.ada_target = 0.6  # ada: target mean sign of D's real logits
    c.train.ada_interval = 4  # ada: iterations between adjustments of p
    c.train.ada_kimg = 500.0  # ada: p can move from 0 to 1 in this many kimg
    # Transfer learning (official --resume, --freezed): a network directory, a training run
    # or an official .pkl to start a new run from (then ada_kimg is 100 and the EMA has no
    # rampup, as officially); the first N discriminator layers frozen.
    c.train.resume = ""
    c.train.freeze_d = 0
    c.train.watchdog = watchdog_section()

    c.log = ml_collections.ConfigDict()
    c.log.tick_kimg = 4.0  # official kimg_per_tick
    c.log.snapshot_kimg = 200.0  # EMA image grid every N kimg (official: 50 ticks)
    c.log.checkpoint_kimg = 200.0
    c.log.keep_last = 3  # keep the newest N checkpoints ...
    c.log.keep_every_kimg = 1000.0  # ... plus one every N kimg (0 = none)
    c.log.grid_seeds = 64  # fixed latents in the snapshot grids (8 x 8)
    c.log.tensorboard = True

    c.metrics = metrics_section()
    return c


def apply_official_preset(c, res: int, mb: int, mbstd: int, fmaps: float, lrate: float,
                          gamma: float, ema: float, ramp, mapping: int) -> None:
    """Sets the fields an official `--cfg` preset fixes (cfg_specs in the official train.py)."""
    c.data.resolution = res
    c.train.batch_size = mb
    c.model.mbstd_group_size = mbstd
    c.model.channel_base = int(fmaps * 32768)
    c.model.channel_max = 512
    c.train.g_lr = c.train.d_lr = lrate
    c.train.r1_gamma = gamma
    c.train.ema_kimg = ema
    c.train.ema_rampup = -1.0 if ramp is None else ramp
    c.model.mapping_layers = mapping
    c.metrics = metrics_section("fid50k_full", best="fid50k_full")  # official --metrics
