"""The run's periodic actions: the grids at the start, snapshot grids, metric evaluations
and checkpoints when due, and the last evaluation and checkpoint at the end.

Process 0 alone renders and writes grids; every process takes part in checkpoints (Orbax
needs all of them) and in evaluations, each saved with a checkpoint so the best one by
`metrics.best` can be kept.
"""

from __future__ import annotations

from stylegan_jax import images
from stylegan_jax.augment import named_pipe
from stylegan_jax.metrics.runner import MetricResult, report_metric, scalars
from stylegan_jax.shapes import data_shape
from stylegan_jax.train import leak_probe, watchdog
from stylegan_jax.train.inputs import first_images, images_by_class
from stylegan_jax.train.run import Run, next_due
from stylegan_jax.train.stopping import Divergence, StopRequest, check_state


def at_start(run: Run) -> None:
    """Process 0: the reals grid (once per workdir), what G EMA shows before training (a
    fresh run, as the official loop), and the start line."""
    if not run.main_process:
        return
    config, t = run.config, run.config.train
    if not (run.grids.samples / "reals.png").exists():
        if run.c_dim:
            reals = images_by_class(config, run.source, run.grids.row_classes(),
                                    run.grids.cols)
        else:
            reals = first_images(config, run.source, run.grids.n)
        run.grids.save(run.grids.grid(reals[:run.grids.n]), "reals.png")
    if run.fresh:
        run.grids.save(run.grids.grid(
            run.grids.fakes(_G_ema(run, run.backend.host_state(run.state)))), "fakes_init.png")
    if config.train.get("aug", "noaug") != "noaug":  # what the ADA leak probe compares with
        run.probe_reals = first_images(config, run.source, 64)
    run.log(f"Training {config.family} {data_shape(config.data)}x"
            f"{config.data.channels} c_dim={run.c_dim} on {run.backend.num_devices} device(s) "
            f"({run.backend.kind}), batch {t.batch_size}, to {t.total_kimg} kimg; "
            f"workdir {run.workdir}")


def maintain(run: Run, stop: StopRequest) -> None:
    """After an iteration: a snapshot grid, metrics, a checkpoint, each when due (and all
    at total_kimg). A stop request saves first; the resumed run evaluates (next_eval is
    saved)."""
    s, done = run.schedule, run.nimg >= run.total_nimg
    if run.main_process and (run.nimg >= s.next_snapshot or done):
        snapshot(run)
        s.next_snapshot = next_due(run.nimg, s.snapshot_every)
    metrics = None
    if run.evaluator is not None and not stop.signal and (run.nimg >= s.next_eval or done):
        metrics = evaluate(run)
        s.next_eval = next_due(run.nimg, s.eval_every)
        _watch_metric(run, metrics)
    if run.nimg >= s.next_ckpt or metrics is not None:
        save_checkpoint(run, metrics)
        s.next_ckpt = next_due(run.nimg, s.ckpt_every)


def at_end(run: Run, reason: str, stop: StopRequest) -> None:
    """The evaluation a stop request skipped at total_kimg (a resumed run), the last
    checkpoint, and the wait for checkpoints still being written."""
    if (reason == "done" and run.evaluator is not None and run.schedule.next_eval <= run.nimg
            and not stop.signal):
        evaluate(run)
    if run.ckpts.latest_step() != run.nimg:
        save_checkpoint(run)
    run.ckpts.wait()


def snapshot(run: Run) -> None:
    """samples/fakesNNNNNN.png (kimg) and TensorBoard's image: G EMA for the fixed seeds;
    while augmenting, augmentedNNNNNN.png (the first reals as D sees them at the current
    p: what the pipe does to shape, aspect and alpha) and the ADA leak probe of the fakes
    (train/leak_probe.py)."""
    host_state = run.backend.host_state(run.state)
    fakes = run.grids.fakes(_G_ema(run, host_state))
    grid = run.grids.grid(fakes)
    run.grids.save(grid, f"fakes{run.nimg // 1000:06d}.png")
    run.writer.image("fakes", run.nimg / 1000, grid)
    if run.probe_reals is not None:
        reals = run.probe_reals[:run.grids.n]
        seen = run.grids.augmented(reals, named_pipe(run.config.train.augpipe),
                                   float(host_state.augment_p), run.nimg)
        run.grids.save(images.make_grid(seen, run.grids.cols),
                       f"augmented{run.nimg // 1000:06d}.png")
        run.leak = leak_probe.probe(fakes, run.probe_reals)


def _watch_metric(run: Run, metrics: dict[str, MetricResult]) -> None:
    """The watchdog's look at an evaluation (the best-checkpoint rule's result): raises
    Divergence, before this state is saved, when it stayed too far from the best."""
    rule, cfg = run.ckpts.best, run.watch_cfg
    value = scalars(metrics).get(rule.key) if rule is not None else None
    if value is None:
        return
    best = run.watch.best
    if watchdog.after_evaluation(run.watch, value, rule.higher_is_better, cfg):
        raise Divergence("metric", f"{rule.key}={value:.4g}, worse than the best {best:.4g} "
                         f"by more than train.watchdog.metric_factor={cfg.metric_factor:g} "
                         f"for {cfg.metric_patience} evaluations")


def save_checkpoint(run: Run, metrics: dict[str, MetricResult] | None = None) -> None:
    """Hands the state, data position and counters to Orbax (written in the background);
    the metrics evaluated on this state go into its record with how they were made."""
    meta = {"tick": run.tick, "kimg": run.nimg / 1000, "step": run.step,
            "c_dim": run.c_dim, "class_names": list(run.class_names),
            "next_eval": run.schedule.next_eval,
            "watchdog": run.watch.to_meta()}
    if metrics:
        meta["metrics"] = {name: dict(results=r.results, provenance=r.provenance)
                           for name, r in metrics.items()}
    run.ckpts.save(run.nimg, _finite_host_state(run),
                   {"stage": run.stage.index, "position": run.pipe.position()}, meta,
                   None if metrics is None else scalars(metrics))


def evaluate(run: Run) -> dict[str, MetricResult]:
    """Metrics of G EMA now: logged, to TensorBoard, and to metric-*.jsonl."""
    results = run.evaluator(_G_ema(run, _finite_host_state(run)))
    for result in results.values():
        report_metric(result, run.workdir, f"checkpoints/{run.nimg}", log=run.log)
    if run.main_process:
        run.writer.scalars(run.nimg / 1000,
                           {f"Metrics/{k}": v for k, v in scalars(results).items()},
                           jsonl=False)  # stats.jsonl: one record per tick
    return results


def _finite_host_state(run: Run):
    """The state on the host, for a checkpoint or an evaluation: only a healthy one (the
    newest losses within the watchdog's rules, every value finite), so that a rollback
    never returns to a state that had already broken between two ticks."""
    problem = watchdog.tick_problem(run.stat_values(), run.watch_cfg)
    if problem is not None:
        raise Divergence(*problem)
    host = run.backend.host_state(run.state)
    check_state(host)
    return host


def _G_ema(run: Run, host_state):
    return run.trainer.export(host_state)["G_ema"]
