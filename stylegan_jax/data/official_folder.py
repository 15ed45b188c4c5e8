"""A source's images as the image folder of NVIDIA's stylegan2-ada-pytorch, for side-by-side
runs with the official code (its ``training/dataset.py`` ImageFolderDataset reads it)::

    dest/00000/img00000000.png ... dest/00000/img00000999.png, dest/00001/img00001000.png, ...
    dest/dataset.json            {"labels": [["00000/img00000000.png", 0], ...]},
                                 [[..., [0.2, 0.8]], ...] for label vectors, or
                                 {"labels": null} when the source has no labels

the layout its ``dataset_tool.py`` writes: PNGs (mode L for 1 channel, RGB for 3) named by
dataset index, so ImageFolderDataset's name sort keeps the source's order.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from stylegan_jax.data import sources as src
from stylegan_jax.data.images import box_downsample, check_resolution
from stylegan_jax.data.shards import DatasetError

PER_FOLDER = 1000
_READ_BATCH = 256


def official_name(index: int) -> str:
    """The file of dataset index `index`, relative to the folder (the official tool's name)."""
    return f"{index // PER_FOLDER:05d}/img{index:08d}.png"


def write_official_folder(
    source: src.SourceConfig | Mapping[str, Any],
    dest: str | os.PathLike,
    resolution: int | None = None,
) -> dict[str, Any]:
    """Writes every image of an indexed source (bundled or tfrecord) to a new folder `dest`.

    resolution: a power of two <= the source's (default: the source's), box-averaged from the
    nearest stored level as the training pipeline serves it. `dest` must not exist or be an
    empty directory; the folder is written beside it and renamed into place when complete.
    Returns {"path", "count", "resolution", "channels", "labels"} (labels: whether
    dataset.json holds labels).
    """
    if not isinstance(source, src.SourceConfig):
        source = src.SourceConfig.from_dict(source)
    if source.kind not in ("bundled", "tfrecord"):
        raise DatasetError(
            f"official folder: source kind {source.kind!r} has no random access; write it "
            "with `stylegan-jax dataset` first and export that tfrecord dataset"
        )
    dest = Path(dest)
    _check_dest(dest)
    indexed = src.open_indexed(source)
    if indexed.count == 0:
        raise DatasetError(f"official folder: the source {source.path or source.kind} is empty")
    res = check_resolution(resolution or indexed.resolution, "resolution")
    if res > indexed.resolution:
        raise DatasetError(
            f"official folder: resolution {res} exceeds the source's {indexed.resolution}"
        )
    level = min(r for r in indexed.levels + (indexed.resolution,) if r >= res)
    images, factor = indexed.images_at(level), level // res
    mode = {1: "L", 3: "RGB"}[indexed.channels]

    tmp = dest.parent / f".{dest.name}.partial-{secrets.token_hex(4)}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        for start in range(0, indexed.count, _READ_BATCH):
            indices = np.arange(start, min(start + _READ_BATCH, indexed.count), dtype=np.int64)
            batch = box_downsample(images.read(indices), factor)
            for index, image in zip(indices.tolist(), batch, strict=True):
                file = tmp / official_name(index)
                file.parent.mkdir(exist_ok=True)
                buf = io.BytesIO()
                # Uncompressed, as the official tool saves: decoding stays cheap.
                PIL.Image.fromarray(image[..., 0] if mode == "L" else image, mode).save(
                    buf, format="png", compress_level=0
                )
                file.write_bytes(buf.getvalue())
        labels = None
        if indexed.labels is not None:
            labels = [[official_name(i), c] for i, c in enumerate(indexed.labels.tolist())]
        (tmp / "dataset.json").write_text(json.dumps({"labels": labels}))
        if dest.is_dir():
            dest.rmdir()  # empty, checked above; rmdir refuses if that changed meanwhile
        os.rename(tmp, dest)
    except OSError as e:
        raise DatasetError(f"{dest}: cannot write the official folder ({e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "path": str(dest),
        "count": indexed.count,
        "resolution": res,
        "channels": indexed.channels,
        "labels": labels is not None,
    }


def _check_dest(dest: Path) -> None:
    """dest must not exist or be an empty directory: nothing already there is overwritten."""
    if dest.exists() and not dest.is_dir():
        raise DatasetError(f"{dest}: exists and is not a directory; choose another destination")
    if dest.is_dir() and any(dest.iterdir()):
        raise DatasetError(
            f"{dest}: exists and is not empty; choose another destination or delete it first"
        )
