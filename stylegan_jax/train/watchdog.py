"""The watchdog's rules: when a run has gone wrong, where it goes back to, and what
changes afterwards so that the same path is not replayed (configs/watchdog_base.py).

Pure rules over numbers; the loop acts on them (train/rollback.py). What the watchdog
has seen (rollbacks, the best metric, a spent fault) is `WatchState`, saved with every
checkpoint, so a restart continues exactly as the run would have gone on.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import ml_collections

# The tick statistics bounded by `loss_bound` (regularisers included: R1 and path length
# blow up first when D's gradients explode).
LOSS_KEYS = ("G/loss", "D/loss", "G/reg", "D/reg")


@dataclasses.dataclass(frozen=True)
class WatchdogConfig:
    """`train.watchdog`, as numbers (see configs/watchdog_base.py)."""

    enabled: bool = False
    max_rollbacks: int = 3
    loss_bound: float = 1000.0
    metric_factor: float = 2.0
    metric_patience: int = 2
    lr_scale: float = 1.0
    ada_p_level: float = 0.8
    ada_p_kimg: float = 10.0
    leak_min_p: float = 0.3
    leak_rotation: float = 0.25
    leak_colour: float = 1.5
    fault_kimg: float = 0.0
    fault_lr_scale: float = 1e4

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> WatchdogConfig:
        w = config.train.get("watchdog")
        if w is None:  # a config written before the watchdog: off
            return cls()
        return cls(**{f.name: w[f.name] for f in dataclasses.fields(cls) if f.name in w})


def validate(config: ml_collections.ConfigDict, fail) -> None:
    """Names the first impossible `train.watchdog` field."""
    w = config.train.get("watchdog")
    if w is None:
        return
    if not isinstance(w.max_rollbacks, int) or w.max_rollbacks < 0:
        fail("train.watchdog.max_rollbacks", "expected an integer >= 0")
    if not w.loss_bound > 0:
        fail("train.watchdog.loss_bound", "expected a positive bound")
    if not w.metric_factor > 1:
        fail("train.watchdog.metric_factor", "expected a factor > 1 (worse than the best by it)")
    if not isinstance(w.metric_patience, int) or w.metric_patience < 1:
        fail("train.watchdog.metric_patience", "expected an integer >= 1")
    if not 0 < w.lr_scale <= 1:
        fail("train.watchdog.lr_scale", "expected a factor in (0, 1] (1: unchanged)")
    if not 0 < w.ada_p_level <= 1:
        fail("train.watchdog.ada_p_level", "expected an ADA strength in (0, 1]")
    for field in ("ada_p_kimg", "leak_min_p", "fault_kimg"):
        if not 0 <= w[field] < math.inf:
            fail(f"train.watchdog.{field}", "expected a finite number >= 0")
    for field in ("leak_rotation", "leak_colour", "fault_lr_scale"):
        if not w[field] > 0:
            fail(f"train.watchdog.{field}", "expected a positive number")


@dataclasses.dataclass
class WatchState:
    """What the watchdog has seen so far (saved in each checkpoint's meta)."""

    rollbacks: int = 0
    best: float | None = None  # the best value of the watched metric so far
    worse: int = 0  # evaluations in a row worse than best by metric_factor
    last_target: int | None = None  # the checkpoint the last rollback restored
    fault_spent: bool = False
    p_high_since: int | None = None  # images shown when p reached ada_p_level

    def to_meta(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_meta(cls, meta: dict | None) -> WatchState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (meta or {}).items() if k in names})


def tick_problem(values: dict[str, float], cfg: WatchdogConfig) -> tuple[str, str] | None:
    """(kind, reason) when a tick's statistics say the run broke: "non-finite" (always
    checked) or "loss-bound" (with the watchdog on); None when they look healthy."""
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        return "non-finite", "non-finite " + ", ".join(f"{k}={values[k]}" for k in bad)
    if cfg.enabled:
        over = [k for k in LOSS_KEYS if k in values and abs(values[k]) > cfg.loss_bound]
        if over:
            return "loss-bound", ", ".join(f"{k}={values[k]:.4g}" for k in over) + \
                f" beyond train.watchdog.loss_bound={cfg.loss_bound:g}"
    return None


def after_evaluation(state: WatchState, value: float, higher_is_better: bool,
                     cfg: WatchdogConfig) -> bool:
    """Records an evaluation of the watched metric; True when it has been worse than the
    best by `metric_factor` for `metric_patience` evaluations in a row (roll back)."""
    if not math.isfinite(value):
        state.worse += 1
    elif state.best is None or (value > state.best if higher_is_better else value < state.best):
        state.best, state.worse = value, 0
        return False
    elif state.best > 0 and (value * cfg.metric_factor < state.best if higher_is_better
                             else value > state.best * cfg.metric_factor):
        state.worse += 1
    else:
        state.worse = 0
    return cfg.enabled and state.worse >= cfg.metric_patience


def fault_active(cfg: WatchdogConfig, state: WatchState, nimg: int) -> bool:
    """The injected learning-rate fault acts from `fault_kimg` until a rollback after it."""
    return cfg.fault_kimg > 0 and not state.fault_spent and nimg >= cfg.fault_kimg * 1000


def lr_factor(cfg: WatchdogConfig, state: WatchState, nimg: int) -> float:
    """The factor on the config's learning rates at `nimg`: lr_scale per rollback, times
    the fault while it acts."""
    factor = cfg.lr_scale ** state.rollbacks
    return factor * cfg.fault_lr_scale if fault_active(cfg, state, nimg) else factor


def scaled_learning_rates(config: ml_collections.ConfigDict,
                          factor: float) -> ml_collections.ConfigDict:
    """A copy of the config with every learning rate times `factor` (StyleGAN2/3's g_lr,
    d_lr; the progressive families' base rates and per-resolution tables)."""
    if factor == 1:
        return config
    scaled = copy.deepcopy(config)
    t = scaled.train
    for field in ("g_lr", "d_lr"):
        t[field] = float(t[field]) * factor
    for field in ("g_lrate_dict", "d_lrate_dict"):
        if field in t:
            t[field] = tuple((r, float(v) * factor) for r, v in t[field])
    return scaled


def ada_alarm(cfg: WatchdogConfig, state: WatchState, p: float | None, nimg: int,
              leak: dict[str, float] | None) -> str | None:
    """Why G's images may carry augmentations (a warning), or None. Updates when p first
    reached `ada_p_level`. The probe only counts while augmenting (nothing leaks at p ~ 0)."""
    if p is None:
        return None
    if p >= cfg.ada_p_level:
        state.p_high_since = nimg if state.p_high_since is None else state.p_high_since
    else:
        state.p_high_since = None
    reasons = []
    if state.p_high_since is not None and nimg - state.p_high_since >= cfg.ada_p_kimg * 1000:
        reasons.append(f"p={p:.3f} >= {cfg.ada_p_level:g} for "
                       f"{(nimg - state.p_high_since) / 1000:.3g} kimg")
    if leak and p >= cfg.leak_min_p:
        if leak["leak_rotation"] > cfg.leak_rotation:
            reasons.append(f"{leak['leak_rotation']:.2f} more of G's images turned than of "
                           "the reals")
        if leak["leak_colour"] > cfg.leak_colour:
            reasons.append(f"G's colour statistics {leak['leak_colour']:.1f} standard "
                           "deviations from the reals'")
    return "; ".join(reasons) or None
