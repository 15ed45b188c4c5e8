"""What the dataset tool reads: image folders, zip files and TFDS splits, with their labels.

Each source becomes a list of ``Input`` (a name for messages and labels, a loader that returns
uint8 HWC or raises BadImage, an optional label). Labels of folders and zips come from a
``dataset.json`` at the root in the official StyleGAN2-ADA format::

    {"labels": [["00000/img00000000.png", 6], ["00000/img00000001.png", 9], ...]}  # or null
"""

from __future__ import annotations

import dataclasses
import json
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import PIL.Image

from stylegan_jax.data import sources
from stylegan_jax.data.images import BadImage, decode_image
from stylegan_jax.data.shards import DatasetError

LABELS_FILE = "dataset.json"


@dataclasses.dataclass
class Input:
    """One image to convert: where it is (for messages), how to load it, its label."""

    name: str  # path relative to the source root with '/', as dataset.json names it
    where: str  # full location for error messages
    load: Callable[[], np.ndarray]
    label: int | None = None


@dataclasses.dataclass
class Listing:
    """A source's images (lazy) and what the listing found around them."""

    inputs: Iterator[Input]
    total: int | None  # for the progress bar; None when unknown
    ignored: list[str]  # files without an image extension
    labels: dict[str, int] | None  # from dataset.json
    labels_where: str
    num_classes: int | None = None  # known up front for TFDS


def image_extensions() -> set[str]:
    PIL.Image.init()
    return {ext.lower() for ext in PIL.Image.registered_extensions()}


def parse_labels(text: bytes | str, where: str) -> dict[str, int] | None:
    """dataset.json -> {relative path: class}; errors name the entry and what was expected."""
    expected = 'expected {"labels": [["path/relative.png", int], ...]} or {"labels": null}'
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DatasetError(f"{where}: not valid JSON ({e}); {expected}") from None
    if not isinstance(data, dict) or "labels" not in data:
        raise DatasetError(f"{where}: {expected}")
    if data["labels"] is None:
        return None
    if not isinstance(data["labels"], list):
        raise DatasetError(f"{where}: 'labels' is a {type(data['labels']).__name__}; {expected}")
    labels: dict[str, int] = {}
    for i, entry in enumerate(data["labels"]):
        ok = isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[0], str)
        ok = ok and isinstance(entry[1], int) and not isinstance(entry[1], bool) and entry[1] >= 0
        if not ok:
            raise DatasetError(
                f'{where}: labels[{i}] is {entry!r}; expected ["path", class index >= 0]'
            )
        if entry[0] in labels:
            raise DatasetError(f"{where}: {entry[0]!r} is labelled twice")
        labels[entry[0]] = entry[1]
    return labels


def _read_file(path: Path) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadImage(f"unreadable ({e.strerror or e})") from None
    return decode_image(data)


def list_folder(root: Path) -> Listing:
    """Every file under root, recursively, in sorted order of its '/'-separated path."""
    exts = image_extensions()
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    labels, where = None, str(root / LABELS_FILE)
    images, ignored = [], []
    for rel, path in files:
        if rel == LABELS_FILE:
            labels = parse_labels(path.read_bytes(), where)
        elif path.suffix.lower() in exts:
            images.append(Input(rel, str(path), lambda p=path: _read_file(p)))
        else:
            ignored.append(rel)
    return Listing(iter(images), len(images), ignored, labels, where)


def list_zip(path: Path) -> Listing:
    """Every member of a zip, in sorted order; members are read under a lock, decoded freely."""
    try:
        archive = zipfile.ZipFile(path)
        members = sorted(m.filename for m in archive.infolist() if not m.is_dir())
    except (OSError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: not a readable zip file ({e})") from None
    lock = threading.Lock()

    def load(member: str) -> np.ndarray:
        try:
            with lock:
                data = archive.read(member)
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise BadImage(f"corrupt zip member ({e})") from None
        return decode_image(data)

    exts = image_extensions()
    labels, where = None, f"{path}:{LABELS_FILE}"
    images, ignored = [], []
    for name in members:
        if name == LABELS_FILE:
            with lock:
                labels = parse_labels(archive.read(name), where)
        elif Path(name).suffix.lower() in exts:
            images.append(Input(name, f"{path}:{name}", lambda m=name: load(m)))
        else:
            ignored.append(name)
    return Listing(iter(images), len(images), ignored, labels, where)


def list_tfds(
    name: str,
    split: str,
    data_dir: str | None,
    manual_dir: str | None,
    image_key: str,
    label_key: str | None,
) -> Listing:
    """A TFDS split in its stored order; images stay encoded until a worker decodes them."""
    builder = sources.tfds_builder(name, data_dir, manual_dir)
    num_classes = sources.tfds_features(builder, image_key, label_key)
    encoded = sources.tfds_encoded(
        builder, split, image_key, label_key, seed=0, shuffle_files=False
    )
    try:
        total = int(builder.info.splits[split].num_examples)
    except Exception:  # noqa: BLE001 - only the progress bar needs it
        total = None

    def inputs() -> Iterator[Input]:
        for i, (data, label) in enumerate(encoded.as_numpy_iterator()):
            yield Input(
                f"{split}[{i}]",
                f"tfds:{name} {split}[{i}]",
                lambda d=data: decode_image(d),
                int(label) if label_key else None,
            )

    return Listing(inputs(), total, [], None, "", num_classes if label_key else None)


def open_source(
    source: str,
    *,
    split: str = "train",
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_key: str = "image",
    label_key: str | None = None,
) -> Listing:
    """A folder, a .zip file, or 'tfds:NAME[/CONFIG][:VERSION]'."""
    if source.startswith("tfds:"):
        return list_tfds(source[5:], split, data_dir, manual_dir, image_key, label_key)
    path = Path(source)
    if path.is_dir():
        return list_folder(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        return list_zip(path)
    if path.exists():
        raise DatasetError(f"{source}: not a folder, a .zip file or tfds:NAME")
    raise DatasetError(f"{source}: no such file or folder")
