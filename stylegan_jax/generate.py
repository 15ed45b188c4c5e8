"""Image generation from stored networks, seeded as NVIDIA's generate.py seeds them.

Also the pieces the tools share: a generator from a directory, workdir or official .pkl,
and the mapping / synthesis halves (ws) of the families that have a w space.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from stylegan_jax import images
from stylegan_jax.model_store import Network, load_networks
from stylegan_jax.models import progan, stylegan, stylegan2, stylegan3


def parse_seeds(text: str, what: str = "--seeds") -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]; `what` names the option in errors."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
        except ValueError:
            raise ValueError(f"{what}: {part!r} is not a number or a range like 0-7") from None
    if not seeds:
        raise ValueError(f"{what}: nothing in {text!r}")
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


# Generators with StyleGAN2's interface: mapping_fn(z, c, psi, cutoff), synthesis_fn(ws,
# noise_mode), no level of detail.
W_FAMILIES = (stylegan2.Generator, stylegan3.Generator)


def synthesize(module, variables, z, c, key, lod=0.0, psi=1.0, cutoff=None,
               noise_mode="const"):
    """Images in [-1, 1] from any generator family: the one call generation, training
    grids and metrics share. Traceable; `lod` is data (ProGAN / StyleGAN v1; one compile
    for every level of detail), `psi`, `cutoff` and `noise_mode` are static."""
    if isinstance(module, W_FAMILIES):
        return module.apply(variables, z, c, psi, cutoff, noise_mode, rngs={"noise": key})
    lod = jnp.asarray(lod, jnp.float32)
    if isinstance(module, progan.Generator):  # no truncation, no noise inputs
        return module.apply(variables, z, c, lod)
    return module.apply(variables, z, c, lod, psi, cutoff, noise_mode, rngs={"noise": key})


_synthesize = jax.jit(synthesize, static_argnames=("module", "psi", "cutoff", "noise_mode"))


GENERATORS = (*W_FAMILIES, stylegan.Generator, progan.Generator)


def w_shape(module) -> tuple[int, int]:
    """(num_ws, w_dim): one w per synthesis layer, for the families that map z to w."""
    if isinstance(module, W_FAMILIES):
        return module.num_ws, module.w_dim
    if isinstance(module, stylegan.Generator):
        return module.num_layers, module.dlatent_size
    raise ValueError(f"a {type(module).__module__.rsplit('.', 1)[-1]}.{type(module).__name__} "
                     "has no w space (ProGAN maps z straight to images); this needs a "
                     "StyleGAN2 or StyleGAN generator")


def mapping(module, variables, z, c, psi=1.0, cutoff=None):
    """ws [N, num_ws, w_dim] from z (and labels c), truncated toward the average w as the
    official generators truncate. Traceable; `psi` and `cutoff` are static."""
    w_shape(module)
    if isinstance(module, W_FAMILIES):
        return module.apply(variables, z, c, psi, cutoff, method=type(module).mapping_fn)
    ws = module.apply(variables, z, c, method=stylegan.Generator.mapping_fn)
    return module.apply(variables, ws, psi, cutoff, method=stylegan.Generator.truncate_fn)


def synthesis(module, variables, ws, key, lod=0.0, noise_mode="const"):
    """Images in [-1, 1] from ws [N, num_ws, w_dim]. Traceable; `lod` is data (StyleGAN v1),
    `noise_mode` static."""
    w_shape(module)
    if isinstance(module, W_FAMILIES):
        return module.apply(variables, ws, noise_mode, rngs={"noise": key},
                            method=type(module).synthesis_fn)
    return module.apply(variables, ws, jnp.asarray(lod, jnp.float32), noise_mode,
                        rngs={"noise": key}, method=stylegan.Generator.synthesis_fn)


_mapping = jax.jit(mapping, static_argnames=("module", "psi", "cutoff"))
_synthesis = jax.jit(synthesis, static_argnames=("module", "noise_mode"))


def batches(n: int, batch_size: int, desc: str) -> Iterator[slice]:
    """Slices of [0, n) with a tqdm bar (on stderr): the first batch compiles, the rest run."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    starts = range(0, n, batch_size)
    for i in tqdm(starts, desc=desc, unit="batch", disable=len(starts) < 2, leave=False):
        yield slice(i, min(i + batch_size, n))


def check_lod(net: Network, lod: float | None) -> float:
    """The level of detail to render at (default: the network's own), validated."""
    G = net.module
    lod = net.lod if lod is None else lod
    if isinstance(G, W_FAMILIES) and lod != 0:
        raise ValueError(f"--lod {lod}: StyleGAN2/3 generators have no level of detail")
    if not isinstance(G, W_FAMILIES) and not 0 <= lod <= G.max_lod:
        raise ValueError(f"--lod must be in [0, {G.max_lod}] for this generator, got {lod}")
    return float(lod)


def ws_for_seeds(net: Network, seeds: list[int], truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None, class_idx: int | None = None
                 ) -> np.ndarray:
    """float32 ws [N, num_ws, w_dim] of the seeds' z (the official seeding), truncated."""
    G = net.module
    w_shape(G)
    z = jnp.asarray(latents_for_seeds(seeds, G.z_dim))
    c = jnp.asarray(labels_for(class_idx, G.c_dim, len(seeds)))
    return np.asarray(_mapping(G, net.variables, z, c, psi=float(truncation_psi),
                               cutoff=truncation_cutoff))


def images_from_ws(net: Network, ws: np.ndarray, noise_mode: str = "const",
                   batch_size: int = 16, lod: float | None = None, seed: int = 0,
                   desc: str = "synthesis") -> np.ndarray:
    """uint8 NHWC images, one per w [num_ws, w_dim]. Batches are padded to `batch_size`
    so that one compiled program renders them all; batch b draws random noise from
    PRNGKey(seed + b)."""
    G = net.module
    lod = check_lod(net, lod)
    expected = w_shape(G)
    ws = np.asarray(ws, np.float32)
    if ws.ndim != 3 or ws.shape[1:] != expected:
        raise ValueError(f"ws of shape {ws.shape}; this generator takes [N, {expected[0]}, "
                         f"{expected[1]}] (N images, num_ws, w_dim)")
    out = []
    size = min(batch_size, len(ws))
    for b, part in enumerate(batches(len(ws), size, desc)):
        wb = ws[part]
        padded = np.concatenate([wb, np.repeat(wb[-1:], size - len(wb), 0)])
        img = _synthesis(G, net.variables, jnp.asarray(padded), jax.random.PRNGKey(seed + b),
                         jnp.float32(lod), noise_mode=noise_mode)
        out.append(images.to_uint8(img)[: len(wb)])
    return np.concatenate(out)


def stylegan3_transform(translate=(0.0, 0.0), rotate: float = 0.0) -> np.ndarray:
    """The `synthesis.input.transform` that shows the image translated by `translate`
    (fractions of the image) and rotated by `rotate` degrees: the inverse of that
    rotation-and-translation, as the official gen_images.py sets it."""
    a = np.deg2rad(rotate)
    m = np.array([[np.cos(a), np.sin(a), translate[0]],
                  [-np.sin(a), np.cos(a), translate[1]],
                  [0.0, 0.0, 1.0]])
    return np.linalg.inv(m).astype(np.float32)


def with_transform(net: Network, translate=(0.0, 0.0), rotate: float = 0.0) -> Network:
    """`net` showing its images translated and rotated (StyleGAN3's input transform)."""
    if not isinstance(net.module, stylegan3.Generator):
        if tuple(translate) != (0.0, 0.0) or rotate != 0.0:
            raise ValueError("--translate / --rotate move StyleGAN3 generators' input; this "
                             f"is a {type(net.module).__module__.rsplit('.', 1)[-1]} generator")
        return net
    matrix = jnp.asarray(stylegan3_transform(translate, rotate))
    return Network(net.module, with_input_transform(net.variables, matrix), net.lod)


def with_input_transform(variables: dict, transform: jax.Array) -> dict:
    """StyleGAN3 `variables` whose input transform buffer is `transform` [3, 3]
    (traceable: serve passes one per sample as data)."""
    buffers = dict(variables["buffers"])
    synthesis = dict(buffers["synthesis"])
    synthesis["input"] = {**synthesis["input"], "transform": transform}
    buffers["synthesis"] = synthesis
    return {**variables, "buffers": buffers}


def _pair(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (two numbers), got {text!r}") from None
    return x, y


def load_projected_w(path: str | Path, expected: tuple[int, int] | None = None) -> np.ndarray:
    """ws [N, num_ws, w_dim] of a `projected_w.npz` (the official projector's file, key `w`);
    `expected` (num_ws, w_dim) is the generator's."""
    path = Path(path)
    with np.load(path) as data:
        if "w" not in data.files:
            raise ValueError(f"{path}: no array 'w' (the official projected_w.npz key); "
                             f"it has {data.files}")
        ws = data["w"]
    want = "[N, num_ws, w_dim]" if expected is None else f"[N, {expected[0]}, {expected[1]}]"
    if ws.ndim != 3 or (expected is not None and ws.shape[1:] != tuple(expected)):
        raise ValueError(f"{path}: 'w' has shape {list(ws.shape)}, expected {want} "
                         "(N images, num_ws, w_dim of this generator)")
    return ws.astype(np.float32)


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
    if not isinstance(G, GENERATORS):
        raise TypeError(f"expected a generator, got {type(G).__name__}")
    lod = check_lod(net, lod)
    if isinstance(G, progan.Generator) and (truncation_psi != 1 or truncation_cutoff is not None):
        raise ValueError("ProGAN generators have no truncation (--trunc must be 1)")
    z = latents_for_seeds(seeds, G.z_dim)
    c = labels_for(class_idx, G.c_dim, len(seeds))
    if isinstance(G, stylegan3.Generator):
        # Its styles are normalised over the batch (demodulation cancels that up to
        # rounding): one seed per call, as NVIDIA's gen_images.py and `serve` render them.
        batch_size = 1
    out = []
    for part in batches(len(seeds), batch_size, "generate"):
        key = jax.random.PRNGKey(seeds[part.start])
        zb, cb = jnp.asarray(z[part]), jnp.asarray(c[part])
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


def load_generator(source: str | Path, which: str | None = None) -> Network:
    """The generator of `load_any_networks(source)`: G_ema if present, else G (default)."""
    nets = load_any_networks(source)
    which = which or ("G_ema" if "G_ema" in nets else "G")
    if which not in nets:
        raise ValueError(f"{source} has no network {which!r}; it has {sorted(nets)}")
    return nets[which]


def load_any_networks(source: str | Path) -> dict[str, Network]:
    """The networks of a network directory, a training workdir (its newest checkpoint, or
    a checkpoint path) or an official .pkl (PyTorch or TensorFlow, converted in memory by
    the converter `stylegan-jax convert` uses)."""
    return read_any_networks(source)[0]


def read_any_networks(source: str | Path) -> tuple[dict[str, Network], dict | None]:
    """`load_any_networks`, and a PyTorch pickle's records (else None): what a caller needs
    of a snapshot beyond its networks (its augment pipe) without reading it twice."""
    source = Path(source)
    if source.suffix == ".pkl":
        if not source.is_file():
            raise FileNotFoundError(f"--network: {source} is not a file")
        from stylegan_jax.convert import official, tf_official
        from stylegan_jax.convert.pickle_reader import (
            UnsafePickleError,
            is_tf_pickle,
            load_official_pickle,
        )

        try:
            if is_tf_pickle(source):
                return tf_official.networks_from_tf_pickle(source), None
            data = load_official_pickle(source)
            return official.networks_from_pickle(source, data), data
        except UnsafePickleError as e:
            raise ValueError(f"{source}: {e}") from None
    return load_networks(source), None


def add_network_arguments(p: argparse.ArgumentParser) -> None:
    """--network / --random-init / --which / --resolution: how every tool names its generator."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--network", type=Path, help="an official .pkl, a directory written by "
                     "`stylegan-jax convert`, or a training workdir (its newest checkpoint); "
                     "default: the face generator that ships with the package "
                     "(stylegan_jax/pretrained/faces32)")
    src.add_argument("--random-init", action="store_true",
                     help="use a small randomly initialised generator")
    p.add_argument("--which", default=None, help="network name in the directory or pickle "
                   "(default: G_ema if present, else G)")
    p.add_argument("--resolution", type=int, default=32, help="with --random-init")


def network_from_args(args: argparse.Namespace) -> Network:
    if args.random_init:
        return random_generator(args.resolution)
    if args.network is None:
        from stylegan_jax import pretrained

        return load_generator(pretrained.path(), args.which)
    return load_generator(args.network, args.which)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)
    p.add_argument("--seeds", default=None, help="seeds, e.g. 0-15 or 1,5,9 (default: 0-15)")
    p.add_argument("--projected-w", type=Path, default=None, metavar="FILE",
                   help="render the ws of a projected_w.npz (key 'w', [N, num_ws, w_dim]) "
                   "as projNN.png instead of seeds")
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
    p.add_argument("--translate", type=_pair, default=(0.0, 0.0), metavar="X,Y",
                   help="StyleGAN3: translate the image (fractions of its size)")
    p.add_argument("--rotate", type=float, default=0.0, metavar="DEG",
                   help="StyleGAN3: rotate the image (degrees)")
    p.add_argument("--batch-size", type=int, default=16, help="images per compiled call")
    p.add_argument("--outdir", type=Path, default=Path("out"), help="default: ./out")
    p.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True,
                   help="also write grid.png (default: yes)")


def run(args: argparse.Namespace) -> int:
    net = with_transform(network_from_args(args), args.translate, args.rotate)
    if args.projected_w is not None:
        if args.seeds is not None:
            print("warning: --seeds is ignored with --projected-w")
        ws = load_projected_w(args.projected_w, w_shape(net.module))
        imgs = images_from_ws(net, ws, args.noise_mode, args.batch_size, args.lod)
        names = [f"proj{i:02d}.png" for i in range(len(ws))]
    else:
        seeds = parse_seeds(args.seeds or "0-15")
        imgs = generate_images(net, seeds, args.trunc, args.trunc_cutoff, args.class_idx,
                               args.noise_mode, args.batch_size, lod=args.lod)
        names = [f"seed{seed:04d}.png" for seed in seeds]
    for name, img in zip(names, imgs, strict=True):
        images.save_image(img, args.outdir / name)
    if args.grid:
        grid = images.save_image(images.make_grid(imgs), args.outdir / "grid.png")
        print(f"wrote {len(imgs)} images and {grid}")
    else:
        print(f"wrote {len(imgs)} images to {args.outdir}")
    return 0
