"""Training-step benchmark on synthetic data (no tensorflow): compile time, img/s, s/kimg, memory.

Runs the real compiled iterations of a config in the official phase order (lazy
regularisation included) on random uint8 images:
`stylegan-jax bench --config paper256 --config.train.batch_size=32 --iters 32`.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.train import config as config_lib
from stylegan_jax.train import step as step_lib
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.trainers import compiled_iteration


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="quickstart", help="a name in configs/ or a path")
    p.add_argument("--iters", type=int, default=0,
                   help="timed iterations (default: one full lazy-regularisation period)")
    p.add_argument("--c-dim", type=int, default=0, help="labels of the synthetic data")
    p.add_argument("--json", action="store_true", help="also print one JSON line")


def run(args: argparse.Namespace) -> int:
    config = config_lib.load_config(args.config, getattr(args, "overrides", []))
    backend = Backend(config.train.backend)
    config_lib.validate(config, backend.num_devices)
    cfg = config_lib.step_config(config)
    res, ch, b = config.data.resolution, config.data.channels, cfg.batch_size
    nets = step_lib.build_networks(config.model, res, ch, args.c_dim)
    state = backend.put_state(step_lib.init_state(nets, cfg, seed=0))
    labels = backend.put_replicated(jnp.eye(max(args.c_dim, 1))[:, : args.c_dim])
    local = b // jax.process_count()
    rng = np.random.default_rng(0)
    batch = backend.put_batch((rng.integers(0, 256, (local, res, res, ch), dtype=np.uint8),
                               np.zeros((local, args.c_dim), np.float32)))
    period = math.lcm(cfg.g_reg_interval, cfg.d_reg_interval)
    iters = args.iters or period
    compile_s = {}
    for step in range(period):  # compile (and run once) every program the period needs
        flags = cfg.phases(step)
        if flags not in compile_s:
            t0 = time.perf_counter()
            state, stats = compiled_iteration(backend, nets, cfg, flags)(state, *batch, labels)
            jax.block_until_ready(state)
            compile_s[flags] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for step in range(iters):
        state, stats = compiled_iteration(backend, nets, cfg, cfg.phases(step))(
            state, *batch, labels)
    jax.block_until_ready(state)
    sec = (time.perf_counter() - t0) / iters
    mem = (jax.local_devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    names = {(False, False): "main", (True, False): "main+Greg", (False, True): "main+Dreg",
             (True, True): "main+Greg+Dreg"}
    result = {
        "config": args.config, "device": jax.devices()[0].device_kind,
        "devices": backend.num_devices, "backend": backend.kind, "resolution": res,
        "batch": b, "compile_s": {names[k]: round(v, 2) for k, v in compile_s.items()},
        "img_per_s": round(b / sec, 2), "sec_per_kimg": round(1000 * sec / b, 3),
        "sec_per_iter": round(sec, 4), "peak_gib": None if mem is None else round(mem / 2**30, 3),
    }
    print(f"{result['config']}: {res}x{res}x{ch}, batch {b} on {backend.num_devices} x "
          f"{result['device']} ({backend.kind})")
    for name, secs in result["compile_s"].items():
        print(f"  compile + first run {name:<15s} {secs:8.2f} s")
    print(f"  {result['img_per_s']:.1f} img/s   {result['sec_per_kimg']:.2f} s/kimg   "
          f"peak memory {'n/a' if mem is None else f'{mem / 2**30:.2f} GiB'}   "
          f"(over {iters} iterations, lazy regularisation included)")
    if args.json:
        print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_arguments(p)
    args, extra = p.parse_known_args(argv)
    args.overrides = extra
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
