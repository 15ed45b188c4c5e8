"""Images/s of the input pipeline, read from the dataset tool's shards.

    python -m stylegan_jax.data.benchmark                  # writes temporary shards first
    python -m stylegan_jax.data.benchmark --dataset ~/data/ffhq256 --resolutions 256 128

Without --dataset, each resolution gets a temporary dataset of synthetic images written by the
dataset tool's writer (the files the training pipeline reads), sized to stay in the page cache.
The number is what one process delivers: shuffled, mirrored (--xflip), batched uint8 arrays.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stylegan_jax.data.dataset_tool import write_dataset
from stylegan_jax.data.inputs import Input, Listing
from stylegan_jax.data.pipeline import make_pipeline
from stylegan_jax.data.sources import SourceConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--dataset", default=None, help="a dataset tool output (default: temporary shards)")
    a(
        "--resolutions",
        type=int,
        nargs="+",
        default=[64, 256, 1024],
        help="resolutions to measure (with --dataset: levels it has, or box-averaged)",
    )
    a("--batch", type=int, default=64, help="global batch (one process)")
    a("--seconds", type=float, default=5.0, help="measuring time per resolution")
    a("--channels", type=int, choices=(1, 3), default=3, help="channels of temporary shards")
    a("--dataset-mb", type=int, default=512, help="size of each temporary dataset")
    a("--no-xflip", action="store_true", help="measure without mirroring")


def synthetic_dataset(dest: Path, resolution: int, channels: int, count: int) -> None:
    """A dataset of `count` random images (16 distinct ones, repeated) in the tool's format."""
    rng = np.random.default_rng(0)
    distinct = rng.integers(0, 256, (16, resolution, resolution, channels), dtype=np.uint8)
    inputs = (
        Input(f"{i}.png", f"synthetic[{i}]", lambda i=i: distinct[i % 16]) for i in range(count)
    )
    listing = Listing(inputs, count, [], None, "")
    write_dataset(
        dest, listing, resolution=resolution, channels=channels, source="synthetic", workers=1
    )


def measure(path: str, resolution: int | None, batch: int, seconds: float, xflip: bool) -> float:
    """Images/s delivered by make_pipeline over `seconds`, after two warm-up batches."""
    source = SourceConfig(kind="tfrecord", path=path)
    with make_pipeline(
        source,
        batch,
        seed=0,
        xflip=xflip,
        resolution=resolution,
        process_index=0,
        process_count=1,
        prefetch=4,
    ) as pipe:
        for _ in range(2):
            next(pipe)
        start, images = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            images += len(next(pipe).images)
        return images / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    xflip = not args.no_xflip
    print(f"input pipeline, {cores} cores, batch {args.batch}, xflip {xflip}")
    for r in args.resolutions:
        if args.dataset:
            rate = measure(args.dataset, r, args.batch, args.seconds, xflip)
        else:
            per_image = r * r * args.channels
            count = max(2 * args.batch, (args.dataset_mb << 20) // per_image)
            with tempfile.TemporaryDirectory(prefix="stylegan-jax-bench-") as tmp:
                synthetic_dataset(Path(tmp) / "data", r, args.channels, count)
                rate = measure(str(Path(tmp) / "data"), r, args.batch, args.seconds, xflip)
        print(f"{r:>5}x{r:<5} {rate:>10,.0f} img/s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stylegan-jax benchmark-data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
