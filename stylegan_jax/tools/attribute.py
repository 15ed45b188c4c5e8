"""Says whether a generator made each image, by projecting it (StyleGAN2 paper, section 5).

An image the generator made projects back almost exactly; a real photo does not. Prints
one line per image (its distance after projection, the threshold and where it came from,
the verdict) and writes attribution.json to --outdir. The threshold is --threshold, a
--calibration file, or else self-calibration on the generator's own images.

--calibrate --reals DIR projects --num-generated generated images (seeds 0..N-1, psi 1)
and the real images, chooses the threshold, prints the ROC AUC and accuracy, and writes
calibration.json (for --calibration), histogram.png and distances.csv.

The distance is LPIPS when the VGG16 and LPIPS weight files are found (as for the
metrics), otherwise 'pyramid-mse' (the mean squared error of 2x2 and 4x4 box averages);
it is named in every output.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from stylegan_jax import atomic
from stylegan_jax.generate import add_network_arguments, named_network_from_args
from stylegan_jax.metrics import weight_files
from stylegan_jax.models.registry import image_shape
from stylegan_jax.tools import attribution, projection

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_NUM_GENERATED = 16


def image_files(paths: list[Path], what: str = "IMAGES") -> list[Path]:
    """The files named, a directory standing for its images (sorted, not recursive)."""
    out = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{what}: no images ({', '.join(IMAGE_SUFFIXES)}) in "
                                 f"directory {path}")
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            raise FileNotFoundError(f"{what}: {path}: no such file or directory")
    return out


def load_images(files: list[Path], module, what: str = "IMAGES") -> np.ndarray:
    """uint8 [N, H, W, C]: each file centre-cropped to the generator's aspect ratio and
    resized to its size."""
    return np.stack([projection.load_image(f, image_shape(module), module.img_channels, what)
                     for f in files])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", type=Path, metavar="IMAGES",
                   help="image files or directories of images (any size: centre-cropped, "
                   "resized with Lanczos to the generator)")
    add_network_arguments(p)
    p.add_argument("--steps", "--num-steps", dest="steps", type=int, default=None,
                   help=f"projection steps (default: a --calibration file's, else "
                   f"{attribution.OFFICIAL_STEPS}, official)")
    p.add_argument("--batch-size", type=int, default=8, help="images projected at once")
    p.add_argument("--seed", type=int, default=303,
                   help="projection noise initialisation and w noise (default: 303, official)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--threshold", type=float, default=None,
                     help="distance at or below which an image counts as generated")
    src.add_argument("--calibration", type=Path, default=None, metavar="FILE.json",
                     help="the threshold of a calibration.json written by --calibrate")
    src.add_argument("--calibrate", action="store_true",
                     help="choose the threshold from --num-generated generated images and "
                     "the images of --reals; write calibration.json, histogram.png")
    p.add_argument("--reals", type=Path, nargs="+", default=None, metavar="DIR",
                   help="with --calibrate: real images (files or directories)")
    p.add_argument("--num-generated", type=int, default=DEFAULT_NUM_GENERATED,
                   help="generated images (seeds 0..N-1, psi 1) for --calibrate or for "
                   f"self-calibration (default: {DEFAULT_NUM_GENERATED})")
    p.add_argument("--outdir", type=Path, default=Path("out"), help="default: ./out")
    p.add_argument("--vgg16-weights", default=None, help="torchvision vgg16-*.pth (default: "
                   f"${weight_files.FILES['vgg16'].env}, else the metrics weights directory)")
    p.add_argument("--lpips-weights", default=None, help="LPIPS v0.1 vgg.pth (default: "
                   f"${weight_files.FILES['lpips'].env}, else the metrics weights directory)")


def _write_json(path: Path, data) -> Path:
    try:
        atomic.replace_file(path, json.dumps(data, indent=1) + "\n")
    except OSError as e:
        raise atomic.write_error(str(path), e) from None
    return path


def _steps(args, cal: attribution.Calibration | None) -> int:
    if cal is not None:
        if args.steps is not None and args.steps != cal.num_steps:
            raise ValueError(f"--steps {args.steps}: calibration {args.calibration} was made "
                             f"with {cal.num_steps} steps, and distances depend on the step "
                             "count (leave --steps out to use the file's)")
        return cal.num_steps
    steps = attribution.OFFICIAL_STEPS if args.steps is None else args.steps
    return projection.check_steps(steps, "--steps")


def _check_args(args) -> None:
    if args.calibrate and not args.reals:
        raise ValueError("--calibrate needs --reals DIR (real images to calibrate against)")
    if args.reals and not args.calibrate:
        raise ValueError("--reals is only used with --calibrate")
    if not args.calibrate and not args.images:
        raise ValueError("no IMAGES given (image files or directories to attribute)")
    if args.steps is not None:
        projection.check_steps(args.steps, "--steps")
    for flag in ("batch_size", "num_generated"):
        value = getattr(args, flag)
        if value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be a positive integer, "
                             f"got {value}")


def _distances_csv(path: Path, rows) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["group", "image", "distance"])
    writer.writerows(rows)
    try:
        atomic.replace_file(path, buf.getvalue())
    except OSError as e:
        raise atomic.write_error(str(path), e) from None
    return path


def run_calibration(args, net, name, distance, steps) -> attribution.Calibration:
    G = net.module
    real_files = image_files(args.reals, "--reals")
    reals = load_images(real_files, G, "--reals")
    seeds = list(range(args.num_generated))
    gen = attribution.generated_images(G, net.variables, seeds)
    both = attribution.project_batch(G, net.variables, np.concatenate([gen, reals]), steps,
                                     distance, args.seed, args.batch_size)
    d_gen, d_real = both.distance[: len(gen)], both.distance[len(gen):]
    cal = attribution.calibrate(d_gen, d_real, distance.name, steps, name, args.seed,
                                seeds, [str(f) for f in real_files])
    args.outdir.mkdir(parents=True, exist_ok=True)
    written = [
        attribution.save_calibration(args.outdir / "calibration.json", cal),
        attribution.histogram_png(args.outdir / "histogram.png", d_gen, d_real, cal.threshold,
                                  distance.name),
        _distances_csv(args.outdir / "distances.csv",
                       [("generated", f"seed{s}", repr(float(d)))
                        for s, d in zip(seeds, d_gen, strict=True)]
                       + [("real", str(f), repr(float(d)))
                          for f, d in zip(real_files, d_real, strict=True)]),
    ]
    print(f"calibration ({distance.name}, {steps} steps): {len(gen)} generated, "
          f"{len(reals)} real; ROC AUC {cal.auc:.4f}; threshold {cal.threshold:.6g}, "
          f"balanced accuracy {cal.accuracy:.4f}")
    print("wrote " + ", ".join(str(p) for p in written))
    return cal


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    cal = attribution.load_calibration(args.calibration) if args.calibration else None
    steps = _steps(args, cal)
    files = image_files(args.images) if args.images else []
    net, name = named_network_from_args(args)
    G = net.module
    projection.check_generator(G)
    targets = load_images(files, G) if files else None
    distance = attribution.load_distance(args.vgg16_weights, args.lpips_weights)
    if cal is not None and cal.distance != distance.name:
        raise ValueError(f"--calibration {args.calibration} was made with the {cal.distance} "
                         f"distance, but the distance now is {distance.name} (LPIPS needs "
                         "the VGG16 and LPIPS weight files); recalibrate or supply them")
    if cal is not None and cal.network != name:
        print(f"note: calibration {args.calibration} was made for network {cal.network!r}, "
              f"this is {name!r}", file=sys.stderr)
    fallback = "" if distance.name == projection.LPIPS else (
        " (the stand-in for LPIPS, whose VGG16/LPIPS weight files were not found)")
    print(f"distance: {distance.name}{fallback}; {steps} projection steps; network {name}")
    start = time.perf_counter()
    if args.calibrate:
        cal = run_calibration(args, net, name, distance, steps)
        threshold, source = cal.threshold, "calibrate (this run)"
    elif args.threshold is not None:
        threshold, source = args.threshold, "--threshold"
    elif cal is not None:
        threshold, source = cal.threshold, f"calibration {args.calibration}"
    else:
        threshold = attribution.self_threshold(G, net.variables, distance, args.num_generated,
                                               steps, args.seed, args.batch_size,
                                               progress=True)
        source = (f"self-calibration on {args.num_generated} generated images, "
                  f"{attribution.SELF_RULE}")
    if targets is None:
        return 0
    proj = attribution.project_batch(G, net.variables, targets, steps, distance, args.seed,
                                     args.batch_size)
    results = []
    for f, d in zip(files, proj.distance, strict=True):
        v = attribution.verdict(float(d), threshold)
        results.append({"image": str(f), "distance": float(d), "verdict": v})
        print(f"{f}: {distance.name} {float(d):.6g}, threshold {threshold:.6g} ({source}): {v}")
    out = _write_json(args.outdir / "attribution.json", {
        "network": name, "distance": distance.name, "num_steps": steps, "seed": args.seed,
        "threshold": threshold, "threshold_source": source, "images": results})
    print(f"{len(files)} images in {time.perf_counter() - start:.1f} s; wrote {out}")
    return 0
