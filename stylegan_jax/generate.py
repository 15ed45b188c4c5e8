"""`stylegan-jax generate`: images from stored networks, seeded as NVIDIA's generate.py
seeds them, and the batching the tools share (seeds or ws in, uint8 images out).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from stylegan_jax import images, pretrained, shapes
from stylegan_jax.models import stylegan2
from stylegan_jax.models.registry import Network, family_of, random_generator
from stylegan_jax.models.sampling import (
    check_lod,
    labels_for,
    latents_for_seeds,
    mapping_jit,
    resolve_class,
    synthesis_jit,
    synthesize_jit,
    w_shape,
    with_transform,
)
from stylegan_jax.store.load import class_names, label_kind, load_generator

# What conditions a generator: a class index, a label vector [c_dim] (a network trained on
# label vectors, or any c a conditional network takes), or None (unconditional).
Condition = int | np.ndarray | None


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


def batches(n: int, batch_size: int, desc: str) -> Iterator[slice]:
    """Slices of [0, n) with a tqdm bar (on stderr): the first batch compiles, the rest run."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    starts = range(0, n, batch_size)
    for i in tqdm(starts, desc=desc, unit="batch", disable=len(starts) < 2, leave=False):
        yield slice(i, min(i + batch_size, n))


def conditioning(class_idx: Condition, c_dim: int, n: int) -> np.ndarray:
    """The generator's c for n images, float32 [n, c_dim]: a class one-hot, or a label vector
    (float [c_dim]) as it is."""
    if not isinstance(class_idx, np.ndarray):
        return labels_for(class_idx, c_dim, n)
    vector = np.asarray(class_idx, np.float32)
    if c_dim == 0:
        raise ValueError("--label given, but the generator is unconditional")
    if vector.shape != (c_dim,):
        raise ValueError(f"--label has {vector.size} numbers; this generator takes {c_dim}")
    return np.repeat(vector[None], n, axis=0)


def ws_for_seeds(net: Network, seeds: list[int], truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None, class_idx: Condition = None
                 ) -> np.ndarray:
    """float32 ws [N, num_ws, w_dim] of the seeds' z (the official seeding), truncated;
    `class_idx`: a class or a label vector (`conditioning`)."""
    G = net.module
    w_shape(G)
    z = jnp.asarray(latents_for_seeds(seeds, G.z_dim))
    c = jnp.asarray(conditioning(class_idx, G.c_dim, len(seeds)))
    return np.asarray(mapping_jit(G, net.variables, z, c, psi=float(truncation_psi),
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
        img = synthesis_jit(G, net.variables, jnp.asarray(padded), jax.random.PRNGKey(seed + b),
                         jnp.float32(lod), noise_mode=noise_mode)
        out.append(images.to_uint8(img)[: len(wb)])
    return np.concatenate(out)


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
    class_idx: Condition = None,
    noise_mode: str = "const",
    batch_size: int = 16,
    lod: float | None = None,
) -> np.ndarray:
    """uint8 NHWC images, one per seed; `class_idx`: a class index or a label vector
    (`conditioning`).

    `lod` (level of detail, 0 = full resolution; default: the network's own) applies to
    ProGAN and StyleGAN v1 generators; ProGAN has no truncation and no noise inputs.
    """
    G = net.module
    family = family_of(G)
    lod = check_lod(net, lod)
    if not family.truncation and (truncation_psi != 1 or truncation_cutoff is not None):
        raise ValueError("ProGAN generators have no truncation (--trunc must be 1)")
    z = latents_for_seeds(seeds, G.z_dim)
    c = conditioning(class_idx, G.c_dim, len(seeds))
    if family.batch_styles:
        # Its styles are normalised over the batch (demodulation cancels that up to
        # rounding): one seed per call, as NVIDIA's gen_images.py and `serve` render them.
        batch_size = 1
    out = []
    for part in batches(len(seeds), batch_size, "generate"):
        key = jax.random.PRNGKey(seeds[part.start])
        zb, cb = jnp.asarray(z[part]), jnp.asarray(c[part])
        img = synthesize_jit(G, net.variables, zb, cb, key, jnp.float32(lod),
                          psi=float(truncation_psi), cutoff=truncation_cutoff,
                          noise_mode=noise_mode)
        out.append(images.to_uint8(img))
    return np.concatenate(out)


def add_network_arguments(p: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """--network / --random-init / --which / --resolution: how every tool names its generator
    (the returned group takes a tool's own alternatives, e.g. serve's --workdir)."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--network", type=Path, help="an official .pkl, a directory written by "
                     "`stylegan-jax convert`, or a training workdir (its newest checkpoint); "
                     "default: the face generator that ships with the package "
                     "(stylegan_jax/pretrained/faces32)")
    src.add_argument("--random-init", action="store_true",
                     help="use a small randomly initialised generator")
    p.add_argument("--which", default=None, help="network name in the directory or pickle "
                   "(default: G_ema if present, else G)")
    p.add_argument("--resolution", default="32", metavar="R|WxH",
                   help="with --random-init: a power of two, or WxH (e.g. 64x32)")
    return src


def named_network_from_args(args: argparse.Namespace) -> tuple[Network, str]:
    """The generator the flags of `add_network_arguments` name, and a name to show for it."""
    if args.random_init:
        size = shapes.parse_size(args.resolution, "--resolution")
        return (random_generator(size.resolution, aspect=size.aspect),
                f"random-init-{size if not size.square else size.resolution}")
    source = args.network or getattr(args, "workdir", None) or pretrained.path()
    return load_generator(source, args.which), Path(source).absolute().stem


def network_from_args(args: argparse.Namespace) -> Network:
    return named_network_from_args(args)[0]


def add_class_argument(p: argparse.ArgumentParser) -> None:
    """--class NAME|INDEX or --label V1,V2,...: what a conditional generator renders."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--class", dest="class_idx", default=None, metavar="NAME|INDEX",
                       help="class of a conditional generator: a name its training data gave "
                       "(the dataset tool's class folders or class_names) or an index")
    group.add_argument("--label", default=None, metavar="V1,V2,...",
                       help="label vector of a generator trained on label vectors (dataset."
                       "json [path, [0.2, 0.8, ...]]): c_dim comma-separated numbers, used as "
                       "c as they are (any conditional generator takes one)")


def parse_label(text: str, c_dim: int) -> np.ndarray:
    """`--label 0.2,0.8,...` -> float32 [c_dim]; errors name the flag and what was expected."""
    expected = f"{c_dim} comma-separated numbers (this generator's c_dim)"
    if c_dim == 0:
        raise ValueError("--label given, but the generator is unconditional")
    try:
        vector = np.asarray([float(v) for v in text.split(",")], np.float32)
    except ValueError:
        raise ValueError(f"--label {text!r}: not numbers; expected {expected}") from None
    if vector.shape != (c_dim,):
        raise ValueError(f"--label {text!r} has {vector.size} numbers; expected {expected}")
    if not np.isfinite(vector).all():
        raise ValueError(f"--label {text!r}: expected finite numbers")
    return vector


def _source(args: argparse.Namespace) -> Path:
    return args.network or getattr(args, "workdir", None) or pretrained.path()


def class_names_from_args(args: argparse.Namespace, net: Network) -> tuple[str, ...] | None:
    """The class names the network's source records (`store.load.class_names`), if any."""
    if args.random_init or net.module.c_dim == 0:
        return None
    return class_names(_source(args))


def label_kind_from_args(args: argparse.Namespace, net: Network) -> str | None:
    """'class' or 'vector' where the network's source records what it was trained on
    (`store.load.label_kind`), else None."""
    if args.random_init or net.module.c_dim == 0:
        return None
    return label_kind(_source(args))


def class_from_args(args: argparse.Namespace, net: Network) -> Condition:
    """`--class NAME|INDEX` as an index (names: `class_names_from_args`), or `--label` as a
    float32 vector [c_dim]. A network trained on label vectors takes --label only."""
    value, label = getattr(args, "class_idx", None), getattr(args, "label", None)
    c_dim = net.module.c_dim
    if label is not None:
        return parse_label(label, c_dim)
    if c_dim and label_kind_from_args(args, net) == "vector":
        given = "" if value is None else f"--class {value!r}: "
        raise ValueError(f"{given}this generator was trained on label vectors; pass --label "
                         f"with {c_dim} comma-separated numbers (e.g. --label "
                         f"{','.join(['0'] * min(c_dim, 4))}{',...' if c_dim > 4 else ''})")
    names = None if value is None else class_names_from_args(args, net)
    return resolve_class(value, c_dim, names)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)
    p.add_argument("--seeds", default=None, help="seeds, e.g. 0-15 or 1,5,9 (default: 0-15)")
    p.add_argument("--projected-w", type=Path, default=None, metavar="FILE",
                   help="render the ws of a projected_w.npz (key 'w', [N, num_ws, w_dim]) "
                   "as projNN.png instead of seeds")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi")
    p.add_argument("--trunc-cutoff", type=int, default=None,
                   help="truncate only the first N ws (default: all)")
    add_class_argument(p)
    p.add_argument("--noise-mode", choices=stylegan2.NOISE_MODES, default="const")
    p.add_argument("--lod", type=float, default=None,
                   help="level of detail for ProGAN / StyleGAN v1 generators (0 = full "
                   "resolution, 1 = half, fractional = fade-in; default: the network's, "
                   "e.g. where a training snapshot had grown to)")
    p.add_argument("--translate", type=_pair, default=(0.0, 0.0), metavar="X,Y",
                   help="StyleGAN3: translate the image (fractions of its shorter side)")
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
        imgs = generate_images(net, seeds, args.trunc, args.trunc_cutoff,
                               class_from_args(args, net),
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
