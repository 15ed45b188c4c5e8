"""A training run's context: set up once (config, devices, workdir, data, trainer, state
fresh or from the newest checkpoint, reporting) and read and advanced by the loop's actions."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylegan_jax.atomic import write_error
from stylegan_jax.data.pipeline import Pipeline
from stylegan_jax.store.checkpoints import Checkpoints
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import inputs, watchdog
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.evaluation import Evaluator
from stylegan_jax.train.families import trainer_class
from stylegan_jax.train.grids import Grids
from stylegan_jax.train.report import StatsWriter
from stylegan_jax.train.stage import Stage, Trainer

# Fields whose change makes old checkpoints unusable (or meaningless) for a run.
_IDENTITY_SECTIONS = ("family", "model", "data.resolution", "data.aspect", "data.channels",
                      "data.use_labels")
_IDENTITY_DEFAULTS = {"data.aspect": [1, 1]}  # fields runs made before them lack


def next_due(nimg: int, every: int) -> int:
    """The first multiple of `every` images after `nimg`."""
    return (nimg // every + 1) * every


@dataclasses.dataclass
class Schedule:
    """When the next snapshot grid, checkpoint and metric evaluation are due (images shown)."""

    snapshot_every: int
    ckpt_every: int
    eval_every: int  # 0: no metrics
    next_snapshot: int
    next_ckpt: int
    next_eval: int | None  # saved in checkpoints: a resumed run evaluates what a stop skipped

    @classmethod
    def at(cls, config: ml_collections.ConfigDict, nimg: int, saved_next_eval: int | None,
           metrics: bool) -> Schedule:
        snap, ckpt = int(config.log.snapshot_kimg * 1000), int(config.log.checkpoint_kimg * 1000)
        every = round(config.metrics.every_kimg * 1000) if metrics else 0
        return cls(snap, ckpt, every, next_due(nimg, snap), next_due(nimg, ckpt),
                   (saved_next_eval or next_due(nimg, every)) if metrics else None)


@dataclasses.dataclass
class Run:
    """What a run works with (fixed) and where it is (advanced by the loop; the counters go
    into each checkpoint's metadata). Every process holds one; `writer` is process 0's."""

    config: ml_collections.ConfigDict
    workdir: Path
    log: Callable[[str], None]  # process 0's lines (other processes: silent)
    backend: Backend
    trainer: Trainer
    ckpts: Checkpoints
    evaluator: Evaluator | None
    writer: StatsWriter | None
    grids: Grids
    source: dict
    c_dim: int
    class_names: tuple[str, ...]  # label k's name (empty: unconditional)
    label_table: jax.Array
    fresh: bool  # no checkpoint to resume from
    state: Any  # on the devices
    step: int
    nimg: int
    tick: int
    stage: Stage
    pipe: Pipeline
    schedule: Schedule
    watch_cfg: watchdog.WatchdogConfig  # train.watchdog, read once (checked every iteration)
    watch: watchdog.WatchState  # saved in checkpoints' meta
    lr_factor: float  # the trainer's learning rates are the config's times this
    leak: dict[str, float] | None = None  # the newest leak probe (snapshot time)
    alarm: str | None = None  # the ADA leak alarm's reason while it is raised
    probe_reals: np.ndarray | None = None  # the reals the leak probe compares with
    last_stats: dict = dataclasses.field(default_factory=dict)  # newest value of each

    def stat_values(self) -> dict[str, float]:
        """The newest value of each (phase) statistic, on the host (one device sync)."""
        return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in self.last_stats.items()}

    @property
    def main_process(self) -> bool:
        return jax.process_index() == 0

    @property
    def total_nimg(self) -> int:
        return int(self.config.train.total_kimg * 1000)

    def close(self) -> None:
        self.pipe.close()
        self.ckpts.close()
        if self.writer is not None:
            self.writer.close()


def open_run(config: ml_collections.ConfigDict, workdir: str | Path, devices, log,
             detectors) -> Run:
    """Validates the config for the devices and sets the run up; resumes from the newest
    readable checkpoint in workdir, else starts fresh (or from `train.resume`)."""
    backend = Backend(config.train.backend, devices)
    config_lib.validate(config, backend.num_devices)
    workdir = prepare_workdir(workdir, config)
    main_process = jax.process_index() == 0
    say = log if main_process else lambda _: None
    source, labels = inputs.open_source(config)
    c_dim, class_names = labels.c_dim, labels.class_names
    labels_line = inputs.label_summary(config, labels)
    if labels_line:
        say(labels_line)
    evaluator = None
    if config_lib.metric_specs(config):  # fails here if a feature network's weights are missing
        evaluator = Evaluator(config, c_dim, detectors)
    trainer = trainer_class(config.family)(config, c_dim)
    keep_every = int(config.log.keep_every_kimg * 1000) or None
    ckpts = Checkpoints(workdir / "checkpoints", config.log.keep_last, keep_every,
                        best=config_lib.best_by(config), run_meta=labels.meta())
    fresh, (host_state, data_state, meta) = _restore_or_init(config, trainer, ckpts, say)
    nimg = int(host_state.nimg)
    watch = watchdog.WatchState.from_meta(meta.get("watchdog"))
    watch_cfg = watchdog.WatchdogConfig.from_config(config)
    factor = watchdog.lr_factor(watch_cfg, watch, nimg)
    if factor != 1:  # a run after a rollback (lr_scale) or in its injected fault
        trainer = trainer_class(config.family)(
            watchdog.scaled_learning_rates(config, factor), c_dim)
    stage = trainer.stage_at(nimg)
    pipe = inputs.open_stage(config, source, stage, data_state.get("position")
                             if data_state.get("stage") == stage.index else None,
                             watch.rollbacks)
    return Run(
        config=config, workdir=workdir, log=say, backend=backend, trainer=trainer,
        ckpts=ckpts, evaluator=evaluator,
        writer=StatsWriter(workdir, config.log.tensorboard, warn=log) if main_process else None,
        grids=Grids(workdir / "samples", trainer.z_dim, c_dim, config.log.grid_seeds, log,
                    class_names, inputs.grid_label_vectors(config, source, labels)),
        source=source, c_dim=c_dim, class_names=class_names,
        label_table=inputs.fake_label_table(backend, labels, config.seed),
        fresh=fresh, state=backend.put_state(host_state), step=int(host_state.step), nimg=nimg,
        tick=int(meta.get("tick", 0)), stage=stage, pipe=pipe,
        schedule=Schedule.at(config, nimg, meta.get("next_eval"), evaluator is not None),
        watch_cfg=watch_cfg, watch=watch, lr_factor=factor)


def _restore_or_init(config, trainer, ckpts: Checkpoints, say) -> tuple[bool, tuple]:
    """(fresh, (host state, data state, meta)) from the newest checkpoint, else a new state."""
    layout = jax.eval_shape(trainer.init_state, config.seed)  # all a restore needs
    earlier = getattr(trainer, "earlier_layouts", lambda _: [])(layout)
    found = ckpts.restore_newest(functools.partial(ckpts.restore, template=layout,
                                                   earlier=earlier),
                                 warn=say, set_aside=True)
    if found is not None:
        latest, (host_state, data_state, meta) = found
        say(f"Resuming from {ckpts.directory}/{latest} (kimg {latest / 1000:.1f})")
        return False, (jax.tree_util.tree_map(jnp.asarray, host_state), data_state, meta)
    return True, (initial_state(config, trainer, say), {}, {})


def initial_state(config: ml_collections.ConfigDict, trainer: Trainer, say):
    """A new run's state: fresh networks, or those of `train.resume` (transfer learning)."""
    # One compiled program (cached across restarts), not hundreds of eager ops.
    host_state = jax.jit(trainer.init_state, static_argnums=0)(config.seed)
    if config.train.get("resume", ""):
        host_state = trainer.start_from(host_state, config.train.resume, log=say)
    return host_state


def prepare_workdir(workdir: str | Path, config: ml_collections.ConfigDict) -> Path:
    """The workdir as an absolute path, created; refuses one made with another identity,
    else (re)writes config.json, so it holds what this run uses (e.g. metrics switched on
    at a restart) for the tools that read it (generate, metrics, checkpoints/best)."""
    workdir = Path(workdir).absolute()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(f"the workdir {workdir}", e) from None
    path = workdir / "config.json"
    current = json.loads(config.to_json_best_effort())
    if path.exists():
        saved = json.loads(path.read_text())
        diffs = [f for f in _IDENTITY_SECTIONS
                 if (_field(saved, f) or _IDENTITY_DEFAULTS.get(f))
                 != (_field(current, f) or _IDENTITY_DEFAULTS.get(f))]
        if diffs:
            raise config_lib.ConfigError(
                f"{workdir} holds a run made with a different {', '.join(diffs)} "
                f"(see {path}); use a new --workdir")
    if jax.process_index() == 0:
        tmp = path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(current, indent=2) + "\n")
            os.replace(tmp, path)
        except OSError as e:
            raise write_error(str(path), e) from None
    return workdir


def _field(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d
