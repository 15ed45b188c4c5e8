"""Image generation from stored networks, seeded as NVIDIA's generate.py seeds them."""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax import images
from stylegan_jax.model_store import Network, load_networks
from stylegan_jax.models import progan, stylegan, stylegan2


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
        except ValueError:
            raise ValueError(f"--seeds: {part!r} is not a seed or a range like 0-7") from None
    if not seeds:
        raise ValueError(f"--seeds: no seeds in {text!r}")
    return seeds


def latents_for_seeds(seeds: list[int], z_dim: int) -> np.ndarray:
    """z for each seed: RandomState(seed).randn(z_dim), the official generate.py rule."""
    return np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)


def labels_for(class_idx: int | None, c_dim: int, n: int) -> np.ndarray:
    if c_dim == 0:
        if class_idx is not None:
            raise ValueError("--class given, but the generator is unconditional")
        return np.zeros((n, 0), np.float32)
    if class_idx is None or not 0 <= class_idx < c_dim:
        raise ValueError(f"a conditional generator needs --class in [0, {c_dim}), got {class_idx}")
    c = np.zeros((n, c_dim), np.float32)
    c[:, class_idx] = 1
    return c


def synthesize(module, variables, z, c, key, lod=0.0, psi=1.0, cutoff=None,
               noise_mode="const"):
    """Images in [-1, 1] from any generator family: the one call generation, training
    grids and metrics share. Traceable; `lod` is data (ProGAN / StyleGAN v1; one compile
    for every level of detail), `psi`, `cutoff` and `noise_mode` are static."""
    if isinstance(module, stylegan2.Generator):
        return module.apply(variables, z, c, psi, cutoff, noise_mode, rngs={"noise": key})
    lod = jnp.asarray(lod, jnp.float32)
    if isinstance(module, progan.Generator):  # no truncation, no noise inputs
        return module.apply(variables, z, c, lod)
    return module.apply(variables, z, c, lod, psi, cutoff, noise_mode, rngs={"noise": key})


_synthesize = jax.jit(synthesize, static_argnames=("module", "psi", "cutoff", "noise_mode"))


GENERATORS = (stylegan2.Generator, stylegan.Generator, progan.Generator)


def generate_images(
    net: Network,
    seeds: list[int],
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    class_idx: int | None = None,
    noise_mode: str = "const",
    batch_size: int = 16,
    lod: float | None = None,
) -> np.ndarray:
    """uint8 NHWC images, one per seed.

    `lod` (level of detail, 0 = full resolution; default: the network's own) applies to
    ProGAN and StyleGAN v1 generators; ProGAN has no truncation and no noise inputs.
    """
    G = net.module
    lod = net.lod if lod is None else lod
    if not isinstance(G, GENERATORS):
        raise TypeError(f"expected a generator, got {type(G).__name__}")
    if isinstance(G, stylegan2.Generator) and lod != 0:
        raise ValueError(f"--lod {lod}: StyleGAN2 generators have no level of detail")
    if isinstance(G, progan.Generator) and (truncation_psi != 1 or truncation_cutoff is not None):
        raise ValueError("ProGAN generators have no truncation (--trunc must be 1)")
    if not isinstance(G, stylegan2.Generator) and not 0 <= lod <= G.max_lod:
        raise ValueError(f"--lod must be in [0, {G.max_lod}] for this generator, got {lod}")
    z = latents_for_seeds(seeds, G.z_dim)
    c = labels_for(class_idx, G.c_dim, len(seeds))
    out = []
    for i in range(0, len(seeds), batch_size):
        key = jax.random.PRNGKey(seeds[i])
        zb, cb = jnp.asarray(z[i : i + batch_size]), jnp.asarray(c[i : i + batch_size])
        img = _synthesize(G, net.variables, zb, cb, key, jnp.float32(lod),
                          psi=float(truncation_psi), cutoff=truncation_cutoff,
                          noise_mode=noise_mode)
        out.append(images.to_uint8(img))
    return np.concatenate(out)


def random_generator(resolution: int = 32, channels: int = 3, seed: int = 0) -> Network:
    """A small randomly initialised generator (for trying the tools before training)."""
    G = stylegan2.Generator(
        z_dim=64, c_dim=0, w_dim=64, img_resolution=resolution, img_channels=channels,
        mapping_layers=2, channel_base=2048, channel_max=64, conv_clamp=256.0,
    )
    key = jax.random.PRNGKey(seed)
    variables = G.init({"params": key, "noise": key}, jnp.zeros((1, 64)), jnp.zeros((1, 0)))
    return Network(G, variables)


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--network", type=Path, help="a directory written by `stylegan-jax "
                     "convert`, or a training workdir (its newest checkpoint)")
    src.add_argument("--random-init", action="store_true",
                     help="use a small randomly initialised generator")
    p.add_argument("--which", default=None, help="network name in the directory (default: "
                   "G_ema if present, else G)")
    p.add_argument("--seeds", default="0-15", help="seeds, e.g. 0-15 or 1,5,9")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi")
    p.add_argument("--trunc-cutoff", type=int, default=None,
                   help="truncate only the first N ws (default: all)")
    p.add_argument("--class", dest="class_idx", type=int, default=None,
                   help="class index for conditional generators")
    p.add_argument("--noise-mode", choices=stylegan2.NOISE_MODES, default="const")
    p.add_argument("--lod", type=float, default=None,
                   help="level of detail for ProGAN / StyleGAN v1 generators (0 = full "
                   "resolution, 1 = half, fractional = fade-in; default: the network's, "
                   "e.g. where a training snapshot had grown to)")
    p.add_argument("--outdir", type=Path, required=True)
    p.add_argument("--resolution", type=int, default=32, help="with --random-init")
    p.add_argument("--no-grid", action="store_true", help="skip grid.png")


def run(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    if args.random_init:
        net = random_generator(args.resolution)
    else:
        nets = load_networks(args.network)
        which = args.which or ("G_ema" if "G_ema" in nets else "G")
        if which not in nets:
            raise SystemExit(f"{args.network} has no network {which!r}; it has {sorted(nets)}")
        net = nets[which]
    imgs = generate_images(net, seeds, args.trunc, args.trunc_cutoff, args.class_idx,
                           args.noise_mode, lod=args.lod)
    for seed, img in zip(seeds, imgs, strict=True):
        images.save_image(img, args.outdir / f"seed{seed:04d}.png")
    if not args.no_grid:
        grid = images.save_image(images.make_grid(imgs), args.outdir / "grid.png")
        print(f"wrote {len(seeds)} images and {grid}")
    else:
        print(f"wrote {len(seeds)} images to {args.outdir}")
    return 0
