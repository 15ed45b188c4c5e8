"""Training-step benchmark on synthetic data (no tensorflow): where a config stands on a device.

Runs the real compiled iterations of a config in the official phase order (lazy
regularisation included) on random uint8 images and prints the settings that trade speed
for memory (micro-batches, rematerialisation, bfloat16, augmentation), img/s, s/kimg, FLOPs
per image (XLA's cost analysis, averaged over the lazy-regularisation period), achieved
TFLOP/s and model FLOP utilisation against the device's peak, host time per call, compile
time (cold and from the persistent cache), XLA's memory estimate per program and the
device's peak memory:
`stylegan-jax bench --config paper256 --config.train.batch_size=32 --iters 32`.

`--compare-aug` prices the ADA pipe: the same config without augmentation and with
`train.aug=ada` at p = `--aug-p` (the pipe's work depends on p: at 0 it skips the geometric
resampling), timed in alternating rounds in one process so both see the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import statistics
import time
from typing import Any

import jax
import numpy as np

from stylegan_jax.benchmarks import device_peaks
from stylegan_jax.train import config as config_lib
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.programs import StagePrograms, compile_stage, forget_compiled
from stylegan_jax.train.stylegan2.trainer import StyleGAN2Trainer


def phase_name(key: tuple) -> str:
    """A program key (trainer.program_key: Greg, Dreg[, D input blur]) in words."""
    names = ("Greg", "Dreg", "blur")[:len(key)]
    return "main" + "".join(f"+{name}" for name, on in zip(names, key, strict=True) if on)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="quickstart", help="a name in configs/ or a path")
    p.add_argument("--iters", type=int, default=0,
                   help="timed iterations (default: one full lazy-regularisation period)")
    p.add_argument("--c-dim", type=int, default=0, help="labels of the synthetic data")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's peak TFLOP/s for MFU (default: from a table of known "
                   "accelerators; none for CPUs)")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="write a JAX profiler trace of the timed iterations to DIR")
    p.add_argument("--compare-aug", action="store_true",
                   help="time the config with train.aug=noaug and with train.aug=ada in "
                   "alternating rounds and print both and their ratio")
    p.add_argument("--aug-p", type=float, default=0.6,
                   help="--compare-aug: ADA's strength p (its start; ADA moves it by at most "
                   "batch * ada_interval / (ada_kimg * 1000) per adjustment)")
    p.add_argument("--rounds", type=int, default=3,
                   help="--compare-aug: alternating rounds of --iters each (median reported)")
    p.add_argument("--nimg", type=int, default=0,
                   help="time the programs of the training stage at this image count (e.g. "
                   "StyleGAN3-r after its D input blur has faded; default: the first)")
    p.add_argument("--json", action="store_true", help="also print one JSON line")


def _flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except NotImplementedError:
        return None
    if isinstance(cost, (list, tuple)):  # older jax: one dict per device program
        cost = cost[0] if cost else None
    return None if not cost or "flops" not in cost else float(cost["flops"])


def _memory_bytes(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
    except NotImplementedError:
        return None
    if m is None:
        return None
    return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
               - m.alias_size_in_bytes)


def settings(config) -> dict[str, Any]:
    """The options a run trades speed for memory (or quality) with, as the config sets them."""
    t, m = config.train, config.model
    aug = t.get("aug", "noaug")
    return {"batch_per_device": t.get("batch_per_device", 0),
            "remat_resolution": m.get("remat_resolution", 0),
            "num_bf16_res": m.get("num_bf16_res", 0), "aug": aug,
            "augpipe": None if aug == "noaug" else t.augpipe,
            "aug_p": None if aug == "noaug" else float(t.get("aug_p", 0.0))}


@dataclasses.dataclass
class Run:
    """One config's compiled iterations, training state and synthetic batch, ready to time."""

    config: Any
    trainer: StyleGAN2Trainer
    backend: Backend
    programs: StagePrograms
    cached: StagePrograms | None  # the same programs loaded again from the compilation cache
    state: Any
    args: tuple  # the iteration's arguments after the state: images, labels, label table
    nimg: int = 0  # the image count whose training stage is timed
    stats: dict = dataclasses.field(default_factory=dict)

    def time(self, iters: int) -> tuple[float, float]:
        """(seconds per iteration, host seconds per call) over `iters` iterations."""
        stage, host_s = self.trainer.stage_at(self.nimg), 0.0
        t0 = time.perf_counter()
        for step in range(iters):
            t_call = time.perf_counter()
            program = self.programs[self.trainer.program_key(stage, step)]
            self.state, self.stats = program(self.state, *self.args)
            host_s += time.perf_counter() - t_call  # dispatch: the call returns before the work
        jax.block_until_ready(self.state)
        return (time.perf_counter() - t0) / iters, host_s / iters


def prepare(config, c_dim: int, reload: bool = True, nimg: int = 0) -> Run:
    """Validates, builds and compiles `config` on random uint8 images; runs each program once
    (a first run allocates). reload: if compiled cold, time loading them from the cache too."""
    backend = Backend(config.train.backend)
    config_lib.validate(config, backend.num_devices)
    trainer = StyleGAN2Trainer(config, c_dim)
    stage = trainer.stage_at(nimg)
    res, ch, b = config.data.resolution, config.data.channels, trainer.cfg.batch_size
    # One compiled program (cached across runs), as the training loop does, not hundreds of
    # eagerly compiled ops.
    state = backend.put_state(jax.jit(trainer.init_state, static_argnums=0)(0))
    labels = backend.put_replicated(np.eye(max(c_dim, 1), dtype=np.float32)[:, :c_dim])
    local = b // jax.process_count()
    rng = np.random.default_rng(0)
    batch = backend.put_batch((rng.integers(0, 256, (local, res, res, ch), dtype=np.uint8),
                               np.zeros((local, c_dim), np.float32)))
    args = (*batch, labels)
    programs = compile_stage(trainer.programs(backend, stage), (state, *args), 0, 3600)
    cached = None
    if reload and programs.cache_hits == 0 and programs.cache_misses > 0:
        # Compiled cold with the cache on: load them again, as a restarted run would.
        forget_compiled()
        cached = compile_stage(trainer.programs(backend, stage), (state, *args), 0, 3600)
    for program in programs.compiled.values():
        state, _ = program(state, *args)
    jax.block_until_ready(state)
    return Run(config, trainer, backend, programs, cached, state, args, nimg=nimg)


def summarise(run: Run, name: str, sec: float, host_s: float, peak_tflops) -> dict:
    """The printed and JSON figures of one config timed at `sec` per iteration."""
    cfg, backend, programs = run.trainer.cfg, run.backend, run.programs
    b, res = cfg.batch_size, run.config.data.resolution
    period = cfg.period
    # FLOPs of one iteration, averaged over the lazy-regularisation period (all devices).
    flops = {k: _flops(c) for k, c in programs.compiled.items()}
    per_iter = None
    if all(f is not None for f in flops.values()):
        stage = run.trainer.stage_at(run.nimg)
        keys = [run.trainer.program_key(stage, s) for s in range(period)]
        per_iter = sum(flops[k] for k in keys) / period * backend.num_devices
    device = jax.devices()[0]
    peak = peak_tflops or device_peaks.peak_tflops(device.device_kind)
    achieved = None if per_iter is None else per_iter / sec / 1e12
    mem = (device.memory_stats() or {}).get("peak_bytes_in_use")
    p_end = run.stats.get("augment")
    return {
        "config": name, "device": device.device_kind, "devices": backend.num_devices,
        "backend": backend.kind, "resolution": res, "batch": b, **settings(run.config),
        "aug_p_end": None if p_end is None else round(float(np.mean(p_end)), 4),
        "img_per_s": round(b / sec, 2), "sec_per_kimg": round(1000 * sec / b, 3),
        "sec_per_iter": round(sec, 4), "host_ms_per_call": round(1000 * host_s, 3),
        "gflop_per_img": None if per_iter is None else float(f"{per_iter / b / 1e9:.4g}"),
        "tflops": None if achieved is None else float(f"{achieved:.4g}"),
        "peak_tflops": peak,
        "mfu": (None if achieved is None or not peak
                else round(achieved / (peak * backend.num_devices), 4)),
        "compile_s": {phase_name(k): round(v, 2) for k, v in programs.compile_s_by_key.items()},
        "compile_total_s": round(programs.compile_s, 2),
        "compile_cache_hits": programs.cache_hits,
        "compile_cached_s": None if run.cached is None else round(run.cached.compile_s, 2),
        "program_gib": {phase_name(k): None if (m := _memory_bytes(c)) is None
                        else round(m / 2**30, 3) for k, c in programs.compiled.items()},
        "peak_gib": None if mem is None else round(mem / 2**30, 3),
    }


def run(args: argparse.Namespace) -> int:
    overrides = list(getattr(args, "overrides", []))
    if args.iters < 0 or args.rounds < 1:
        raise ValueError(f"--iters must be >= 0 and --rounds >= 1, got {args.iters}, "
                         f"{args.rounds}")
    if not args.compare_aug:
        config = config_lib.load_config(args.config, overrides)
        bench = prepare(config, args.c_dim, nimg=args.nimg)
        iters = args.iters or _period(bench)
        profile = jax.profiler.trace(args.profile) if args.profile else contextlib.nullcontext()
        with profile:
            sec, host_s = bench.time(iters)
        result = summarise(bench, args.config, sec, host_s, args.peak_tflops)
        _print(result, bench.programs, iters)
        if args.json:
            print(json.dumps(result))
        return 0

    if not 0 < args.aug_p < math.inf:
        raise ValueError(f"--aug-p must be a finite strength > 0, got {args.aug_p}")
    variants = {"noaug": ["train.aug=noaug"],
                "ada": ["train.aug=ada", f"train.aug_p={args.aug_p}"]}
    benches = {name: prepare(config_lib.load_config(args.config, overrides + extra), args.c_dim,
                             reload=False, nimg=args.nimg) for name, extra in variants.items()}
    iters = args.iters or _period(benches["noaug"])
    times: dict[str, list] = {name: [] for name in benches}
    for _ in range(args.rounds):  # alternating, so a busy spell hits both
        for name, bench in benches.items():
            times[name].append(bench.time(iters))
    results = {}
    for name, bench in benches.items():
        sec = statistics.median(s for s, _ in times[name])
        host_s = statistics.median(h for _, h in times[name])
        results[name] = summarise(bench, args.config, sec, host_s, args.peak_tflops)
        _print(results[name], bench.programs, iters, args.rounds)
    if results["ada"]["peak_gib"] is not None:
        print("  (peak memory: the process's, both configs held at once; XLA's memory "
              "estimates are per program)")
    ratio = results["ada"]["img_per_s"] / results["noaug"]["img_per_s"]
    print(f"augmentation cost: ada (p {args.aug_p:g}) {results['ada']['img_per_s']:.1f} img/s, "
          f"noaug {results['noaug']['img_per_s']:.1f} img/s: ada/noaug {ratio:.3f} "
          f"(median of {args.rounds} alternating rounds of {iters} iterations)")
    if args.json:
        print(json.dumps({**results, "ada_over_noaug": round(ratio, 4)}))
    return 0


def _period(bench: Run) -> int:
    return bench.trainer.cfg.period


def _gib(x) -> str:
    return "n/a" if x is None else f"{x:.3f} GiB"


def _print(r: dict, programs, iters: int, rounds: int = 1) -> None:
    print(f"{r['config']}: {r['resolution']}x{r['resolution']}, batch {r['batch']} on "
          f"{r['devices']} x {r['device']} ({r['backend']})")
    micro = r["batch_per_device"]
    aug = r["aug"] if r["aug_p"] is None else f"{r['aug']} ({r['augpipe']}, p {r['aug_p']:g}" + (
        ")" if r["aug_p_end"] is None else f", {r['aug_p_end']:g} at the end)")
    print(f"  settings: train.batch_per_device={micro}"
          f"{' (no accumulation)' if not micro else ''}   "
          f"model.remat_resolution={r['remat_resolution']}"
          f"{' (off)' if not r['remat_resolution'] else ''}   "
          f"model.num_bf16_res={r['num_bf16_res']}   train.aug={aug}")
    for name, secs in r["compile_s"].items():
        print(f"  compile {name:<15s} {secs:8.2f} s   XLA memory estimate "
              f"{_gib(r['program_gib'][name])}")
    again = r["compile_cached_s"]
    print(f"  {programs.summary()}" + (
        "" if again is None else f"; again from the compilation cache: {again:.1f} s"))
    over = f"{iters} iterations" if rounds == 1 else f"median of {rounds} x {iters} iterations"
    print(f"  {r['img_per_s']:.1f} img/s   {r['sec_per_kimg']:.2f} s/kimg   "
          f"host {r['host_ms_per_call']:.2f} ms/call   peak memory {_gib(r['peak_gib'])}   "
          f"(over {over}, lazy regularisation included)")
    if r["gflop_per_img"] is not None:
        mfu = ("n/a (no known peak: --peak-tflops)" if r["mfu"] is None
               else f"{100 * r['mfu']:.1f} %")
        print(f"  {r['gflop_per_img']:.4g} GFLOP/img (XLA cost analysis)   "
              f"{r['tflops']:.4g} TFLOP/s   MFU {mfu}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_arguments(p)
    args, extra = p.parse_known_args(argv)
    args.overrides = extra
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
