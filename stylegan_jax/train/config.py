"""Loading (`configs/<name>.py[:arg]` + `--config.a.b=value`) and validating a training config.

Validation runs once, before anything is compiled or written, and names the field.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import ml_collections

import stylegan_jax.configs
from stylegan_jax.metrics import registry
from stylegan_jax.shapes import data_shape, parse_size
from stylegan_jax.store.checkpoints import BestBy, higher_is_better
from stylegan_jax.store.runs import best_rule
from stylegan_jax.train.backends import BACKENDS
from stylegan_jax.train.families import trainer_class
from stylegan_jax.train.watchdog import WatchdogConfig
from stylegan_jax.train.watchdog import validate as validate_watchdog

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
    if key == "data.resolution" and not text.strip().isdigit() and "aspect" in node:
        try:  # W x H: the shorter side and the aspect (shapes.py)
            size = parse_size(text, "config.data.resolution")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        node.resolution, node.aspect = size.resolution, size.aspect
        return
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
    def fail(field, msg):
        raise ConfigError(f"config.{field}={_get(config, field)!r}: {msg}")

    try:
        family = trainer_class(config.family)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    res = config.data.resolution
    if not isinstance(res, int) or res < 8 or res & (res - 1):
        fail("data.resolution", "expected a power of two >= 8 (the shorter side; "
             "--config.data.resolution=WxH sets it and data.aspect)")
    try:
        data_shape(config.data)
    except ValueError as e:
        fail("data.aspect", str(e))
    if config.data.channels not in (1, 3, 4):
        fail("data.channels", "expected 1, 3 or 4 (RGBA)")
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
    validate_watchdog(config, fail)
    family.validate(config, num_devices, fail)


def metric_specs(config: ml_collections.ConfigDict) -> list:
    """The metrics evaluated during training (empty: none, or no `metrics` section)."""
    m = config.get("metrics")
    if m is None or not m.names.strip():
        return []
    return registry.parse_metrics(m.names)


def best_by(config: ml_collections.ConfigDict) -> BestBy | None:
    """The best-checkpoint rule: `metrics.best`, else with the watchdog on the first result
    of the evaluated metrics (the watchdog follows it, and its metric rollbacks return to
    that best checkpoint); None: no metrics."""
    specs = metric_specs(config)
    if not specs:
        return None
    rule = best_rule(config)
    if rule is None and WatchdogConfig.from_config(config).enabled:
        key = specs[0].result_keys[0]
        rule = BestBy(key, higher_is_better(key))
    return rule


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
