"""The StyleGAN2 training loop: data -> compiled step -> ticks, grids, checkpoints.

Reads top to bottom: config and devices -> data -> networks and state (fresh or the
newest checkpoint) -> compiled programs -> loop. Every process runs this; only process
0 prints, writes grids, stats and TensorBoard; all take part in checkpoints.
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
from stylegan_jax.generate import latents_for_seeds
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import step as step_lib
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.checkpoint import Checkpoints
from stylegan_jax.train.report import StatsWriter, tick_line

# Fields whose change makes old checkpoints unusable (or meaningless) for a run.
_IDENTITY_SECTIONS = ("family", "model", "data.resolution", "data.channels", "data.use_labels")


class NonFiniteError(RuntimeError):
    """The losses or the state became NaN/Inf; the last good checkpoint is kept."""


def _source_config(data: ml_collections.ConfigDict) -> dict[str, Any]:
    if data.source == "bundled":
        return dict(kind="bundled", resolution=data.resolution, channels=data.channels)
    if data.source == "tfrecord":
        return dict(kind="tfrecord", path=data.path)
    if data.source == "tfds":
        return dict(kind="tfds", name=data.path, split=data.split,
                    data_dir=data.data_dir or None, manual_dir=data.manual_dir or None,
                    resolution=data.resolution, channels=data.channels,
                    label_key="label" if data.use_labels else None)
    raise config_lib.ConfigError(
        f"config.data.source={data.source!r}: expected bundled, tfrecord or tfds")


def _check_workdir_config(workdir: Path, config: ml_collections.ConfigDict) -> None:
    """Writes config.json on the first run; on resume refuses a changed identity."""
    path = workdir / "config.json"
    current = json.loads(config.to_json_best_effort())
    if path.exists():
        saved = json.loads(path.read_text())
        diffs = [f for f in _IDENTITY_SECTIONS if _field(saved, f) != _field(current, f)]
        if diffs:
            raise config_lib.ConfigError(
                f"{workdir} holds a run made with a different {', '.join(diffs)} "
                f"(see {path}); use a new --workdir")
        return
    if jax.process_index() == 0:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(current, indent=2) + "\n")
        os.replace(tmp, path)


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


def _snapshot_grid(nets, host_state, z, c) -> np.ndarray:
    G = nets.G
    variables = {"params": host_state.G_ema, "buffers": host_state.G_ema_buffers}
    img = _grid_program(G)(variables, z, c)
    return images.make_grid(images.to_uint8(np.asarray(img)))


_PROGRAMS: dict = {}


def compiled_iteration(backend: Backend, nets, cfg: step_lib.StepConfig, flags):
    """The mapped iteration program for one combination of lazy phases, built once per process."""
    key = (backend.kind, tuple(backend.devices), nets, cfg, flags)
    if key not in _PROGRAMS:
        fn = functools.partial(step_lib.iteration_from_key, nets=nets, cfg=cfg,
                               do_greg=flags[0], do_dreg=flags[1])
        _PROGRAMS[key] = backend.compile(
            fn, ("replicated", "sharded", "sharded", "replicated"),
            ("replicated", "replicated"))
    return _PROGRAMS[key]


@functools.cache
def _grid_program(G):
    return jax.jit(lambda v, z, c: G.apply(v, z, c, noise_mode="const"))


def train(config: ml_collections.ConfigDict, workdir: str | Path, *, devices=None,
          stop_at_step: int | None = None, log=print) -> dict[str, Any]:
    """Trains until `train.total_kimg` (or `stop_at_step` iterations); resumes from workdir.

    Returns a summary: iterations, kimg, the last checkpoint step, why it stopped.
    """
    # --- config, devices, workdir --------------------------------------------------
    backend = Backend(config.train.backend, devices)
    config_lib.validate(config, backend.num_devices)
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    _check_workdir_config(workdir, config)
    main_process = jax.process_index() == 0
    cfg = config_lib.step_config(config)
    t, lg = config.train, config.log
    batch = t.batch_size

    # --- checkpoints and state --------------------------------------------------------
    ckpt_every = max(1, round(lg.checkpoint_kimg * 1000 / batch))
    keep_every = None
    if lg.keep_every_kimg > 0:
        keep_every = max(1, round(lg.keep_every_kimg * 1000 / batch / ckpt_every)) * ckpt_every
    ckpts = Checkpoints(workdir / "checkpoints", lg.keep_last, keep_every)

    # --- data ---------------------------------------------------------------------------
    from stylegan_jax.data.pipeline import make_pipeline  # imports tensorflow lazily

    source = _source_config(config.data)
    # The networks need c_dim, which the data decides; the pipeline is reopened below
    # at the checkpoint's position.
    with make_pipeline(source, batch, seed=config.seed, resolution=config.data.resolution,
                       prefetch=1) as probe:
        num_classes, served = probe.num_classes, (probe.resolution, probe.channels)
    if served != (config.data.resolution, config.data.channels):
        raise config_lib.ConfigError(
            f"config.data.resolution/channels={config.data.resolution}/{config.data.channels}"
            f" but the data provides {served[0]}/{served[1]}")
    if config.data.use_labels and num_classes == 0:
        raise config_lib.ConfigError("config.data.use_labels=True but the data has no labels")
    c_dim = num_classes if config.data.use_labels else 0
    nets = step_lib.build_networks(config.model, config.data.resolution,
                                   config.data.channels, c_dim)
    template = step_lib.init_state(nets, cfg, seed=config.seed)
    latest, position, restored_meta = ckpts.latest_step(), None, {}
    if latest is not None:
        host_state, position, restored_meta = ckpts.restore(latest, template)
        host_state = jax.tree_util.tree_map(jnp.asarray, host_state)
        if main_process:
            log(f"Resuming from {ckpts.directory}/{latest} "
                f"(kimg {int(host_state.nimg) / 1000:.1f})")
    else:
        host_state = template
    state = backend.put_state(host_state)
    pipe = make_pipeline(source, batch, seed=config.seed, xflip=config.data.xflip,
                         resolution=config.data.resolution, position=position)
    label_table = backend.put_replicated(
        jnp.zeros((1, 0)) if c_dim == 0 else jnp.eye(c_dim, dtype=jnp.float32))

    def program(flags):
        return compiled_iteration(backend, nets, cfg, flags)

    # --- reporting --------------------------------------------------------------------------
    writer = StatsWriter(workdir, lg.tensorboard) if main_process else None
    grid_n = max(1, lg.grid_seeds)
    grid_z = jnp.asarray(latents_for_seeds(list(range(grid_n)), nets.G.z_dim))
    grid_c = jnp.asarray(_one_hot(np.arange(grid_n) % max(c_dim, 1), c_dim))
    samples = workdir / "samples"

    step = int(host_state.step)
    nimg = int(host_state.nimg)
    total_nimg = int(t.total_kimg * 1000)
    start_time = tick_start_time = time.time()
    tick_start_nimg = nimg
    tick = int(restored_meta.get("tick", 0))
    next_snapshot = (nimg // int(lg.snapshot_kimg * 1000) + 1) * int(lg.snapshot_kimg * 1000)
    last_stats: dict[str, Any] = {}
    stats = None
    reason = "done"

    if main_process:
        samples.mkdir(exist_ok=True)
        reals_path = samples / "reals.png"
        if not reals_path.exists():
            first = next(iter(make_pipeline(source, min(batch, 64), seed=config.seed,
                                            xflip=False, resolution=config.data.resolution,
                                            process_index=0, process_count=1)))
            images.save_image(images.make_grid(np.asarray(first.images)), reals_path)
        log(f"Training {nets.G.img_resolution}x{nets.G.img_resolution}x{nets.G.img_channels}"
            f" c_dim={c_dim} on {backend.num_devices} device(s) ({backend.kind}), "
            f"batch {batch}, to {t.total_kimg} kimg; workdir {workdir}")

    def save_checkpoint():
        host = backend.host_state(state)
        if not _finite(host):
            raise NonFiniteError(
                f"the training state became non-finite at kimg {nimg / 1000:.1f}; "
                f"the last good checkpoint ({ckpts.latest_step()}) is kept")
        ckpts.save(step, host, pipe.position(), {"tick": tick, "kimg": nimg / 1000})

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
                data = next(pipe)
                batch_arrays = backend.put_batch(
                    (np.asarray(data.images), _one_hot(data.labels, c_dim)))
                state, stats = program(cfg.phases(step))(state, *batch_arrays, label_table)
                step += 1
                nimg += batch
                for k, v in stats.items():  # keep the newest value of each (phase) stat
                    last_stats[k] = v

                if nimg >= tick_start_nimg + lg.tick_kimg * 1000 or nimg >= total_nimg:
                    values = {k: float(np.asarray(v).reshape(-1)[0])
                              for k, v in last_stats.items()}
                    if not all(math.isfinite(v) for v in values.values()):
                        raise NonFiniteError(
                            f"non-finite loss at kimg {nimg / 1000:.1f}: {values}; the last "
                            f"good checkpoint ({ckpts.latest_step()}) is kept")
                    now = time.time()
                    if main_process:
                        log(tick_line(tick, nimg / 1000, t.total_kimg, now - tick_start_time,
                                      (nimg - tick_start_nimg) / 1000, now - start_time,
                                      values))
                        writer.scalars(nimg / 1000, {
                            **{f"Loss/{k}": v for k, v in values.items()},
                            "Timing/sec_per_kimg": (now - tick_start_time)
                            / max((nimg - tick_start_nimg) / 1000, 1e-8)})
                    tick += 1
                    tick_start_nimg, tick_start_time = nimg, now

                if main_process and (nimg >= next_snapshot or nimg >= total_nimg):
                    grid = _snapshot_grid(nets, backend.host_state(state), grid_z, grid_c)
                    images.save_image(grid, samples / f"fakes{nimg // 1000:06d}.png")
                    writer.image("fakes", nimg / 1000, grid)
                    next_snapshot += int(lg.snapshot_kimg * 1000)
                if step % ckpt_every == 0:
                    save_checkpoint()
            if ckpts.latest_step() != step:
                save_checkpoint()
            ckpts.wait()
    finally:
        pipe.close()
        ckpts.close()
        if writer is not None:
            writer.close()
    if main_process and reason not in ("done", "stop_at_step"):
        log(f"Stopped by {reason} at kimg {nimg / 1000:.1f}; checkpoint {step} saved.")
    return {"step": step, "kimg": nimg / 1000, "checkpoint": ckpts.latest_step(),
            "reason": reason}


def _finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree_util.tree_leaves(tree)
               if np.issubdtype(np.asarray(x).dtype, np.floating))
