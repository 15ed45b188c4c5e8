"""The training loop: data -> a family's compiled steps -> ticks, grids, checkpoints.

Reads top to bottom: config and devices -> data -> trainer and state (fresh or the
newest checkpoint) -> loop over stages. Every process runs this; only process
0 prints, writes grids, stats and TensorBoard; all take part in checkpoints and in
metric evaluations (train/evaluation.py), each of which is saved with a checkpoint so
the best one by `metrics.best` can be kept.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylegan_jax import images
from stylegan_jax.atomic import write_error
from stylegan_jax.data.pipeline import make_pipeline
from stylegan_jax.data.sources import SourceConfig, source_from_config
from stylegan_jax.metrics.runner import report_metric, scalars
from stylegan_jax.models.sampling import latents_for_seeds, synthesize
from stylegan_jax.store.checkpoints import Checkpoints
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import labels as labels_lib
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.evaluation import Evaluator
from stylegan_jax.train.families import trainer_class
from stylegan_jax.train.programs import compile_stage
from stylegan_jax.train.report import StatsWriter, tick_line

# Fields whose change makes old checkpoints unusable (or meaningless) for a run.
_IDENTITY_SECTIONS = ("family", "model", "data.resolution", "data.channels", "data.use_labels")


class NonFiniteError(RuntimeError):
    """The losses or the state became NaN/Inf; the last good checkpoint is kept."""


def _check_workdir_config(workdir: Path, config: ml_collections.ConfigDict) -> None:
    """Refuses a workdir made with another identity; else (re)writes config.json, so it
    holds what this run uses (e.g. metrics switched on at a restart) for the tools that
    read it (generate, metrics, checkpoints/best)."""
    path = workdir / "config.json"
    current = json.loads(config.to_json_best_effort())
    if path.exists():
        saved = json.loads(path.read_text())
        diffs = [f for f in _IDENTITY_SECTIONS if _field(saved, f) != _field(current, f)]
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


def _field(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


class _StopRequest:
    """SIGTERM / SIGINT set a flag; the loop saves a checkpoint and returns."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _one_hot(labels: np.ndarray, c_dim: int) -> np.ndarray:
    if c_dim == 0:
        return np.zeros((len(labels), 0), np.float32)
    return np.eye(c_dim, dtype=np.float32)[np.asarray(labels)]


def train(config: ml_collections.ConfigDict, workdir: str | Path, *, devices=None,
          stop_at_step: int | None = None, log=print, detectors=None,
          compile_timeout_s: float = 3600.0) -> dict[str, Any]:
    """Trains until `train.total_kimg` (or `stop_at_step` iterations); resumes from workdir.

    Each stage's programs are compiled before its first step, and the processes start it
    together (train/programs.py); `compile_timeout_s` bounds the wait for the slowest.
    `detectors` replaces the metrics' feature networks (metrics.Detectors; tests).
    Returns a summary: iterations, kimg, the last checkpoint (named by images shown),
    the best one by `metrics.best` (or None), why it stopped, and the final state (one
    copy, as global arrays).
    """
    # --- config, devices, workdir --------------------------------------------------
    backend = Backend(config.train.backend, devices)
    config_lib.validate(config, backend.num_devices)
    workdir = Path(workdir).absolute()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(f"the workdir {workdir}", e) from None
    _check_workdir_config(workdir, config)
    main_process = jax.process_index() == 0
    t, lg = config.train, config.log

    # --- data: the networks need its label count -------------------------------------
    source = source_from_config(config.data)
    with make_pipeline(source, t.batch_size, seed=config.seed,
                       resolution=config.data.resolution, prefetch=1, threads=1) as probe:
        num_classes, served = probe.num_classes, (probe.resolution, probe.channels)
    if served != (config.data.resolution, config.data.channels):
        raise config_lib.ConfigError(
            f"config.data.resolution/channels={config.data.resolution}/{config.data.channels}"
            f" but the data provides {served[0]}/{served[1]}")
    if config.data.use_labels and num_classes == 0:
        raise config_lib.ConfigError("config.data.use_labels=True but the data has no labels")
    c_dim = num_classes if config.data.use_labels else 0
    evaluator = None
    if config_lib.metric_specs(config):  # fails here if a feature network's weights are missing
        evaluator = Evaluator(config, c_dim, detectors)

    # --- trainer and state: fresh, or the newest checkpoint ------------------------------
    trainer = trainer_class(config.family)(config, c_dim)
    keep_every = int(lg.keep_every_kimg * 1000) or None
    ckpts = Checkpoints(workdir / "checkpoints", lg.keep_last, keep_every,
                        best=config_lib.best_by(config))
    layout = jax.eval_shape(trainer.init_state, config.seed)  # all a restore needs
    earlier = getattr(trainer, "earlier_layouts", lambda _: [])(layout)
    found = ckpts.restore_newest(functools.partial(ckpts.restore, template=layout,
                                                   earlier=earlier),
                                 warn=log if main_process else lambda _: None,
                                 set_aside=True)
    data_state, meta = {}, {}
    if found is None:
        # One compiled program (cached across restarts), not hundreds of eager ops.
        host_state = jax.jit(trainer.init_state, static_argnums=0)(config.seed)
        if t.get("resume", ""):  # a new run from trained networks (transfer learning)
            host_state = trainer.start_from(host_state, t.resume,
                                            log=log if main_process else lambda _: None)
    else:
        latest, (host_state, data_state, meta) = found
        host_state = jax.tree_util.tree_map(jnp.asarray, host_state)
        if main_process:
            log(f"Resuming from {ckpts.directory}/{latest} (kimg {latest / 1000:.1f})")
    state = backend.put_state(host_state)
    step, nimg = int(host_state.step), int(host_state.nimg)
    # Generated images' labels follow the dataset's (train/labels.py).
    label_table = backend.put_replicated(jnp.zeros((1, 0)) if c_dim == 0 else jnp.asarray(
        labels_lib.label_table(labels_lib.class_counts(
            SourceConfig.from_dict(source), c_dim))))
    threads = config.data.get("threads", 0) or None  # None: one reader per core, at most 8

    def open_data(stage, position=None):
        return make_pipeline(source, stage.batch_size, seed=config.seed + stage.index,
                             xflip=config.data.xflip, resolution=stage.resolution,
                             position=position, threads=threads)

    stage = trainer.stage_at(nimg)
    pipe = open_data(stage, data_state.get("position")
                     if data_state.get("stage") == stage.index else None)
    programs = None  # the current stage's, compiled at its first step

    # --- reporting --------------------------------------------------------------------------
    writer = StatsWriter(workdir, lg.tensorboard, warn=log) if main_process else None
    failed_grids = []  # grids are not essential: one warning, then training goes on

    def save_grid(grid: np.ndarray, path: Path) -> None:
        try:
            path.parent.mkdir(exist_ok=True)
            images.save_image(grid, path)
        except OSError as e:
            if not failed_grids:
                log(f"warning: cannot write the image grid {path} ({e}); training goes "
                    "on (later grid failures are not reported)")
            failed_grids.append(path)
    grid_n = max(1, lg.grid_seeds)
    grid_z = jnp.asarray(latents_for_seeds(list(range(grid_n)), trainer.z_dim))
    grid_c = jnp.asarray(_one_hot(np.arange(grid_n) % max(c_dim, 1), c_dim))
    samples = workdir / "samples"

    def fakes_grid(G) -> np.ndarray:
        fakes = _grid_program(G.module)(G.variables, grid_z, grid_c, G.lod)
        return images.make_grid(images.to_uint8(np.asarray(fakes)))
    total_nimg = int(t.total_kimg * 1000)
    snapshot_every, ckpt_every = int(lg.snapshot_kimg * 1000), int(lg.checkpoint_kimg * 1000)
    next_snapshot = (nimg // snapshot_every + 1) * snapshot_every
    next_ckpt = (nimg // ckpt_every + 1) * ckpt_every
    eval_every = round(config.metrics.every_kimg * 1000) if evaluator else 0
    next_eval = None
    if evaluator is not None:
        next_eval = meta.get("next_eval") or (nimg // eval_every + 1) * eval_every
    start_time = tick_start_time = time.time()
    tick_start_nimg, tick = nimg, int(meta.get("tick", 0))
    last_stats: dict[str, Any] = {}
    reason = "done"

    if main_process:
        if not (samples / "reals.png").exists():
            with make_pipeline(source, 64, seed=config.seed, resolution=config.data.resolution,
                               process_index=0, process_count=1, prefetch=1,
                               threads=1) as first:
                grid = images.make_grid(np.asarray(next(first).images[:grid_n]))
            save_grid(grid, samples / "reals.png")
        if found is None:  # as the official loop: what G_ema shows before training
            save_grid(fakes_grid(trainer.export(host_state)["G_ema"]),
                      samples / "fakes_init.png")
        log(f"Training {config.family} {config.data.resolution}x{config.data.resolution}x"
            f"{config.data.channels} c_dim={c_dim} on {backend.num_devices} device(s) "
            f"({backend.kind}), batch {t.batch_size}, to {t.total_kimg} kimg; workdir {workdir}")

    def finite_host_state():
        host = backend.host_state(state)
        if not _finite(host):
            raise NonFiniteError(
                f"the training state became non-finite at kimg {nimg / 1000:.1f}; "
                f"the last good checkpoint ({ckpts.latest_step()}) is kept")
        return host

    def save_checkpoint(metrics=None):
        ckpts.save(nimg, finite_host_state(), {"stage": stage.index, "position": pipe.position()},
                   {"tick": tick, "kimg": nimg / 1000, "step": step, "c_dim": c_dim,
                    "next_eval": next_eval}, metrics)

    def evaluate() -> dict[str, float]:
        """Metrics of G EMA now: logged, to TensorBoard, and to metric-*.jsonl."""
        results = evaluator(trainer.export(finite_host_state())["G_ema"])
        for result in results.values():
            report_metric(result, workdir, f"checkpoints/{nimg}", log=log)
        values = scalars(results)
        if main_process:
            writer.scalars(nimg / 1000, {f"Metrics/{k}": v for k, v in values.items()},
                           jsonl=False)  # stats.jsonl: one record per tick
        return values

    try:
        with _StopRequest() as stop:
            while True:
                if nimg >= total_nimg:
                    break
                if stop_at_step is not None and step >= stop_at_step:
                    reason = "stop_at_step"
                    break
                if stop.signal:
                    reason = stop.signal
                    break
                if stage.end_nimg is not None and nimg >= stage.end_nimg:
                    pipe.close()
                    stage = trainer.stage_at(nimg)
                    pipe = open_data(stage)
                data = next(pipe)
                batch_arrays = backend.put_batch(
                    (np.asarray(data.images), _one_hot(data.labels, c_dim)))
                if programs is None or programs.stage_index != stage.index:
                    programs = compile_stage(trainer.programs(backend, stage),
                                             (state, *batch_arrays, label_table),
                                             stage.index, compile_timeout_s)
                    if main_process:
                        log(programs.summary())
                    tick_start_time += programs.compile_s + programs.wait_s
                state, stats = programs[trainer.program_key(stage, step)](
                    state, *batch_arrays, label_table)
                step += 1
                nimg += stage.batch_size
                last_stats.update(stats)  # the newest value of each (phase) statistic

                if nimg >= tick_start_nimg + lg.tick_kimg * 1000 or nimg >= total_nimg:
                    values = {k: float(np.asarray(v).reshape(-1)[0])
                              for k, v in last_stats.items()}
                    if not all(math.isfinite(v) for v in values.values()):
                        raise NonFiniteError(
                            f"non-finite loss at kimg {nimg / 1000:.1f}: {values}; the last "
                            f"good checkpoint ({ckpts.latest_step()}) is kept")
                    now = time.time()
                    if main_process:
                        tick_kimg = (nimg - tick_start_nimg) / 1000
                        log(tick_line(tick, nimg / 1000, t.total_kimg, now - tick_start_time,
                                      tick_kimg, now - start_time, values))
                        writer.scalars(nimg / 1000, {
                            **{f"Loss/{k}": v for k, v in values.items() if k != "augment"},
                            **({"Progress/augment": values["augment"]}
                               if "augment" in values else {}),
                            "Progress/stage": stage.index,
                            "Timing/sec_per_kimg": (now - tick_start_time) / max(tick_kimg, 1e-8)})
                    tick += 1
                    tick_start_nimg, tick_start_time = nimg, now

                maintenance_start = time.time()
                if main_process and (nimg >= next_snapshot or nimg >= total_nimg):
                    grid = fakes_grid(trainer.export(backend.host_state(state))["G_ema"])
                    save_grid(grid, samples / f"fakes{nimg // 1000:06d}.png")
                    writer.image("fakes", nimg / 1000, grid)
                    next_snapshot = (nimg // snapshot_every + 1) * snapshot_every
                metrics = None
                # A stop request saves first; the resumed run evaluates (next_eval is saved).
                if (evaluator is not None and not stop.signal
                        and (nimg >= next_eval or nimg >= total_nimg)):
                    metrics = evaluate()
                    next_eval = (nimg // eval_every + 1) * eval_every
                if nimg >= next_ckpt or metrics is not None:
                    save_checkpoint(metrics)
                    next_ckpt = (nimg // ckpt_every + 1) * ckpt_every
                # Ticks time training only (as the official loop excludes maintenance).
                tick_start_time += time.time() - maintenance_start
            if (reason == "done" and evaluator is not None and next_eval <= nimg
                    and not stop.signal):
                evaluate()  # resumed at the end after a stop request skipped the last one
            if ckpts.latest_step() != nimg:
                save_checkpoint()
            ckpts.wait()
            best = ckpts.best_step()
    finally:
        pipe.close()
        ckpts.close()
        if writer is not None:
            writer.close()
    if main_process and reason not in ("done", "stop_at_step"):
        log(f"Stopped by {reason} at kimg {nimg / 1000:.1f}; checkpoint {nimg} saved.")
    return {"step": step, "kimg": nimg / 1000, "checkpoint": ckpts.latest_step(),
            "best": best, "reason": reason, "state": backend.host_state(state)}


@functools.cache
def _grid_program(G):
    return jax.jit(lambda v, z, c, lod: synthesize(G, v, z, c, jax.random.PRNGKey(0), lod))


def _finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree_util.tree_leaves(tree)
               if np.issubdtype(np.asarray(x).dtype, np.floating))
