"""Generator / discriminator forward throughput and compile time (no tensorflow needed).

Prints one line per network: compile seconds, img/s over timed iterations, and peak
device memory where the backend reports it. Run it on the CPU or a lent GPU:
`stylegan-jax bench --resolution 256 --batch 32 --fmaps 0.5`.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp

from stylegan_jax.benchmarks.timing import peak_memory_mib, time_compiled
from stylegan_jax.models import stylegan2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=16, help="images per forward call")
    p.add_argument("--fmaps", type=float, default=0.5,
                   help="channel_base = fmaps * 32768 (official: 0.5 for paper256, 1 for config-f)")
    p.add_argument("--channel-max", type=int, default=512)
    p.add_argument("--w-dim", type=int, default=512)
    p.add_argument("--mapping-layers", type=int, default=8)
    p.add_argument("--g-arch", default="skip", choices=stylegan2.ARCHITECTURES)
    p.add_argument("--d-arch", default="resnet", choices=stylegan2.ARCHITECTURES)
    p.add_argument("--mbstd-group", type=int, default=4)
    p.add_argument("--bf16-res", type=int, default=0,
                   help="compute the N highest resolutions in bfloat16 (official: 4 fp16)")
    p.add_argument("--fused-modconv", action="store_true",
                   help="per-sample grouped modulated conv instead of activation scaling")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")


def run(args: argparse.Namespace) -> int:
    common = dict(img_resolution=args.resolution, img_channels=3,
                  channel_base=int(args.fmaps * 32768), channel_max=args.channel_max,
                  conv_clamp=256.0, num_bf16_res=args.bf16_res)
    G = stylegan2.Generator(z_dim=args.w_dim, c_dim=0, w_dim=args.w_dim,
                            mapping_layers=args.mapping_layers, architecture=args.g_arch,
                            fused_modconv=args.fused_modconv, **common)
    D = stylegan2.Discriminator(c_dim=0, architecture=args.d_arch,
                                mbstd_group_size=args.mbstd_group, **common)
    key = jax.random.PRNGKey(0)
    z = jax.random.normal(key, (args.batch, args.w_dim))
    c = jnp.zeros((args.batch, 0))
    img = jnp.zeros((args.batch, args.resolution, args.resolution, 3))
    g_vars = jax.jit(lambda k: G.init({"params": k, "noise": k}, z, c))(key)
    d_vars = jax.jit(lambda k: D.init(k, img, c))(key)

    g_fwd = jax.jit(lambda v, z, k: G.apply(v, z, c, noise_mode="random", rngs={"noise": k}))
    d_fwd = jax.jit(lambda v, x: D.apply(v, x, c))
    results = {"device": str(jax.devices()[0].device_kind), "resolution": args.resolution,
               "batch": args.batch, "fmaps": args.fmaps, "bf16_res": args.bf16_res}
    for name, fn, fn_args in (("G", g_fwd, (g_vars, z, key)), ("D", d_fwd, (d_vars, img))):
        compile_s, step_s = time_compiled(fn, fn_args, args.iters)
        results[name] = {"compile_s": round(compile_s, 3),
                         "img_per_s": round(args.batch / step_s, 2),
                         "ms_per_batch": round(step_s * 1e3, 3)}
        print(f"{name} forward  res={args.resolution} batch={args.batch} "
              f"compile {compile_s:7.2f} s   {args.batch / step_s:10.1f} img/s   "
              f"{step_s * 1e3:9.2f} ms/batch")
    peak = peak_memory_mib()
    results["peak_mib"] = peak
    print(f"device {results['device']}   peak memory "
          f"{'n/a' if peak is None else f'{peak:.0f} MiB'}")
    if args.json:
        print(json.dumps(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
