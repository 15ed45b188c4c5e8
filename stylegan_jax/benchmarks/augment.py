"""Throughput of the ADA pipe under jit: forward, and forward + backward to the images.

Prints one line per measurement (compile seconds, img/s, ms per batch) and the peak
device memory where the backend reports it. The default is the official `bgc` pipe at
256x256, batch 32, p = 0.6; p = 0 measures the skip path (no image transformed).
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp

from stylegan_jax.augment.config import PIPES
from stylegan_jax.augment.pipe import augment
from stylegan_jax.benchmarks.timing import peak_memory_mib, time_compiled


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipe", default="bgc", choices=sorted(PIPES))
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--p", type=float, nargs="+", default=[0.6], help="strengths to measure")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    n, r = args.batch, args.resolution
    key = jax.random.key(0)
    images = jax.random.uniform(key, (n, r, r, args.channels), jnp.float32, -1, 1)
    cotangent = jax.random.normal(jax.random.fold_in(key, 1), images.shape)

    def forward(x, p, k):
        return augment(x, p, args.pipe, k)

    def forward_backward(x, p, k, ct):
        out, vjp = jax.vjp(lambda x: augment(x, p, args.pipe, k), x)
        return out, vjp(ct)[0]

    results = {"device": str(jax.devices()[0].device_kind), "pipe": args.pipe,
               "resolution": r, "batch": n, "runs": []}
    for p in args.p:
        p_arr = jnp.float32(p)
        for name, fn, fn_args in (("forward", forward, (images, p_arr, key)),
                                  ("forward+backward", forward_backward,
                                   (images, p_arr, key, cotangent))):
            compile_s, step_s = time_compiled(jax.jit(fn), fn_args, args.iters)
            results["runs"].append({"p": p, "pass": name, "compile_s": round(compile_s, 3),
                                    "img_per_s": round(n / step_s, 1),
                                    "ms_per_batch": round(step_s * 1e3, 3)})
            print(f"augment {args.pipe} {name:16s} res={r} batch={n} p={p:g}  compile "
                  f"{compile_s:6.2f} s  {n / step_s:10.1f} img/s  {step_s * 1e3:9.2f} ms/batch")
    peak = peak_memory_mib()
    results["peak_mib"] = None if peak is None else round(peak)
    print(f"device {results['device']}   peak memory "
          f"{'n/a' if peak is None else f'{peak:.0f} MiB'}")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
