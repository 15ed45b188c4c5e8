"""Generator / discriminator throughput and compile time (no tensorflow needed).

For the networks of an official configuration (`--cfg`, as the official train.py names
them: StyleGAN2's, or StyleGAN3's alias-free generator `-t` / `-r` with the StyleGAN2
discriminator), prints one line per network and pass: compile seconds, img/s and ms per
batch of the forward pass and of forward + backward (the gradient with respect to the
parameters, as a training step needs it), and peak device memory where the backend
reports it. Run it on the CPU or a lent GPU:
`stylegan-jax bench-networks --cfg stylegan3-t --resolution 256 --batch 8`.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp

from stylegan_jax.benchmarks.timing import peak_memory_mib, time_compiled
from stylegan_jax.models import stylegan2, stylegan3
from stylegan_jax.models.registry import family_of

CFGS = ("stylegan2", "stylegan3-t", "stylegan3-r")
# Official train.py defaults per --cfg: channel_base as a multiple of 32768 (the stylegan2
# bench's paper256 preset is 0.5; stylegan3's --cbase is 32768) and mapping layers.
FMAPS = {"stylegan2": 0.5, "stylegan3-t": 1.0, "stylegan3-r": 1.0}
MAPPING_LAYERS = {"stylegan2": 8, "stylegan3-t": 2, "stylegan3-r": 2}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", default="stylegan2", choices=CFGS,
                   help="the networks of official train.py --cfg (default: stylegan2)")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=16, help="images per call")
    p.add_argument("--fmaps", type=float, default=None,
                   help="channel_base = fmaps * 32768 (default: 0.5 for stylegan2 as "
                   "paper256, 1 for stylegan3 as its --cbase; config-f: 1); stylegan3-r "
                   "doubles the generator's, as the official -r")
    p.add_argument("--channel-max", type=int, default=512, help="doubled for the "
                   "stylegan3-r generator")
    p.add_argument("--w-dim", type=int, default=512)
    p.add_argument("--mapping-layers", type=int, default=None,
                   help="default: 8 for stylegan2, 2 for stylegan3")
    p.add_argument("--layers", type=int, default=14,
                   help="stylegan3: synthesis layers (official: 14; fewer for a quick check)")
    p.add_argument("--g-arch", default="skip", choices=stylegan2.ARCHITECTURES,
                   help="stylegan2 only")
    p.add_argument("--d-arch", default="resnet", choices=stylegan2.ARCHITECTURES)
    p.add_argument("--mbstd-group", type=int, default=4)
    p.add_argument("--bf16-res", type=int, default=0,
                   help="compute the N highest resolutions in bfloat16 (official: 4 fp16)")
    p.add_argument("--fused-modconv", action="store_true",
                   help="stylegan2: per-sample grouped modulated conv instead of "
                   "activation scaling")
    p.add_argument("--no-backward", dest="backward", action="store_false",
                   help="time the forward passes only")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")


def build(args: argparse.Namespace):
    """(G, D) of `--cfg` with the official kwargs that configuration sets."""
    fmaps = FMAPS[args.cfg] if args.fmaps is None else args.fmaps
    mapping_layers = args.mapping_layers or MAPPING_LAYERS[args.cfg]
    common = dict(img_resolution=args.resolution, img_channels=3, conv_clamp=256.0,
                  num_bf16_res=args.bf16_res)
    base, cmax = int(fmaps * 32768), args.channel_max
    if args.cfg == "stylegan2":
        G = stylegan2.Generator(z_dim=args.w_dim, c_dim=0, w_dim=args.w_dim,
                                mapping_layers=mapping_layers, architecture=args.g_arch,
                                fused_modconv=args.fused_modconv, channel_base=base,
                                channel_max=cmax, **common)
    else:
        radial = args.cfg == "stylegan3-r"  # 1x1 convs, radial filters, doubled channels
        scale = 2 if radial else 1
        G = stylegan3.Generator(z_dim=args.w_dim, c_dim=0, w_dim=args.w_dim,
                                mapping_layers=mapping_layers, channel_base=base * scale,
                                channel_max=cmax * scale, conv_kernel=1 if radial else 3,
                                use_radial_filters=radial, num_layers=args.layers, **common)
    D = stylegan2.Discriminator(c_dim=0, architecture=args.d_arch, channel_base=base,
                                channel_max=cmax, mbstd_group_size=args.mbstd_group, **common)
    return G, D


def forward_backward(forward):
    """`forward(params, *inputs)` -> (output, gradient of <output, cotangent> wrt params).
    The cotangent is an argument: a constant one would let XLA fold it into the program."""

    def fn(params, cotangent, *inputs):
        out, pullback = jax.vjp(lambda p: forward(p, *inputs), params)
        return out, pullback(cotangent)[0]

    return fn


def run(args: argparse.Namespace) -> int:
    G, D = build(args)
    key = jax.random.PRNGKey(0)
    z = jax.random.normal(key, (args.batch, args.w_dim))
    c = jnp.zeros((args.batch, 0))
    img = jnp.zeros((args.batch, args.resolution, args.resolution, 3))
    g_vars = jax.jit(lambda k: G.init({"params": k, "noise": k}, z, c))(key)
    d_vars = jax.jit(lambda k: D.init(k, img, c))(key)

    def g_forward(params, z, k):
        return G.apply({**g_vars, "params": params}, z, c, noise_mode="random",
                       rngs={"noise": k})

    def d_forward(params, x):
        return D.apply({**d_vars, "params": params}, x, c)

    results = {"device": str(jax.devices()[0].device_kind), "cfg": args.cfg,
               "resolution": args.resolution, "batch": args.batch,
               "fmaps": FMAPS[args.cfg] if args.fmaps is None else args.fmaps,
               "bf16_res": args.bf16_res}
    if family_of(G).name == "stylegan3":
        results["layers"] = stylegan3_layers(G)
    print(describe(G, args))
    for name, forward, inputs in (("G", g_forward, (z, key)), ("D", d_forward, (img,))):
        params = (g_vars if name == "G" else d_vars)["params"]
        passes = [("forward", forward, (params, *inputs))]
        if args.backward:
            cot = jnp.ones(jax.eval_shape(forward, params, *inputs).shape)
            passes.append(("fwd+bwd", forward_backward(forward), (params, cot, *inputs)))
        for label, fn, fn_args in passes:
            compile_s, step_s = time_compiled(jax.jit(fn), fn_args, args.iters)
            entry = name if label == "forward" else f"{name}_fwd_bwd"
            results[entry] = {"compile_s": round(compile_s, 3),
                              "img_per_s": round(args.batch / step_s, 2),
                              "ms_per_batch": round(step_s * 1e3, 3)}
            print(f"{name} {label:<8} res={args.resolution} batch={args.batch} "
                  f"compile {compile_s:7.2f} s   {args.batch / step_s:10.2f} img/s   "
                  f"{step_s * 1e3:9.2f} ms/batch")
    peak = peak_memory_mib()
    results["peak_mib"] = peak
    print(f"device {results['device']}   peak memory "
          f"{'n/a' if peak is None else f'{peak:.0f} MiB'}")
    if args.json:
        print(json.dumps(results))
    return 0


def stylegan3_layers(G: stylegan3.Generator) -> list[str]:
    """The synthesis layers' official names (L<index>_<size>_<channels>)."""
    _, specs = stylegan3.layer_specs(
        G.img_resolution, G.img_channels, G.channel_base, G.channel_max,
        num_layers=G.num_layers, num_critical=G.num_critical, margin_size=G.margin_size,
        conv_kernel=G.conv_kernel, use_radial_filters=G.use_radial_filters)
    return [s.name for s in specs]


def describe(G, args: argparse.Namespace) -> str:
    """One line naming the networks' configuration (StyleGAN3: its synthesis layers)."""
    line = f"{args.cfg}: G channel_base {G.channel_base} channel_max {G.channel_max}"
    if family_of(G).name == "stylegan3":
        line += (f" conv_kernel {G.conv_kernel} radial filters {G.use_radial_filters}, "
                 f"layers {' '.join(stylegan3_layers(G))}")
    else:
        line += f" {args.g_arch}"
    return line + f"; D {args.d_arch}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
