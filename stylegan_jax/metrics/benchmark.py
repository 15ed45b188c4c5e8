"""Throughput of the metrics' feature networks, and the fid50k_full time it implies.

  stylegan-jax bench-metrics --batch 64 --resolution 256 --dataset-size 70000

Constant weights (speed does not depend on them, so no weight file is needed). Each
network runs data-parallel over the local devices on uint8 images of --resolution:
Inception (resize to 299, pool3 + logits), VGG16 (resize to 224, fc2) and LPIPS
(image pairs at --resolution). fid50k_full runs Inception on 50k generated images
and, once per dataset (then cached), on every real image; the estimate printed is
that feature time alone, without the generator (`stylegan-jax bench` measures it).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.metrics import inception, lpips, vgg
from stylegan_jax.metrics.parallel import LocalDevices


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nets", default="inception,vgg16,lpips",
                   help="comma-separated subset of inception, vgg16, lpips")
    p.add_argument("--batch", type=int, default=64, help="images (LPIPS: pairs) per step")
    p.add_argument("--resolution", type=int, default=256, help="input image size")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--dataset-size", type=int, default=70000,
                   help="real images of the dataset, for the fid50k_full estimate (FFHQ: 70000)")
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")


def _constant_init(module, *inputs):
    """Variables of the right shapes filled with a constant: speed does not depend on the
    values, and this skips compiling the (large) random initialisers."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)
    return jax.tree_util.tree_map(lambda s: jnp.full(s.shape, 0.01, s.dtype), shapes)


def _setup(name: str, res: int):
    """(function, variables, input kind: uint8 images or float pairs)."""
    if name == "inception":
        net = inception.FIDInceptionV3()
        u8 = jax.ShapeDtypeStruct((1, res, res, 3), jnp.uint8)
        return net.apply, _constant_init(net, u8), "images"
    if name == "vgg16":
        x = jax.ShapeDtypeStruct((1, vgg.INPUT_SIZE, vgg.INPUT_SIZE, 3), jnp.float32)
        return vgg.vgg16_features, _constant_init(vgg.VGG16(), x), "images"
    x = jax.ShapeDtypeStruct((1, res, res, 3), jnp.float32)
    return lpips.LPIPS().apply, _constant_init(lpips.LPIPS(), x, x), "pairs"


def bench(name: str, batch: int, res: int, iters: int, devices: LocalDevices) -> dict:
    fn, variables, kind = _setup(name, res)
    variables = devices.replicate(variables)
    batch = devices.round_batch(batch)
    rng = np.random.default_rng(0)
    if kind == "images":
        args, _ = devices.shard(rng.integers(0, 256, (batch, res, res, 3), dtype=np.uint8))
    else:
        pair = rng.uniform(-1, 1, (2, batch, res, res, 3)).astype(np.float32)
        args, _ = devices.shard(pair[0], pair[1])
    step = jax.jit(fn)
    t0 = time.perf_counter()
    compiled = step.lower(variables, *args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(variables, *args))
    t0 = time.perf_counter()
    for _ in range(iters):
        out = compiled(variables, *args)
    jax.block_until_ready(out)
    step_s = (time.perf_counter() - t0) / iters
    return {"compile_s": round(compile_s, 2), "batch": batch,
            "per_s": round(batch / step_s, 2), "ms_per_batch": round(step_s * 1e3, 2)}


def run(args: argparse.Namespace) -> int:
    devices = LocalDevices()
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    unknown = set(nets) - {"inception", "vgg16", "lpips"}
    if unknown:
        raise ValueError(f"--nets: unknown {sorted(unknown)}; expected inception, vgg16, lpips")
    results = {"device": jax.devices()[0].device_kind, "num_devices": devices.count,
               "resolution": args.resolution}
    for name in nets:
        r = bench(name, args.batch, args.resolution, args.iters, devices)
        results[name] = r
        unit = "pairs/s" if name == "lpips" else "img/s"
        print(f"{name:9s} res={args.resolution} batch={r['batch']} compile {r['compile_s']:7.2f} s"
              f"   {r['per_s']:9.1f} {unit}   {r['ms_per_batch']:9.1f} ms/batch")
    if "inception" in results:
        rate = results["inception"]["per_s"]
        gen_s, real_s = 50000 / rate, args.dataset_size / rate
        results["fid50k_full_feature_s"] = {"generated": round(gen_s, 1),
                                            "real_once": round(real_s, 1)}
        print(f"fid50k_full Inception time: {gen_s / 60:.1f} min for 50k generated images "
              f"+ {real_s / 60:.1f} min once for {args.dataset_size} real images (then cached); "
              "generator time not included")
    print(f"device {results['device']} x{devices.count}")
    if args.json:
        print(json.dumps(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
