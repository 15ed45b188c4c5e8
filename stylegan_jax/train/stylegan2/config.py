"""The StyleGAN2-ADA / StyleGAN3 settings of a training config: their validation and the
step's static configuration (`StepConfig`)."""

from __future__ import annotations

from pathlib import Path

import ml_collections

from stylegan_jax.augment import PIPES, check_images, named_pipe
from stylegan_jax.models import stylegan2
from stylegan_jax.shapes import data_shape
from stylegan_jax.train.stylegan2.step import StepConfig


def validate(config: ml_collections.ConfigDict, num_devices: int, fail) -> None:
    """The StyleGAN2-ADA / StyleGAN3 fields (`fail(field, message)` names the first
    impossible one)."""
    m, t = config.model, config.train
    sg3 = config.family == "stylegan3"
    for field in ("d_architecture",) if sg3 else ("g_architecture", "d_architecture"):
        if m[field] not in stylegan2.ARCHITECTURES:
            fail(f"model.{field}", f"expected one of {stylegan2.ARCHITECTURES}")
    positive = ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max")
    if sg3:
        positive += ("g_channel_multiplier", "num_layers")
    for field in positive:
        if not isinstance(m[field], int) or m[field] < 1:
            fail(f"model.{field}", "expected a positive integer")
    if sg3:
        if m.num_layers <= 2:
            fail("model.num_layers", "expected more than the 2 critically sampled layers")
        if m.conv_kernel not in (1, 3):
            fail("model.conv_kernel", "expected 3 (stylegan3-t) or 1 (stylegan3-r)")
        if not m.magnitude_ema_kimg > 0:
            fail("model.magnitude_ema_kimg", "expected a positive number")
        if t.pl_weight != 0 or t.style_mixing_prob != 0:
            fail("train.pl_weight" if t.pl_weight != 0 else "train.style_mixing_prob",
                 "StyleGAN3 trains without path length regularisation and style mixing "
                 "(official); expected 0")
        for field in ("blur_init_sigma", "blur_fade_kimg"):
            if not 0 <= t[field] < float("inf"):
                fail(f"train.{field}", "expected a finite number >= 0")
    elif t.get("blur_init_sigma", 0):
        fail("train.blur_init_sigma", "the D input blur is a StyleGAN3 setting; expected 0")
    if t.noise_mode not in stylegan2.NOISE_MODES:
        fail("train.noise_mode", f"expected one of {stylegan2.NOISE_MODES}")
    per_device = t.batch_size // num_devices
    group = m.mbstd_group_size
    if group is not None and group > 0 and per_device % min(group, per_device):
        fail("model.mbstd_group_size",
             f"must divide the per-device batch {per_device} (or exceed it)")
    for field in ("g_reg_interval", "d_reg_interval", "pl_batch_shrink"):
        if t[field] < 1 and not (field == "g_reg_interval" and t[field] == 0
                                 and t.pl_weight == 0):
            fail(f"train.{field}", "expected an integer >= 1 (g_reg_interval: 0, no lazy "
                 "regularisation, when train.pl_weight is 0)")
    if t.pl_weight > 0 and per_device // t.pl_batch_shrink < 1:
        fail("train.pl_batch_shrink", f"leaves no sample of the per-device batch {per_device}")
    for field in ("g_lr", "d_lr", "ema_kimg"):
        if not t[field] > 0:
            fail(f"train.{field}", "expected a positive number")
    for field in ("r1_gamma", "pl_weight", "pl_decay", "style_mixing_prob"):
        if not 0 <= t[field] < float("inf"):
            fail(f"train.{field}", "expected a finite number >= 0")
    if t.style_mixing_prob > 1:
        fail("train.style_mixing_prob", "expected a probability in [0, 1]")
    _validate_accelerator_options(config, num_devices, fail)
    _validate_augment(config, fail)
    if t.get("resume", "") and not Path(t.resume).exists():
        fail("train.resume", f"no file or directory {t.resume}")
    freeze = t.get("freeze_d", 0)
    if not isinstance(freeze, int) or freeze < 0:
        fail("train.freeze_d", "expected an integer >= 0 (discriminator layers to freeze)")


AUG_MODES = ("noaug", "fixed", "ada")


def _validate_augment(config, fail) -> None:
    """ADA settings (fields optional: configs without them train without augmentation)."""
    t = config.train
    mode = t.get("aug", "noaug")
    if mode not in AUG_MODES:
        fail("train.aug", f"expected one of {AUG_MODES}")
    if mode == "noaug":
        return
    if t.augpipe not in PIPES:
        fail("train.augpipe", f"expected one of {sorted(PIPES)}")
    if not 0 <= t.aug_p < float("inf"):
        fail("train.aug_p", "expected a finite number >= 0")
    if mode == "fixed" and t.aug_p == 0:
        fail("train.aug_p", "train.aug=fixed needs a strength > 0 (or use train.aug=noaug)")
    if mode == "ada":
        if not -1 <= t.ada_target <= 1:
            fail("train.ada_target", "expected a mean sign in [-1, 1] (official 0.6)")
        if not isinstance(t.ada_interval, int) or t.ada_interval < 1:
            fail("train.ada_interval", "expected an integer >= 1")
        if not 0 < t.ada_kimg < float("inf"):
            fail("train.ada_kimg", "expected a positive number")
    shape = data_shape(config.data)
    try:
        check_images(augment_config(config), (1, shape.height, shape.width,
                                              config.data.channels))
    except ValueError as e:
        fail("train.augpipe", str(e))


def augment_config(config: ml_collections.ConfigDict):
    """The AugmentConfig of `train.augpipe`, or None for train.aug=noaug (or no field)."""
    t = config.train
    if t.get("aug", "noaug") == "noaug":
        return None
    return named_pipe(t.augpipe)


def _validate_accelerator_options(config, num_devices: int, fail) -> None:
    """Micro-batches, rematerialisation and all-bfloat16 (fields optional: older configs)."""
    m, t = config.model, config.train
    per_device = t.batch_size // num_devices
    micro = t.get("batch_per_device", 0)
    if not isinstance(micro, int) or micro < 0 or (micro and per_device % micro):
        fail("train.batch_per_device",
             f"expected 0 (the whole per-device batch) or a divisor of the per-device "
             f"batch {per_device}")
    micro = micro or per_device
    group = m.mbstd_group_size
    if group is not None and group > 0 and micro % min(group, micro):
        fail("model.mbstd_group_size",
             f"must divide the micro-batch train.batch_per_device={micro} (or exceed it)")
    if t.pl_weight > 0 and micro // t.pl_batch_shrink < 1:
        fail("train.pl_batch_shrink",
             f"leaves no sample of the micro-batch train.batch_per_device={micro}")
    bf16 = m.num_bf16_res
    if not isinstance(bf16, int) or bf16 < -1:
        fail("model.num_bf16_res", "expected an integer >= 0, or -1 (every block)")
    remat, res = m.get("remat_resolution", 0), config.data.resolution
    if remat != 0 and (not isinstance(remat, int) or remat < 4 or remat & (remat - 1)
                       or remat > res):
        fail("model.remat_resolution",
             f"expected 0 (off) or a power of two in [4, data.resolution={res}]")


def step_config(config: ml_collections.ConfigDict) -> StepConfig:
    t = config.train
    # Official train.py with --resume: faster ADA, no EMA rampup, no D input blur.
    resumed = bool(t.get("resume", ""))
    return StepConfig(
        batch_size=t.batch_size, batch_per_device=t.get("batch_per_device", 0), g_lr=t.g_lr,
        d_lr=t.d_lr, betas=tuple(t.betas), eps=t.eps,
        r1_gamma=t.r1_gamma, pl_weight=t.pl_weight, pl_decay=t.pl_decay,
        pl_batch_shrink=t.pl_batch_shrink, style_mixing_prob=t.style_mixing_prob,
        g_reg_interval=t.g_reg_interval, d_reg_interval=t.d_reg_interval,
        ema_kimg=t.ema_kimg,
        ema_rampup=None if t.ema_rampup < 0 or resumed else t.ema_rampup,
        noise_mode=t.noise_mode, augment=augment_config(config),
        augment_p=float(t.get("aug_p", 0.0)),
        ada_target=float(t.ada_target) if t.get("aug", "noaug") == "ada" else None,
        ada_interval=int(t.get("ada_interval", 4)),
        ada_kimg=100.0 if resumed else float(t.get("ada_kimg", 500.0)),
        freeze_d=int(t.get("freeze_d", 0)),
        emas_every_pass=config.family != "stylegan3",
        r1_skips_out_bias=config.family == "stylegan3",
        blur_init_sigma=0.0 if resumed else float(t.get("blur_init_sigma", 0.0)),
        blur_fade_kimg=float(t.get("blur_fade_kimg", 0.0)))
