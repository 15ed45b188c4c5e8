"""``stylegan-jax dataset``: images from a folder, a zip or TFDS into TFRecord shards.

    stylegan-jax dataset --source ~/ffhq/images1024x1024 --dest ~/data/ffhq256 \\
        --resolution 256 --resize-filter box  # the FFHQ-256 of the published FID numbers
    stylegan-jax dataset --source tfds:celeb_a --dest ~/data/celeba64 --resolution 64 \\
        --transform center-crop --min-resolution 4   # every level down to 4x4 for ProGAN

Images are cropped (none / center-crop / center-crop-wide, as the official tools), resized with
the Pillow filter --resize-filter names (default lanczos, as the official stylegan2-ada tool;
never upscaled; the manifest records it as ``resize_filter``), converted to 1, 3 or 4 (RGBA)
channels and stored as raw pixels (format: ``shards.py``). Labels come from the official
dataset.json (class indices, or label vectors of numbers: ``data/inputs.py``), class folders
or a TFDS feature; the manifest records their ``label_kind`` ('class' or 'vector') and
``label_dim``. Bad files stop the run with a message naming them, or are skipped and listed
with --skip-bad. The dataset is built in a hidden directory
beside --dest and renamed into place only when complete, so an interrupted run never leaves
something that looks finished.
"""

from __future__ import annotations

import argparse
import collections
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from stylegan_jax.data.images import (
    DEFAULT_FILTER,
    FILTERS,
    TRANSFORMS,
    BadImage,
    box_downsample,
    check_resolution,
    to_channels,
    transform_image,
)
from stylegan_jax.data.inputs import LABEL_RULES, Input, Listing, open_source
from stylegan_jax.data.shards import (
    FORMAT,
    MANIFEST,
    DatasetError,
    LevelWriter,
    write_manifest,
)
from stylegan_jax.shapes import parse_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``stylegan-jax dataset``."""
    a = parser.add_argument
    a(
        "--source",
        required=True,
        help="image folder (recursive), .zip file, or tfds:NAME[/CONFIG][:VERSION]",
    )
    a("--dest", required=True, help="directory to create; must not exist or be empty")
    a(
        "--resolution",
        type=lambda text: int(text) if text.strip().isdigit() else text,  # 256 stays an int
        required=True,
        help="output size: a power of two (square), or WxH with power-of-two sides "
        "(e.g. 512x256: 512 wide, 256 high)",
    )
    a(
        "--transform",
        choices=TRANSFORMS,
        default="none",
        help="none (images must be square), center-crop, or center-crop-wide (letterboxed)",
    )
    a(
        "--wide-height",
        type=int,
        default=None,
        help="content height for center-crop-wide (default: 3/4 of --resolution)",
    )
    a(
        "--resize-filter",
        "--filter",  # this tool's earlier name, kept for existing scripts
        dest="resize_filter",
        choices=sorted(FILTERS),
        default=DEFAULT_FILTER,
        help=f"Pillow resize filter (default {DEFAULT_FILTER}, as the official stylegan2-ada "
        "dataset_tool; box gives the FFHQ-256 of the published FID numbers); recorded in the "
        "manifest as resize_filter. --filter is an alias",
    )
    a(
        "--channels",
        type=int,
        choices=(1, 3, 4),
        default=3,
        help="1 = grayscale, 3 = RGB, 4 = RGBA (alpha kept; images without one are opaque)",
    )
    a(
        "--min-resolution",
        type=int,
        default=None,
        help="also write every level down to this side, each the 2x2 box average of the "
        "one above (progressive growing); default: only --resolution",
    )
    a(
        "--skip-bad",
        action="store_true",
        help="skip unusable files (listed in the summary and manifest) instead of stopping",
    )
    a("--max-images", type=int, default=None, help="stop after this many images")
    a("--split", default="train", help="TFDS split, e.g. train or train[:90%%]")
    a("--data-dir", default=None, help="TFDS data_dir")
    a("--manual-dir", default=None, help="TFDS manual_dir (celeb_a_hq and other manual sets)")
    a("--image-key", default="image", help="TFDS image feature")
    a("--label-key", default=None, help="TFDS ClassLabel feature to keep as labels")
    a(
        "--labels",
        choices=LABEL_RULES,
        default="auto",
        help="folders and zips: auto (the official dataset.json where present), folders "
        "(each image's first sub-folder is its class; the sorted folder names become the "
        "class names) or none",
    )
    a("--shard-mb", type=int, default=256, help="largest shard size in MiB")
    a(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="threads decoding and resizing images",
    )
    a("--no-progress", action="store_true", help="no progress bar")


def _ordered_map(fn: Callable[[Input], Any], items: Iterable[Input], workers: int) -> Iterator:
    """fn over items on `workers` threads, results in input order, a bounded window ahead."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        window: collections.deque = collections.deque()
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) >= 4 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def check_dest(dest: Path) -> None:
    """--dest must not exist, or be an empty directory."""
    if (dest / MANIFEST).exists():
        raise DatasetError(
            f"{dest}: already holds a dataset ({MANIFEST}); choose another "
            "--dest or delete it first"
        )
    if dest.exists() and not dest.is_dir():
        raise DatasetError(f"{dest}: exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise DatasetError(f"{dest}: exists and is not empty")


def _prepare_dest(dest: Path) -> Path:
    """Checks --dest and makes the hidden directory beside it that the dataset is built in."""
    check_dest(dest)
    tmp = dest.parent / f".{dest.name}.partial-{secrets.token_hex(4)}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()  # unlike mkdtemp, keeps the umask's permissions for the finished dataset
    except OSError as e:
        raise DatasetError(f"{dest}: cannot create ({e})") from None
    return tmp


def _check_options(
    resolution: int | str,
    min_resolution: int | None,
    wide_height: int | None,
    max_images: int | None,
    resize_filter: str = DEFAULT_FILTER,
) -> tuple[list[int], tuple[int, int]]:
    """Checks the options; returns the levels to write (shorter sides, highest first) and
    the aspect (shapes.py)."""
    try:
        size = parse_size(resolution, "--resolution")
    except ValueError as e:
        raise DatasetError(str(e)) from None
    resolution = size.resolution
    if resize_filter not in FILTERS:
        raise DatasetError(
            f"--resize-filter must be one of {sorted(FILTERS)}, got {resize_filter!r}"
        )
    if max_images is not None and max_images < 1:
        raise DatasetError(f"--max-images must be >= 1, got {max_images}")
    if wide_height is not None and not 0 < wide_height <= resolution:
        raise DatasetError(f"--wide-height must be in 1..{resolution}, got {wide_height}")
    low = check_resolution(min_resolution or resolution, "--min-resolution")
    if low > resolution:
        raise DatasetError(f"--min-resolution {low} exceeds --resolution {resolution}")
    levels = [resolution]
    while levels[-1] > low:
        levels.append(levels[-1] // 2)
    return levels, size.aspect


def write_dataset(
    dest: str | os.PathLike,
    listing: Listing,
    *,
    resolution: int | str,
    channels: int = 3,
    transform: str = "none",
    resize_filter: str = DEFAULT_FILTER,
    wide_height: int | None = None,
    min_resolution: int | None = None,
    skip_bad: bool = False,
    max_images: int | None = None,
    shard_mb: int = 256,
    workers: int = 1,
    progress: bool = False,
    source: str = "",
    args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Converts a listing's images into a finished dataset at dest; returns its manifest.

    resize_filter: a Pillow filter of ``images.FILTERS``; the manifest records it as
    ``resize_filter`` even when no image needed resizing.
    """
    levels, aspect = _check_options(resolution, min_resolution, wide_height, max_images,
                                    resize_filter)
    dest = Path(dest)
    tmp = _prepare_dest(dest)
    try:
        manifest = _convert(
            tmp,
            listing,
            levels,
            aspect,
            channels,
            transform,
            resize_filter,
            wide_height,
            skip_bad,
            max_images,
            shard_mb,
            workers,
            progress,
            source,
        )
        manifest["args"] = args or {}
        write_manifest(tmp, manifest)
        try:
            if dest.is_dir():
                dest.rmdir()  # empty, checked above
            os.rename(tmp, dest)
        except OSError as e:
            raise DatasetError(f"{dest}: cannot move the finished dataset there ({e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _convert(
    tmp: Path,
    listing: Listing,
    levels: list[int],
    aspect: tuple[int, int],
    channels: int,
    transform: str,
    resize_filter: str,
    wide_height: int | None,
    skip_bad: bool,
    max_images: int | None,
    shard_mb: int,
    workers: int,
    progress: bool,
    source: str,
) -> dict[str, Any]:
    resolution = levels[0]
    labels_by_name = listing.labels

    def process(item: Input):
        if labels_by_name is not None:
            item.label = labels_by_name.get(item.name)
            if item.label is None:
                return item, None, f"no label in {listing.labels_where}"
        try:
            image = to_channels(item.load(), channels)
            top = transform_image(image, resolution, transform, resize_filter, wide_height,
                                  aspect)
        except BadImage as e:
            return item, None, str(e)
        return item, [box_downsample(top, resolution // r) for r in levels], None

    writers = [LevelWriter(tmp, r, channels, shard_mb << 20, aspect) for r in levels]
    names, labels, skipped, seen = [], [], [], set()
    total = listing.total if max_images is None else min(listing.total or max_images, max_images)
    bar = tqdm(total=total, unit="img", desc="dataset", disable=not progress, file=sys.stderr)
    for item, images, reason in _ordered_map(process, listing.inputs, workers):
        seen.add(item.name)
        bar.update(1)
        if reason is not None:
            if not skip_bad:
                raise DatasetError(f"{item.where}: {reason} (--skip-bad skips such files)")
            skipped.append({"file": item.where, "reason": reason})
        else:
            for writer, image in zip(writers, images, strict=True):
                writer.write(image)
            names.append(item.name)
            labels.append(item.label)
        if max_images is not None and len(names) >= max_images:
            break
    bar.close()
    level_entries = {str(w.resolution): w.close() for w in writers}
    if not seen:
        raise DatasetError(
            f"{source}: no images found (searched recursively by extension; "
            f"{len(listing.ignored)} other files)"
        )
    if not names:
        raise DatasetError(f"{source}: all {len(seen)} images were bad; nothing to write")
    unmatched: list[str] = []
    if labels_by_name is not None and max_images is None:  # a cut-off run sees only some
        unmatched = sorted(set(labels_by_name) - seen)
        if unmatched and not skip_bad:
            raise DatasetError(
                f"{listing.labels_where}: {len(unmatched)} labels name files that are not "
                f"images of the source, e.g. {unmatched[:3]} (--skip-bad ignores them)"
            )
    has_labels = labels_by_name is not None or listing.num_classes is not None
    vectors = has_labels and isinstance(labels[0], list)
    num_classes = 0 if vectors else listing.num_classes or (max(labels) + 1 if has_labels
                                                              else 0)
    class_names = listing.class_names if has_labels else None
    kind = ("vector" if vectors else "class") if has_labels else None
    return {
        "format": FORMAT,
        "count": len(names),
        "resolution": resolution,
        "aspect": list(aspect),
        "width": resolution * aspect[1],
        "height": resolution * aspect[0],
        "channels": channels,
        "resize_filter": resize_filter,
        "labels": labels if has_labels else None,
        "label_kind": kind,
        "label_dim": len(labels[0]) if vectors else num_classes,
        "num_classes": num_classes,
        "class_names": class_names,
        "levels": level_entries,
        "source": source,
        "skipped": skipped,
        "ignored": listing.ignored,
        "unmatched_labels": unmatched,
    }


def build_dataset(
    source: str,
    dest: str,
    resolution: int | str,
    *,
    split: str = "train",
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_key: str = "image",
    label_key: str | None = None,
    labels: str = "auto",
    **options,
) -> dict[str, Any]:
    """Reads `source` (folder, zip or tfds:NAME) and writes the dataset; see write_dataset."""
    _check_options(
        resolution,
        options.get("min_resolution"),
        options.get("wide_height"),
        options.get("max_images"),
        options.get("resize_filter", DEFAULT_FILTER),
    )
    check_dest(Path(dest))  # before listing a large folder or preparing a TFDS dataset
    listing = open_source(
        source,
        split=split,
        data_dir=data_dir,
        manual_dir=manual_dir,
        image_key=image_key,
        label_key=label_key,
        labels=labels,
    )
    return write_dataset(dest, listing, resolution=resolution, source=source, **options)


def _summary(manifest: dict[str, Any], dest: str) -> str:
    n, (ah, aw) = manifest["count"], manifest["aspect"]
    r = manifest["resolution"]
    shards = sum(len(v["shards"]) for v in manifest["levels"].values())
    vectors = manifest.get("label_kind") == "vector"
    labelled = (f"{manifest['label_dim']}-number label vectors" if vectors
                else f"{manifest['num_classes']} classes")
    lines = [
        f"wrote {n} images ({r * aw}x{r * ah}, {manifest['channels']} channel(s), "
        f"{labelled}, levels {sorted(map(int, manifest['levels']))}, "
        f"resize filter {manifest['resize_filter']}) to {dest} in {shards} shards",
        f"skipped {len(manifest['skipped'])} bad files; ignored "
        f"{len(manifest['ignored'])} files without an image extension",
    ]
    if manifest["labels"] is not None and not vectors:
        counts = collections.Counter(manifest["labels"])
        names = manifest["class_names"] or [str(k) for k in range(manifest["num_classes"])]
        lines.append("classes: " + ", ".join(f"{k} {name} ({counts.get(k, 0)} images)"
                                             for k, name in enumerate(names)))
    lines += [f"  skipped {s['file']}: {s['reason']}" for s in manifest["skipped"][:20]]
    if len(manifest["skipped"]) > 20:
        lines.append(f"  ... and {len(manifest['skipped']) - 20} more (see {MANIFEST})")
    if manifest["unmatched_labels"]:
        lines.append(f"{len(manifest['unmatched_labels'])} labels named no image (see {MANIFEST})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Runs the tool for parsed arguments; prints a summary, or an error and returns 1."""
    if args.workers < 1 or args.shard_mb < 1:
        print("error: --workers and --shard-mb must be >= 1", file=sys.stderr)
        return 1
    options = {k: v for k, v in vars(args).items() if not callable(v)}
    try:
        manifest = build_dataset(
            args.source,
            args.dest,
            args.resolution,
            split=args.split,
            data_dir=args.data_dir,
            manual_dir=args.manual_dir,
            image_key=args.image_key,
            label_key=args.label_key,
            labels=args.labels,
            channels=args.channels,
            transform=args.transform,
            resize_filter=args.resize_filter,
            wide_height=args.wide_height,
            min_resolution=args.min_resolution,
            skip_bad=args.skip_bad,
            max_images=args.max_images,
            shard_mb=args.shard_mb,
            workers=args.workers,
            progress=not args.no_progress,
            args=options,
        )
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(_summary(manifest, args.dest))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stylegan-jax dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
