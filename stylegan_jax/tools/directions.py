"""`stylegan-jax directions`: editing directions in W, written to one .npz for `edit` and
`serve`.

--method sefa: closed-form factorisation of the style affine weights (Shen & Zhou 2021);
score = the eigenvalue's share. --method ganspace: principal components of sampled w
(Härkönen et al. 2020); score = explained variance ratio. --method labels: InterFaceGAN
(Shen et al. 2020): labelled images (--folders NAME=DIR ..., or --data bundled / a labelled
tfrecord dataset) are projected into W and a linear classifier per class (one vs the rest)
gives the normal; score = accuracy on a held-out 30 %. Every direction's sigma is the std of
the generator's sampled w along it, so `edit` strengths are in sigmas for all methods.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from stylegan_jax.data.sources import SourceConfig, open_indexed
from stylegan_jax.generate import add_network_arguments, named_network_from_args
from stylegan_jax.metrics import weight_files
from stylegan_jax.models.registry import Network, image_shape
from stylegan_jax.models.sampling import w_shape
from stylegan_jax.tools import attribution, projection
from stylegan_jax.tools import latent_directions as ld
from stylegan_jax.tools.attribute import image_files, load_images

SCORES = {"sefa": "eigen share", "ganspace": "expl. var.", "labels": "accuracy"}


def parse_folders(items: list[str]) -> list[tuple[str, Path]]:
    """['smile=DIR', ...] -> [(name, DIR), ...]: two or more classes with distinct names."""
    out = []
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder:
            raise ValueError(f"--folders: {item!r} is not NAME=DIR")
        out.append((name.strip(), Path(folder)))
    names = [n for n, _ in out]
    if len(out) < 2 or len(set(names)) != len(names):
        raise ValueError(f"--folders: need two or more classes with distinct names, got "
                         f"{names}")
    return out


def folder_images(module, folders: list[tuple[str, Path]]
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 images [N, H, W, C] fitted to the generator, labels [N], class names)."""
    imgs, labels = [], []
    for k, (name, folder) in enumerate(folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"--folders {name}={folder}: no such directory")
        part = load_images(image_files([folder], f"--folders {name}"), module,
                           f"--folders {name}")
        imgs.append(part)
        labels.append(np.full(len(part), k, np.int64))
    return np.concatenate(imgs), np.concatenate(labels), [n for n, _ in folders]


def dataset_images(module, data: str, max_per_class: int | None
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The images and labels of the bundled faces ('bundled': face / non-face) or of a
    labelled tfrecord dataset (`stylegan-jax dataset`), fitted to the generator."""
    size, ch = image_shape(module), module.img_channels
    res = size.resolution
    if data == "bundled":  # square faces: at the longer side, so a W x H crop keeps it all
        source = SourceConfig(kind="bundled", resolution=max(size.height, size.width),
                              channels=ch, labels=True)
    elif Path(data).is_dir():
        source = SourceConfig(kind="tfrecord", path=data)
    else:
        raise FileNotFoundError(f"--data {data}: neither 'bundled' nor a dataset directory")
    src = open_indexed(source)
    if src.vector_labels:
        raise ValueError(f"--data {data}: its labels are vectors of {src.label_dim} numbers "
                         "(label_kind 'vector'), not classes; --method labels fits one "
                         "direction per class, so it needs class labels (`stylegan-jax "
                         "dataset` from class folders or class indices)")
    if src.labels is None or src.num_classes < 2:
        raise ValueError(f"--data {data}: the dataset has no labels (write it with "
                         "`stylegan-jax dataset` from labelled images)")
    names = list(src.class_names or [f"class{k}" for k in range(src.num_classes)])
    picked = np.concatenate([np.flatnonzero(src.labels == k)[:max_per_class]
                             for k in range(src.num_classes)])
    level = res if res in src.levels else src.resolution
    raw = src.images_at(level).read(picked)
    imgs = np.stack([projection.fit_image(img, size, ch) for img in raw])
    return imgs, src.labels[picked].astype(np.int64), names


def labelled_w(net: Network, args) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """Projected w [N, w_dim] of the labelled images, labels, class names, settings."""
    G = net.module
    projection.check_generator(G)
    projection.check_steps(args.num_steps)
    if args.folders:
        imgs, labels, names = folder_images(G, parse_folders(args.folders))
        source = {"folders": args.folders}
    else:
        imgs, labels, names = dataset_images(G, args.data or "bundled", args.max_per_class)
        source = {"data": args.data or "bundled"}
    distance = attribution.load_distance(args.vgg16_weights, args.lpips_weights)
    counts = np.bincount(labels, minlength=len(names)).tolist()
    per_class = ", ".join(f"{n}: {c}" for n, c in zip(names, counts, strict=True))
    print(f"projecting {len(imgs)} images ({per_class}), {args.num_steps} steps, distance "
          f"{distance.name}")
    projected = attribution.project_batch(G, net.variables, imgs, args.num_steps, distance,
                                          args.project_seed, args.batch_size)
    settings = {**source, "num_steps": args.num_steps, "distance": distance.name,
                "project_seed": args.project_seed, "val_fraction": args.val_fraction,
                "mean_distance": float(np.mean(projected.distance))}
    return projected.w, labels, names, settings


def find_directions(net: Network, args) -> tuple[list[ld.Direction], dict]:
    num_ws, _ = w_shape(net.module)
    layers = None if args.layers is None else ld.parse_layers(args.layers, num_ws)
    samples = args.samples or (ld.GANSPACE_SAMPLES if args.method == "ganspace"
                               else ld.SIGMA_SAMPLES)
    settings = {"samples": samples, "seed": args.seed}
    if args.method == "sefa":
        found = ld.sefa(net.module, net.variables, layers, args.num, samples, args.seed)
    elif args.method == "ganspace":
        found = ld.ganspace(net.module, net.variables, layers, args.num, samples, args.seed)
    else:
        w, labels, names, more = labelled_w(net, args)
        sampled = ld.sample_w(net.module, net.variables, samples, args.seed)
        found = ld.supervised(w, labels, names, layers, num_ws, sampled, args.val_fraction,
                              seed=args.seed)
        settings.update(more)
    return found, settings


def table(directions: list[ld.Direction]) -> str:
    score = SCORES[directions[0].method]
    width = max(8, *(len(d.name) for d in directions))
    lines = [f"{'index':>5}  {'name':<{width}}  {'layers':>7}  {'sigma':>9}  {score:>11}"]
    for i, d in enumerate(directions):
        lines.append(f"{i:>5}  {d.name:<{width}}  {d.layers[0]:>3}-{d.layers[1]:<3}  "
                     f"{d.sigma:>9.4f}  {d.score:>11.4f}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)
    p.add_argument("--method", choices=ld.METHODS, required=True,
                   help="sefa (style weights), ganspace (PCA of w) or labels (InterFaceGAN)")
    p.add_argument("--num", type=int, default=10,
                   help="sefa / ganspace: directions to keep, strongest first (default: 10)")
    p.add_argument("--layers", default=None, metavar="A-B",
                   help="ws indices the directions apply to, inclusive; sefa also factorises "
                   "only their affine weights (default: all)")
    p.add_argument("--samples", type=int, default=None,
                   help="sampled w (psi 1) for the sigmas and GANSpace's PCA (default: "
                   f"{ld.GANSPACE_SAMPLES} for ganspace, else {ld.SIGMA_SAMPLES})")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the sampled w and of the labels' train/val split")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.npz")
    labels = p.add_argument_group("--method labels")
    src = labels.add_mutually_exclusive_group()
    src.add_argument("--folders", nargs="+", default=None, metavar="NAME=DIR",
                     help="two or more classes, each a directory of images")
    src.add_argument("--data", default=None, metavar="bundled|DIR",
                     help="a labelled dataset: 'bundled' (the faces and non-faces that ship "
                     "with scikit-image; the default) or a tfrecord dataset directory")
    labels.add_argument("--max-per-class", type=int, default=None,
                        help="with --data: at most this many images of each class")
    labels.add_argument("--num-steps", type=int, default=attribution.OFFICIAL_STEPS,
                        help=f"projection steps (default: {attribution.OFFICIAL_STEPS}, "
                        "official)")
    labels.add_argument("--project-seed", type=int, default=303,
                        help="projection noise initialisation and w noise (default: 303)")
    labels.add_argument("--batch-size", type=int, default=8, help="images projected at once")
    labels.add_argument("--val-fraction", type=float, default=0.3,
                        help="held-out share of each class for the accuracy (default: 0.3)")
    labels.add_argument("--vgg16-weights", default=None, help="torchvision vgg16-*.pth "
                        f"(default: ${weight_files.FILES['vgg16'].env}, else the metrics "
                        "weights directory; without LPIPS weights: the pyramid-mse stand-in)")
    labels.add_argument("--lpips-weights", default=None, help="LPIPS v0.1 vgg.pth (default: "
                        f"${weight_files.FILES['lpips'].env}, else the metrics weights "
                        "directory)")


def check_args(args) -> None:
    if args.out.suffix.lower() != ".npz":
        raise ValueError(f"--out: {args.out} is not a .npz file")
    if args.method != "labels" and (args.folders or args.data):
        raise ValueError("--folders / --data are for --method labels")
    if args.max_per_class is not None and (args.max_per_class < 2 or args.folders):
        raise ValueError("--max-per-class goes with --data and must be >= 2")
    if args.samples is not None and args.samples < 2:
        raise ValueError(f"--samples must be >= 2, got {args.samples}")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    net, name = named_network_from_args(args)
    num_ws, w_dim = w_shape(net.module)
    start = time.perf_counter()
    found, settings = find_directions(net, args)
    meta = {"network": name, "method": args.method, "num_ws": num_ws, "w_dim": w_dim,
            **settings}
    path = ld.save_directions(args.out, found, meta)
    print(table(found))
    print(f"wrote {path}: {len(found)} {args.method} directions "
          f"({time.perf_counter() - start:.1f} s)")
    return 0
