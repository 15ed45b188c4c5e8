"""Loading (`configs/<name>.py[:arg]` + `--config.a.b=value`) and validating a training config.

Validation runs once, before anything is compiled or written, and names the field.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

import ml_collections

import stylegan_jax.configs
from stylegan_jax.train.backends import BACKENDS
from stylegan_jax.train.checkpoint import BestBy
from stylegan_jax.train.step import StepConfig

# The repository's configs/, installed as the package `stylegan_jax.configs`.
CONFIG_DIR = Path(stylegan_jax.configs.__file__).resolve().parent


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""


def resolve_config_path(spec: str) -> tuple[Path, str | None]:
    """'paper256', 'configs/auto.py:res=256' -> (file, argument)."""
    name, _, arg = spec.partition(":")
    path = Path(name)
    if not path.suffix:
        path = CONFIG_DIR / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
        raise ConfigError(f"config {spec!r}: no file {path}; known configs: {known}")
    return path, (arg or None)


def load_config(spec: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
    path, arg = resolve_config_path(spec)
    # Config files import shared defaults as `stylegan_jax.configs.<module>`.
    module_spec = importlib.util.spec_from_file_location(f"_sgj_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg is not None else module.get_config()
    for item in overrides:
        apply_override(config, item)
    return config


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
    """'train.batch_size=64' (a leading 'config.' or '--config.' is accepted)."""
    key, sep, text = item.removeprefix("--").removeprefix("config.").partition("=")
    if not sep:
        raise ConfigError(f"override {item!r}: expected --config.<field>=<value>")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        if part not in node:
            raise ConfigError(f"override {item!r}: config has no section {part!r}")
        node = node[part]
    if leaf not in node:
        raise ConfigError(f"override {item!r}: config has no field {key!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    current = node[leaf]
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, str) and not isinstance(value, str):
        value = text
    if current is not None and type(value) is not type(current):
        raise ConfigError(f"config.{key}: expected a {type(current).__name__}, got {text!r}")
    node[leaf] = value


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raises ConfigError naming the first impossible field (common, then family checks)."""
    from stylegan_jax.train.trainers import trainer_class

    def fail(field, msg):
        raise ConfigError(f"config.{field}={_get(config, field)!r}: {msg}")

    try:
        family = trainer_class(config.family)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    res = config.data.resolution
    if not isinstance(res, int) or res < 8 or res & (res - 1):
        fail("data.resolution", "expected a power of two >= 8")
    if config.data.channels not in (1, 3):
        fail("data.channels", "expected 1 or 3")
    threads = config.data.get("threads", 0)
    if not isinstance(threads, int) or threads < 0:
        fail("data.threads", "expected an integer >= 0 (0: one reader per core, at most 8)")
    t, lg = config.train, config.log
    if t.backend not in BACKENDS:
        fail("train.backend", f"expected one of {BACKENDS}")
    if t.batch_size < 1 or t.batch_size % num_devices:
        fail("train.batch_size", f"must be a positive multiple of the {num_devices} devices")
    if not t.total_kimg > 0:
        fail("train.total_kimg", "expected a positive number")
    for field in ("tick_kimg", "snapshot_kimg", "checkpoint_kimg"):
        if not lg[field] * 1000 >= 1:
            fail(f"log.{field}", "expected a positive number of kimg (at least 0.001)")
    if lg.keep_last < 1:
        fail("log.keep_last", "expected at least 1")
    if lg.keep_every_kimg < 0:
        fail("log.keep_every_kimg", "expected >= 0 (0 = none)")
    _validate_metrics(config, fail)
    family.validate(config, num_devices, fail)
    if config.family in ("stylegan2", "stylegan3"):
        _validate_accelerator_options(config, num_devices, fail)
        _validate_augment(config, fail)
        if t.get("resume", "") and not Path(t.resume).exists():
            fail("train.resume", f"no file or directory {t.resume}")
        freeze = t.get("freeze_d", 0)
        if not isinstance(freeze, int) or freeze < 0:
            fail("train.freeze_d", "expected an integer >= 0 (discriminator layers to freeze)")
    elif t.get("resume", "") or t.get("freeze_d", 0):
        fail("train.resume" if t.get("resume", "") else "train.freeze_d",
             f"transfer learning is for StyleGAN2/3 runs, not family {config.family!r}")


AUG_MODES = ("noaug", "fixed", "ada")


def _validate_augment(config, fail) -> None:
    """ADA settings (fields optional: configs without them train without augmentation)."""
    from stylegan_jax.augment import PIPES

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
    if augment_config(config).imgfilter > 0:
        from stylegan_jax.augment import imgfilter

        try:
            imgfilter.check_size(config.data.resolution, config.data.resolution)
        except ValueError as e:
            fail("train.augpipe", str(e))


def augment_config(config: ml_collections.ConfigDict):
    """The AugmentConfig of `train.augpipe`, or None for train.aug=noaug (or no field)."""
    from stylegan_jax.augment import named_pipe

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


def metric_specs(config: ml_collections.ConfigDict) -> list:
    """The metrics evaluated during training (empty: none, or no `metrics` section)."""
    from stylegan_jax.metrics import registry

    m = config.get("metrics")
    if m is None or not m.names.strip():
        return []
    return registry.parse_metrics(m.names)


def best_by(config: ml_collections.ConfigDict) -> BestBy | None:
    """The best-checkpoint rule of `metrics.best` (None: not kept)."""
    from stylegan_jax.metrics import registry

    m = config.get("metrics")
    if m is None or not m.best or not metric_specs(config):
        return None
    return BestBy(m.best, registry.higher_is_better(m.best), int(m.keep_best))


def _validate_metrics(config, fail) -> None:
    m = config.get("metrics")
    if m is None:
        return
    try:
        specs = metric_specs(config)
    except ValueError as e:
        fail("metrics.names", str(e))
    if specs and not m.every_kimg * 1000 >= 1:
        fail("metrics.every_kimg", "expected a positive number of kimg (at least 0.001)")
    if m.batch_size < 1:
        fail("metrics.batch_size", "expected a positive integer")
    if config.family != "stylegan2" and any(s.kind == "ppl" for s in specs):
        fail("metrics.names", "perceptual path length needs a StyleGAN2 generator")
    if config.family != "stylegan3" and any(s.kind == "eq" for s in specs):
        fail("metrics.names", "the equivariance metrics (eqt*, eqr*) need a StyleGAN3 "
             "generator")
    if m.best and specs:  # without metrics, `best` (e.g. a preset's) has nothing to rank
        keys = [k for s in specs for k in s.result_keys]
        if m.best not in keys:
            fail("metrics.best", f"expected one of the results of metrics.names: {keys}")
        if m.keep_best < 1:
            fail("metrics.keep_best", "expected at least 1")


def _get(config, field: str):
    node = config
    for part in field.split("."):
        node = node[part]
    return node


def data_source(data: ml_collections.ConfigDict) -> dict[str, Any]:
    """`config.data` -> the source dict the data pipeline takes (data.sources.SourceConfig)."""
    if data.source == "bundled":
        return dict(kind="bundled", resolution=data.resolution, channels=data.channels)
    if data.source == "tfrecord":
        return dict(kind="tfrecord", path=data.path)
    if data.source == "tfds":
        return dict(kind="tfds", name=data.path, split=data.split,
                    data_dir=data.data_dir or None, manual_dir=data.manual_dir or None,
                    resolution=data.resolution, channels=data.channels,
                    label_key="label" if data.use_labels else None)
    raise ConfigError(
        f"config.data.source={data.source!r}: expected bundled, tfrecord or tfds")


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
