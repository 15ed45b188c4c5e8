"""Loading (`configs/<name>.py[:arg]` + `--config.a.b=value`) and validating a training config.

Validation runs once, before anything is compiled or written, and names the field.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import sys
from pathlib import Path

import ml_collections

from stylegan_jax.models import stylegan2
from stylegan_jax.train.backends import BACKENDS
from stylegan_jax.train.step import StepConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


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
    # Config files import shared defaults as `configs.<module>`.
    if str(CONFIG_DIR.parent) not in sys.path:
        sys.path.insert(0, str(CONFIG_DIR.parent))
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
    """Raises ConfigError naming the first impossible field."""
    def fail(field, msg):
        raise ConfigError(f"config.{field}={_get(config, field)!r}: {msg}")

    if config.family != "stylegan2":
        fail("family", "this trainer runs 'stylegan2'")
    res = config.data.resolution
    if not isinstance(res, int) or res < 8 or res & (res - 1):
        fail("data.resolution", "expected a power of two >= 8")
    if config.data.channels not in (1, 3):
        fail("data.channels", "expected 1 or 3")
    m, t, lg = config.model, config.train, config.log
    for field in ("g_architecture", "d_architecture"):
        if m[field] not in stylegan2.ARCHITECTURES:
            fail(f"model.{field}", f"expected one of {stylegan2.ARCHITECTURES}")
    for field in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max"):
        if m[field] < 1:
            fail(f"model.{field}", "expected a positive integer")
    if t.backend not in BACKENDS:
        fail("train.backend", f"expected one of {BACKENDS}")
    if t.noise_mode not in stylegan2.NOISE_MODES:
        fail("train.noise_mode", f"expected one of {stylegan2.NOISE_MODES}")
    if t.batch_size < 1 or t.batch_size % num_devices:
        fail("train.batch_size", f"must be a positive multiple of the {num_devices} devices")
    per_device = t.batch_size // num_devices
    group = m.mbstd_group_size
    if group is not None and group > 0 and per_device % min(group, per_device):
        fail("model.mbstd_group_size",
             f"must divide the per-device batch {per_device} (or exceed it)")
    if t.pl_weight > 0 and per_device // t.pl_batch_shrink < 1:
        fail("train.pl_batch_shrink", f"leaves no sample of the per-device batch {per_device}")
    for field in ("g_reg_interval", "d_reg_interval", "pl_batch_shrink"):
        if t[field] < 1:
            fail(f"train.{field}", "expected an integer >= 1")
    for field in ("g_lr", "d_lr", "total_kimg", "ema_kimg"):
        if not t[field] > 0:
            fail(f"train.{field}", "expected a positive number")
    for field in ("r1_gamma", "pl_weight", "pl_decay", "style_mixing_prob"):
        if t[field] < 0 or not math.isfinite(t[field]):
            fail(f"train.{field}", "expected a finite number >= 0")
    if t.style_mixing_prob > 1:
        fail("train.style_mixing_prob", "expected a probability in [0, 1]")
    for field in ("tick_kimg", "snapshot_kimg", "checkpoint_kimg"):
        if not lg[field] > 0:
            fail(f"log.{field}", "expected a positive number of kimg")
    if lg.keep_last < 1:
        fail("log.keep_last", "expected at least 1")
    if lg.keep_every_kimg < 0:
        fail("log.keep_every_kimg", "expected >= 0 (0 = none)")


def _get(config, field: str):
    node = config
    for part in field.split("."):
        node = node[part]
    return node


def step_config(config: ml_collections.ConfigDict) -> StepConfig:
    t = config.train
    return StepConfig(
        batch_size=t.batch_size, g_lr=t.g_lr, d_lr=t.d_lr, betas=tuple(t.betas), eps=t.eps,
        r1_gamma=t.r1_gamma, pl_weight=t.pl_weight, pl_decay=t.pl_decay,
        pl_batch_shrink=t.pl_batch_shrink, style_mixing_prob=t.style_mixing_prob,
        g_reg_interval=t.g_reg_interval, d_reg_interval=t.d_reg_interval,
        ema_kimg=t.ema_kimg, ema_rampup=None if t.ema_rampup < 0 else t.ema_rampup,
        noise_mode=t.noise_mode)
