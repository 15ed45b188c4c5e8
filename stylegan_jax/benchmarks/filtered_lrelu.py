"""Speed of the filtered leaky ReLU on the layer shapes of a StyleGAN3 generator.

For every synthesis layer of `stylegan3-t` (or `-r`) at the given resolution, times the
op alone under jit on its real input shape (the modulated conv's output), forward and
forward + backward (gradient wrt the input and bias), and prints one line per case of the
op (up-sampling, down-sampling, filter lengths and whether the down filter is radial),
summed over the layers of that case, and the total (`--json`: every layer). The default
is the official 256x256 configuration.

    stylegan-jax bench-filtered-lrelu --resolution 256 --batch 4
"""

from __future__ import annotations

import argparse
import json
import math

import jax
import jax.numpy as jnp

from stylegan_jax.benchmarks.timing import time_compiled
from stylegan_jax.models.stylegan3 import layer_specs
from stylegan_jax.nn.filtered_lrelu import filtered_lrelu


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", default="t", choices=("t", "r"), help="stylegan3-t or stylegan3-r")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--channel-base", type=int, default=32768, help="doubled for -r")
    p.add_argument("--channel-max", type=int, default=512, help="doubled for -r")
    p.add_argument("--layers", type=int, default=14,
                   help="synthesis layers (official: 14; fewer for a quick check)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


def layer_timings(cfg: str, resolution: int, batch: int, channel_base: int = 32768,
                  channel_max: int = 512, dtype=jnp.float32, iters: int = 5,
                  num_layers: int = 14) -> list[dict]:
    """[{layer, shape, fwd_ms, fwd_bwd_ms, compile_s}] for every synthesis layer."""
    radial = cfg == "r"
    scale = 2 if radial else 1
    _, specs = layer_specs(resolution, 3, channel_base * scale, channel_max * scale,
                           num_layers=num_layers, conv_kernel=1 if radial else 3,
                           use_radial_filters=radial)
    rows = []
    for s in specs:
        size = s.in_size + s.conv_kernel - 1
        shape = (batch, size, size, s.out_channels)
        x = jax.random.normal(jax.random.key(0), shape, dtype)
        b = jnp.zeros((s.out_channels,), dtype)
        kw = dict(fu=s.up_filter(), fd=s.down_filter(), up=s.up, down=s.down,
                  padding=s.padding, gain=1 if s.is_torgb else math.sqrt(2),
                  slope=1 if s.is_torgb else 0.2, clamp=256)

        def fwd(x, b, kw=kw):
            return filtered_lrelu(x, b=b, **kw)

        def fwd_bwd(x, b, cot, fwd=fwd):
            # A cotangent argument, not a constant one: XLA would fold that into the program.
            y, pullback = jax.vjp(fwd, x, b)
            return y, pullback(cot)

        cot = jax.random.normal(jax.random.key(1), jax.eval_shape(fwd, x, b).shape, dtype)
        compile_f, t_f = time_compiled(jax.jit(fwd), (x, b), iters)
        compile_b, t_b = time_compiled(jax.jit(fwd_bwd), (x, b, cot), iters)
        rows.append(dict(layer=s.name, shape=list(shape), up=s.up, down=s.down,
                         up_taps=s.up_taps, down_taps=s.down_taps, radial=s.down_radial,
                         fwd_ms=1e3 * t_f, fwd_bwd_ms=1e3 * t_b,
                         compile_s=compile_f + compile_b))
    return rows


def by_case(rows: list[dict]) -> list[dict]:
    """The layer rows summed per case (up, down, up_taps, down_taps, radial), in the order
    the cases first appear."""
    cases: dict[tuple, dict] = {}
    for r in rows:
        key = (r["up"], r["down"], r["up_taps"], r["down_taps"], r["radial"])
        case = cases.setdefault(key, dict(zip(("up", "down", "up_taps", "down_taps",
                                               "radial"), key, strict=True),
                                          layers=[], fwd_ms=0.0, fwd_bwd_ms=0.0))
        case["layers"].append(r["layer"])
        case["fwd_ms"] += r["fwd_ms"]
        case["fwd_bwd_ms"] += r["fwd_bwd_ms"]
    return list(cases.values())


def run(args: argparse.Namespace) -> int:
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    rows = layer_timings(args.cfg, args.resolution, args.batch, args.channel_base,
                         args.channel_max, dtype, args.iters, args.layers)
    print(f"filtered_lrelu, stylegan3-{args.cfg} {args.resolution}px layers, batch "
          f"{args.batch}, {args.dtype}, {jax.devices()[0].platform}")
    cases = by_case(rows)
    for c in cases:
        taps = f"{c['up_taps']}/{c['down_taps']}{' radial' if c['radial'] else ''}"
        print(f"  up {c['up']} down {c['down']} taps {taps:<10} {len(c['layers']):2d} "
              f"layers: fwd {c['fwd_ms']:8.2f} ms  fwd+bwd {c['fwd_bwd_ms']:8.2f} ms  "
              f"({c['layers'][0]}" + (f"..{c['layers'][-1]})" if len(c["layers"]) > 1 else ")"))
    fwd = sum(r["fwd_ms"] for r in rows)
    both = sum(r["fwd_bwd_ms"] for r in rows)
    print(f"  total: fwd {fwd:.2f} ms  fwd+bwd {both:.2f} ms  "
          f"(compile {sum(r['compile_s'] for r in rows):.1f} s)")
    if args.json:
        print(json.dumps(dict(cfg=args.cfg, resolution=args.resolution, batch=args.batch,
                              dtype=args.dtype, layers=rows, cases=cases, fwd_ms=fwd,
                              fwd_bwd_ms=both)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
