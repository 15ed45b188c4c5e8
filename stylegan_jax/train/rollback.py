"""Rolling a broken run back, when a check raised `Divergence` (the rules: train/watchdog.py).

Restores the newest checkpoint (the best one after a metric relapse; one further back when
the run broke again before saving a newer one; the initial state when there is none),
sets the abandoned newer checkpoints aside (renamed, never deleted), draws a new latent
stream (the state's key folded with the rollback's number) and a new data order, scales
the learning rates when `lr_scale` < 1, and records the rollback: a console line,
rollbacks.jsonl, TensorBoard, and the counters in every later checkpoint, so a restart
continues exactly as the run would have.
"""

from __future__ import annotations

import json
import time

import jax

from stylegan_jax.atomic import write_error
from stylegan_jax.train import inputs, watchdog
from stylegan_jax.train.families import trainer_class
from stylegan_jax.train.run import Run, Schedule, initial_state
from stylegan_jax.train.stopping import Divergence, NonFiniteError, TrainingDiverged


def roll_back(run: Run, why: Divergence) -> None:
    """Restores the run to a good state, or raises TrainingDiverged (NonFiniteError with
    the watchdog off) when it may not."""
    cfg, watch, detected = run.watch_cfg, run.watch, run.nimg
    run.ckpts.wait()
    latest = run.ckpts.latest_step()
    where = f"{why.reason} at kimg {detected / 1000:.1f}"
    if not cfg.enabled:
        raise NonFiniteError(f"{where}; the last good checkpoint ({latest}) is kept "
                             "(train.watchdog.enabled=False: no rollback)")
    if watch.rollbacks >= cfg.max_rollbacks:
        raise TrainingDiverged(
            f"{where}; the watchdog's {cfg.max_rollbacks} rollbacks "
            f"(train.watchdog.max_rollbacks) are spent; the last good checkpoint ({latest}) "
            "is kept")
    target = _target(run, why.kind)
    if watchdog.fault_active(cfg, watch, detected):
        watch.fault_spent = True
    watch.rollbacks += 1
    watch.worse, watch.last_target, watch.p_high_since = 0, target, None
    moved = run.ckpts.set_aside_after(target, f"rollback{watch.rollbacks}")
    host_state, meta = _state_at(run, target)
    # A new latent stream: every iteration draws from fold_in(rng, step).
    host_state = host_state.replace(rng=jax.random.fold_in(host_state.rng, watch.rollbacks))
    run.state = run.backend.put_state(host_state)
    run.step, run.nimg, run.tick = int(host_state.step), int(host_state.nimg), meta.get("tick", 0)
    follow_lr_factor(run)
    run.stage = run.trainer.stage_at(run.nimg)
    run.pipe.close()
    run.pipe = inputs.open_stage(run.config, run.source, run.stage, None, watch.rollbacks)
    run.schedule = Schedule.at(run.config, run.nimg, meta.get("next_eval"),
                               run.evaluator is not None)
    run.alarm = None
    run.last_stats.clear()
    _record(run, why, detected, target, moved)


def follow_lr_factor(run: Run) -> bool:
    """Rebuilds the trainer when the learning rates' factor changes (a rollback with
    lr_scale < 1, the injected fault starting or ending); True when it did, and the
    stage's programs must be compiled again."""
    factor = watchdog.lr_factor(run.watch_cfg, run.watch, run.nimg)
    if factor == run.lr_factor:
        return False
    run.trainer = trainer_class(run.config.family)(
        watchdog.scaled_learning_rates(run.config, factor), run.c_dim)
    run.lr_factor = factor
    run.log(f"Learning rates now {factor:g} x the config's (kimg {run.nimg / 1000:.1f})")
    return True


def _target(run: Run, kind: str) -> int | None:
    """The checkpoint to go back to (None: the initial state)."""
    steps = sorted(run.ckpts.manager.all_steps())
    if kind == "metric" and run.ckpts.best_step() is not None:
        return run.ckpts.best_step()
    if steps and steps[-1] == run.watch.last_target:  # broke again before a newer save
        return steps[-2] if len(steps) > 1 else None
    return steps[-1] if steps else None


def _state_at(run: Run, target: int | None):
    """(host state, meta) of a checkpoint, or of a new run."""
    if target is None:
        return initial_state(run.config, run.trainer, run.log), {}
    layout = jax.eval_shape(run.trainer.init_state, run.config.seed)
    host_state, _, meta = run.ckpts.restore(target, template=layout)
    return jax.tree_util.tree_map(jax.numpy.asarray, host_state), meta


def _record(run: Run, why: Divergence, detected: int, target: int | None, moved) -> None:
    n, to_kimg = run.watch.rollbacks, run.nimg / 1000
    record = {"rollback": n, "kimg": detected / 1000, "to_kimg": to_kimg, "kind": why.kind,
              "reason": why.reason, "checkpoint": target, "lr_scale": run.lr_factor,
              "set_aside": [str(p) for p in moved], "timestamp": time.time()}
    run.log(f"Rollback {n} of {run.watch_cfg.max_rollbacks}: {why.reason} at kimg "
            f"{detected / 1000:.1f}; back to "
            + (f"checkpoint {target}" if target is not None else "the initial state")
            + f" (kimg {to_kimg:.1f}) with a new data order and latent stream"
            + (f", learning rates x{run.lr_factor:g}" if run.lr_factor != 1 else ""))
    if not run.main_process:
        return
    path = run.workdir / "rollbacks.jsonl"
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise write_error(str(path), e) from None
    run.writer.scalars(detected / 1000, {"Health/rollback_to_kimg": to_kimg}, jsonl=False)
