"""Training-step benchmark on synthetic data (no tensorflow): where a config stands on a device.

Runs the real compiled iterations of a config in the official phase order (lazy
regularisation included) on random uint8 images and prints img/s, s/kimg, FLOPs per
image (XLA's cost analysis, averaged over the lazy-regularisation period), achieved
TFLOP/s and model FLOP utilisation against the device's peak, host time per call,
compile time (cold and from the persistent cache), XLA's memory estimate per program
and the device's peak memory:
`stylegan-jax bench --config paper256 --config.train.batch_size=32 --iters 32`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time

import jax
import numpy as np

from stylegan_jax.benchmarks import device_peaks
from stylegan_jax.train import config as config_lib
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.programs import compile_stage, forget_compiled
from stylegan_jax.train.trainers import StyleGAN2Trainer

PHASE_NAMES = {(False, False): "main", (True, False): "main+Greg", (False, True): "main+Dreg",
               (True, True): "main+Greg+Dreg"}


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


def run(args: argparse.Namespace) -> int:
    config = config_lib.load_config(args.config, getattr(args, "overrides", []))
    backend = Backend(config.train.backend)
    config_lib.validate(config, backend.num_devices)
    trainer = StyleGAN2Trainer(config, args.c_dim)
    cfg, stage = trainer.cfg, trainer.stage_at(0)
    res, ch, b = config.data.resolution, config.data.channels, cfg.batch_size
    state = backend.put_state(trainer.init_state(seed=0))
    labels = backend.put_replicated(np.eye(max(args.c_dim, 1), dtype=np.float32)[:, : args.c_dim])
    local = b // jax.process_count()
    rng = np.random.default_rng(0)
    batch = backend.put_batch((rng.integers(0, 256, (local, res, res, ch), dtype=np.uint8),
                               np.zeros((local, args.c_dim), np.float32)))
    period = math.lcm(cfg.g_reg_interval, cfg.d_reg_interval)
    iters = args.iters or period
    args_ = (state, *batch, labels)
    programs = compile_stage(trainer.programs(backend, stage), args_, 0, timeout_s=3600)
    cached = None
    if programs.cache_hits == 0 and programs.cache_misses > 0:
        # Compiled cold with the cache on: load them again, as a restarted run would.
        forget_compiled()
        cached = compile_stage(trainer.programs(backend, stage), args_, 0, timeout_s=3600)
    for program in programs.compiled.values():  # warm-up: a first run allocates
        state, stats = program(state, *batch, labels)
    jax.block_until_ready(state)

    profile = (jax.profiler.trace(args.profile) if args.profile else contextlib.nullcontext())
    host_s = 0.0
    with profile:
        t0 = time.perf_counter()
        for step in range(iters):
            t_call = time.perf_counter()
            state, stats = programs[trainer.program_key(stage, step)](state, *batch, labels)
            host_s += time.perf_counter() - t_call  # dispatch: the call returns before the work
        jax.block_until_ready(state)
        sec = (time.perf_counter() - t0) / iters

    # FLOPs of one iteration, averaged over the lazy-regularisation period (all devices).
    flops = {k: _flops(c) for k, c in programs.compiled.items()}
    per_iter = None
    if all(f is not None for f in flops.values()):
        keys = [trainer.program_key(stage, s) for s in range(period)]
        per_iter = sum(flops[k] for k in keys) / period * backend.num_devices
    device = jax.devices()[0]
    peak = args.peak_tflops or device_peaks.peak_tflops(device.device_kind)
    achieved = None if per_iter is None else per_iter / sec / 1e12
    mem = (device.memory_stats() or {}).get("peak_bytes_in_use")
    result = {
        "config": args.config, "device": device.device_kind, "devices": backend.num_devices,
        "backend": backend.kind, "resolution": res, "batch": b,
        "img_per_s": round(b / sec, 2), "sec_per_kimg": round(1000 * sec / b, 3),
        "sec_per_iter": round(sec, 4), "host_ms_per_call": round(1000 * host_s / iters, 3),
        "gflop_per_img": None if per_iter is None else float(f"{per_iter / b / 1e9:.4g}"),
        "tflops": None if achieved is None else float(f"{achieved:.4g}"),
        "peak_tflops": peak,
        "mfu": (None if achieved is None or not peak
                else round(achieved / (peak * backend.num_devices), 4)),
        "compile_s": {PHASE_NAMES[k]: round(v, 2) for k, v in programs.compile_s_by_key.items()},
        "compile_total_s": round(programs.compile_s, 2),
        "compile_cache_hits": programs.cache_hits,
        "compile_cached_s": None if cached is None else round(cached.compile_s, 2),
        "program_gib": {PHASE_NAMES[k]: None if (m := _memory_bytes(c)) is None
                        else round(m / 2**30, 3) for k, c in programs.compiled.items()},
        "peak_gib": None if mem is None else round(mem / 2**30, 3),
    }
    _print(result, programs, iters)
    if args.json:
        print(json.dumps(result))
    return 0


def _gib(x) -> str:
    return "n/a" if x is None else f"{x:.3f} GiB"


def _print(r: dict, programs, iters: int) -> None:
    print(f"{r['config']}: {r['resolution']}x{r['resolution']}, batch {r['batch']} on "
          f"{r['devices']} x {r['device']} ({r['backend']})")
    for name, secs in r["compile_s"].items():
        print(f"  compile {name:<15s} {secs:8.2f} s   XLA memory estimate "
              f"{_gib(r['program_gib'][name])}")
    again = r["compile_cached_s"]
    print(f"  {programs.summary()}" + (
        "" if again is None else f"; again from the compilation cache: {again:.1f} s"))
    print(f"  {r['img_per_s']:.1f} img/s   {r['sec_per_kimg']:.2f} s/kimg   "
          f"host {r['host_ms_per_call']:.2f} ms/call   peak memory {_gib(r['peak_gib'])}   "
          f"(over {iters} iterations, lazy regularisation included)")
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
