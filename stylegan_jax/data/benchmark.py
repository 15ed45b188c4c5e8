"""Images/s of the input pipeline, read from the dataset tool's shards.

    stylegan-jax bench-data                                # writes temporary shards first
    stylegan-jax bench-data --dataset ~/data/ffhq256 --resolutions 256 128
    stylegan-jax bench-data --resolutions 256 --threads 1,2,4,8 --rounds 3

Without --dataset, each resolution gets a temporary dataset of synthetic images written by the
dataset tool's writer (the files the training pipeline reads), sized to stay in the page cache.
The number is what one process delivers: shuffled, mirrored (--xflip), batched uint8 arrays.
With several --threads (reader threads), each round measures every thread count in turn, so
a busy spell of a shared machine hits them all; the median over rounds is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stylegan_jax.data.dataset_tool import write_dataset
from stylegan_jax.data.inputs import Input, Listing
from stylegan_jax.data.pipeline import default_threads, make_pipeline
from stylegan_jax.data.sources import SourceConfig


def thread_counts(text: str) -> list[int]:
    """'1,2,4,8' -> [1, 2, 4, 8] (argparse type of --threads)."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"--threads: expected comma-separated integers >= 1 (e.g. 1,2,4,8), got {text!r}"
        )
    return counts


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
    a("--seconds", type=float, default=5.0, help="measuring time per resolution and round")
    a(
        "--threads",
        type=thread_counts,
        default=None,
        help="reader thread counts to compare, e.g. 1,2,4,8 (default: the pipeline's "
        "default, one per core up to 8)",
    )
    a("--rounds", type=int, default=1, help="rounds over the thread counts (median printed)")
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


def measure(
    path: str, resolution: int | None, batch: int, seconds: float, xflip: bool, threads: int
) -> float:
    """Images/s delivered by make_pipeline over `seconds`, in the steady state.

    The warm-up lets every reader fill its pool of reused batch arrays (about three each):
    paging in fresh arrays is a start-up cost (seconds for 1024x1024 batches on a VM).
    """
    source = SourceConfig(kind="tfrecord", path=path)
    with make_pipeline(
        source,
        batch,
        seed=0,
        xflip=xflip,
        resolution=resolution,
        process_index=0,
        process_count=1,
        prefetch=max(4, threads),
        threads=threads,
    ) as pipe:
        for _ in range(3 * threads + 1):
            next(pipe)
        start, images = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            images += len(next(pipe).images)
        return images / (time.perf_counter() - start)


def sweep(
    path: str, resolution: int, counts: list[int], args: argparse.Namespace, xflip: bool
) -> dict[int, float]:
    """{threads: median img/s}, each round measuring every thread count in turn."""
    rates: dict[int, list[float]] = {t: [] for t in counts}
    for _ in range(args.rounds):
        for t in counts:
            rates[t].append(measure(path, resolution, args.batch, args.seconds, xflip, t))
    return {t: statistics.median(r) for t, r in rates.items()}


def run(args: argparse.Namespace) -> int:
    if args.rounds < 1 or args.seconds <= 0:
        raise ValueError(
            f"--rounds must be >= 1 and --seconds > 0, got {args.rounds}, {args.seconds}"
        )
    counts = args.threads or [default_threads()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    xflip = not args.no_xflip
    print(
        f"input pipeline, {cores} cores, batch {args.batch}, xflip {xflip}, threads "
        f"{','.join(map(str, counts))}, {args.rounds} round(s) of {args.seconds:g} s",
        flush=True,
    )
    for r in args.resolutions:
        if args.dataset:
            rates = sweep(args.dataset, r, counts, args, xflip)
        else:
            per_image = r * r * args.channels
            count = max(2 * args.batch, (args.dataset_mb << 20) // per_image)
            with tempfile.TemporaryDirectory(prefix="stylegan-jax-bench-") as tmp:
                synthetic_dataset(Path(tmp) / "data", r, args.channels, count)
                rates = sweep(str(Path(tmp) / "data"), r, counts, args, xflip)
        first = counts[0]
        for t, rate in rates.items():
            ratio = "" if t == first else f"   {rate / rates[first]:.2f}x threads {first}"
            print(f"{r:>5}x{r:<5} threads {t:<3} {rate:>10,.0f} img/s{ratio}", flush=True)
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
