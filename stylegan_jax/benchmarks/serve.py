"""Load benchmark of `stylegan-jax serve`: N concurrent HTTP clients on loopback.

First times the generator itself (the server's largest bucket, the same compiled
program), then starts the server in a child process and keeps `--concurrency` clients
asking for distinct seeded images with random ψ until `--requests` are answered or
`--duration` seconds pass. Prints requests/s, p50/p99 latency, errors, and the ratio of
served images/s to the generator's own batched images/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from urllib.parse import urlsplit

import httpx
import jax
import numpy as np

from stylegan_jax.generate import named_network_from_args
from stylegan_jax.serve import launch
from stylegan_jax.serve.engine import Engine


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--network", help="as for serve (default: the shipped face network)")
    src.add_argument("--workdir", help="as for serve")
    src.add_argument("--random-init", action="store_true", help="as for serve")
    p.add_argument("--which", default=None)
    p.add_argument("--resolution", type=int, default=32, help="with --random-init")
    p.add_argument("--noise-mode", default="const", choices=("const", "random", "none"))
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--batch-window-ms", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=64, help="clients at once")
    p.add_argument("--requests", type=int, default=2000, help="stop after this many answers")
    p.add_argument("--duration", type=float, default=30.0, help="... or after this many seconds")
    p.add_argument("--format", default="png", choices=("png", "jpeg"))
    p.add_argument("--url", default=None, help="load a server already running on this "
                   "machine (loopback only) instead of starting one; name the same network "
                   "and --max-batch for the generator figure")
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def check_loopback(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        raise ValueError(f"--url: got {url!r}, expected http://127.0.0.1:PORT/ (the benchmark "
                         "loads this machine's loopback only)")
    return url if url.endswith("/") else url + "/"


def generator_images_per_s(engine: Engine, min_seconds: float = 2.0) -> float:
    """The bare compiled generator at the largest bucket (no HTTP, no encoding)."""
    b = engine.max_batch
    call = engine.raw_call(b)
    jax.block_until_ready(call())
    n, t0 = 0, time.perf_counter()
    while True:
        out = call()
        n += 1
        if n % 4 == 0:
            jax.block_until_ready(out)
            if time.perf_counter() - t0 >= min_seconds:
                break
    return n * b / (time.perf_counter() - t0)


async def load(url: str, concurrency: int, requests: int, duration: float, fmt: str):
    """(latencies of the 200s in seconds, error descriptions, wall seconds)."""
    latencies: list[float] = []
    errors: list[str] = []
    issued = 0
    rng = random.Random(0)
    t_end = time.perf_counter() + duration

    async def client():
        # One connection per client, as separate users have: a shared httpx pool of 64
        # connections costs the client 3x the CPU per request (measured on /healthz).
        nonlocal issued
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as c:
            while issued < requests and time.perf_counter() < t_end:
                issued += 1
                query = {"seed": issued, "psi": round(rng.uniform(0.5, 1.0), 2), "format": fmt}
                t0 = time.perf_counter()
                try:
                    r = await c.get("/api/image", params=query)
                    ok = r.status_code == 200
                    if not ok:
                        errors.append(f"HTTP {r.status_code}")
                except httpx.HTTPError as e:
                    ok = False
                    errors.append(type(e).__name__)
                if ok:
                    latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - t0


def serve_source(args: argparse.Namespace) -> list[str]:
    """The serve flags that name the same network as ours."""
    if args.random_init:
        out = ["--random-init", "--resolution", str(args.resolution)]
    elif args.network or args.workdir:
        out = ["--network" if args.network else "--workdir", str(args.network or args.workdir)]
    else:
        out = []
    return out + (["--which", args.which] if args.which else [])


def measure(url: str, args: argparse.Namespace):
    # A first round lets every connection open before the clock starts.
    asyncio.run(load(url, args.concurrency, args.concurrency, 60, args.format))
    return asyncio.run(load(url, args.concurrency, args.requests, args.duration, args.format))


def run(args: argparse.Namespace) -> int:
    if args.concurrency < 1 or args.requests < 1 or args.duration <= 0:
        raise ValueError("--concurrency, --requests and --duration must be positive")
    url = None if args.url is None else check_loopback(args.url)
    net, name = named_network_from_args(args)
    engine = Engine(net, args.noise_mode, args.max_batch)
    warm = engine.warm_up()
    gen_ips = generator_images_per_s(engine)
    del engine
    print(f"generator {name}: {gen_ips:.1f} img/s at batch {args.max_batch} "
          f"(warm-up {warm:.1f} s)", flush=True)

    if url is not None:
        latencies, errors, wall = measure(url, args)
    else:
        server = launch.start([*serve_source(args), "--noise-mode", args.noise_mode,
                               "--max-batch", str(args.max_batch), "--batch-window-ms",
                               str(args.batch_window_ms), "--queue-limit",
                               str(max(256, 2 * args.concurrency))])
        try:
            latencies, errors, wall = measure(server.url, args)
        finally:
            server.stop()
    served = len(latencies) / wall
    lat_ms = np.percentile(np.asarray(latencies) * 1e3, [50, 99]) if latencies else [np.nan] * 2
    res = {"network": name, "device": str(jax.devices()[0].device_kind),
           "concurrency": args.concurrency, "max_batch": args.max_batch,
           "answered": len(latencies), "errors": len(errors), "seconds": round(wall, 2),
           "requests_per_s": round((len(latencies) + len(errors)) / wall, 1),
           "images_per_s": round(served, 1), "p50_ms": round(float(lat_ms[0]), 1),
           "p99_ms": round(float(lat_ms[1]), 1), "generator_images_per_s": round(gen_ips, 1),
           "ratio": round(served / gen_ips, 3)}
    print(f"serve {name}: {res['concurrency']} clients, {res['answered']} images in "
          f"{wall:.1f} s, {res['requests_per_s']} req/s, p50 {res['p50_ms']} ms, "
          f"p99 {res['p99_ms']} ms, errors {res['errors']}"
          + (f" ({sorted(set(errors))})" if errors else ""))
    print(f"served {served:.1f} img/s = {res['ratio']:.2f} x the generator's "
          f"{gen_ips:.1f} img/s")
    if args.json:
        print(json.dumps(res))
    return 0
