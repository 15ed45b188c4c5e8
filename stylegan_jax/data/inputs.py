"""What the dataset tool reads: image folders, zip files and TFDS splits, with their labels.

Each source becomes a list of ``Input`` (a name for messages and labels, a loader that returns
uint8 HWC or raises BadImage, an optional label). Labels of folders and zips come from a
``dataset.json`` at the root in the official StyleGAN2-ADA format, optionally with the classes'
names (this project's addition; the official tools ignore the key)::

    {"labels": [["00000/img00000000.png", 6], ["00000/img00000001.png", 9], ...]}  # or null
    {"labels": [["cats/1.png", 0], ["dogs/7.png", 1]], "class_names": ["cat", "dog"]}

or, with ``labels="folders"``, from the first sub-folder of each image's path: the sorted
folder names are the classes, so ``cats/1.png`` and ``dogs/7.png`` are classes 0 and 1.

A label may also be a vector of numbers, as the official tools accept (continuous or multi-hot
conditions, used as the generator's c as they are)::

    {"labels": [["00000/img00000000.png", [0.2, 0.8, 0.0]], ...]}

Every vector has the same length (the generator's c_dim) and finite values, stored as
float32; a file mixes no class indices with vectors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
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
LABEL_RULES = ("auto", "folders", "none")  # auto: dataset.json where there is one


@dataclasses.dataclass
class Input:
    """One image to convert: where it is (for messages), how to load it, its label."""

    name: str  # path relative to the source root with '/', as dataset.json names it
    where: str  # full location for error messages
    load: Callable[[], np.ndarray]
    label: int | list[float] | None = None  # a class index, or a label vector


@dataclasses.dataclass
class Listing:
    """A source's images (lazy) and what the listing found around them."""

    inputs: Iterator[Input]
    total: int | None  # for the progress bar; None when unknown
    ignored: list[str]  # files without an image extension
    labels: dict[str, int] | dict[str, list[float]] | None  # dataset.json or class folders
    labels_where: str
    num_classes: int | None = None  # known up front for TFDS and class folders
    class_names: list[str] | None = None  # label k's name, where the source names it


def image_extensions() -> set[str]:
    PIL.Image.init()
    return {ext.lower() for ext in PIL.Image.registered_extensions()}


def parse_labels(text: bytes | str, where: str
                 ) -> tuple[dict[str, int] | dict[str, list[float]] | None, list[str] | None]:
    """dataset.json -> ({relative path: class or float32 vector}, class names or None); errors
    name the entry and what was expected."""
    expected = ('expected {"labels": [["path/relative.png", int], ...]} or {"labels": null}, '
                'optionally with "class_names": ["name of class 0", ...]; or label vectors '
                '{"labels": [["path/relative.png", [0.2, 0.8]], ...]}')
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DatasetError(f"{where}: not valid JSON ({e}); {expected}") from None
    if not isinstance(data, dict) or "labels" not in data:
        raise DatasetError(f"{where}: no 'labels' key; {expected}")
    names = _class_names(data.get("class_names"), where)
    if data["labels"] is None:
        return None, names
    if not isinstance(data["labels"], list):
        raise DatasetError(f"{where}: 'labels' is a {type(data['labels']).__name__}; {expected}")
    entries = data["labels"]
    vectors = bool(entries) and isinstance(entries[0], list) and len(entries[0]) == 2 \
        and isinstance(entries[0][1], list)
    if vectors and names is not None:
        raise DatasetError(f"{where}: 'class_names' names classes, but the labels are vectors")
    labels: dict = {}
    dim = len(entries[0][1]) if vectors else None
    for i, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DatasetError(f'{where}: labels[{i}] is {entry!r}; expected ["path", label]')
        if entry[0] in labels:
            raise DatasetError(f"{where}: {entry[0]!r} is labelled twice")
        if vectors:
            labels[entry[0]] = _label_vector(entry[1], dim, f"{where}: labels[{i}] "
                                             f"({entry[0]!r})")
            continue
        if not _is_int(entry[1]) or entry[1] < 0:
            raise DatasetError(
                f'{where}: labels[{i}] is {entry!r}; expected ["path", class index >= 0] like '
                'labels[0] (a file holds class indices or label vectors, not both)'
            )
        if names is not None and entry[1] >= len(names):
            raise DatasetError(f"{where}: labels[{i}] has class {entry[1]}, but class_names "
                               f"names {len(names)} classes")
        labels[entry[0]] = entry[1]
    return labels, names


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _label_vector(value, dim: int, what: str) -> list[float]:
    """A label vector of dataset.json as float32 values (Python floats, exact), checked: a
    list of `dim` (>= 1) finite numbers."""
    if not isinstance(value, list):
        raise DatasetError(f"{what} is {value!r}; expected a label vector like labels[0] "
                           f"({dim} numbers): a file holds class indices or vectors, not both")
    if not value or len(value) != dim:
        raise DatasetError(f"{what} has {len(value)} numbers; every label vector must have "
                           f"{dim} (the length of labels[0])" if dim else
                           f"{what} is an empty label vector; expected >= 1 numbers")
    bad = [x for x in value
           if not isinstance(x, numbers.Real) or isinstance(x, bool) or not math.isfinite(x)]
    if bad:
        raise DatasetError(f"{what} holds {bad[0]!r}; label vectors hold finite numbers")
    with np.errstate(over="ignore"):  # an overflow becomes inf, refused below
        out = np.asarray(value, np.float64).astype(np.float32)
    if not np.isfinite(out).all():
        raise DatasetError(f"{what}: {value!r} overflows float32; label vectors hold finite "
                           "float32 numbers")
    return out.tolist()


def _class_names(names, where: str) -> list[str] | None:
    if names is None:
        return None
    if (not isinstance(names, list) or not names
            or not all(isinstance(n, str) and n.strip() for n in names)):
        raise DatasetError(f"{where}: 'class_names' is {names!r}; expected a list of "
                           "non-empty strings, one per class")
    if len(set(names)) != len(names):
        raise DatasetError(f"{where}: 'class_names' repeats a name: {names!r}")
    return names


def folder_labels(names: list[str], where: str) -> tuple[dict[str, int], list[str]]:
    """Labels from each image's first sub-folder (`names`: '/'-separated relative paths):
    ({path: class}, sorted folder names). An image outside every sub-folder is an error."""
    loose = [n for n in names if "/" not in n]
    if loose:
        raise DatasetError(f"{where}: --labels folders takes the class from each image's "
                           f"sub-folder, but {len(loose)} images lie at the top, e.g. "
                           f"{loose[:3]}")
    classes = sorted({n.split("/", 1)[0] for n in names})
    index = {c: k for k, c in enumerate(classes)}
    return {n: index[n.split("/", 1)[0]] for n in names}, classes


def _read_file(path: Path) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadImage(f"unreadable ({e.strerror or e})") from None
    return decode_image(data)


def _labelled(images: list[Input], ignored: list[str], json_text: bytes | None,
              json_where: str, root: str, rule: str) -> Listing:
    """The listing with the labels `rule` asks for: auto (dataset.json where present),
    folders (each image's first sub-folder) or none."""
    if rule not in LABEL_RULES:
        raise DatasetError(f"--labels must be one of {', '.join(LABEL_RULES)}, got {rule!r}")
    labels, names, where, num_classes = None, None, json_where, None
    if rule == "folders":
        where = f"{root} (class sub-folders)"
        labels, names = folder_labels([i.name for i in images], where)
        num_classes = len(names)
    elif rule == "auto" and json_text is not None:
        labels, names = parse_labels(json_text, json_where)
        if names is not None:
            num_classes = len(names)
    return Listing(iter(images), len(images), ignored, labels, where, num_classes, names)


def list_folder(root: Path, labels: str = "auto") -> Listing:
    """Every file under root, recursively, in sorted order of its '/'-separated path."""
    exts = image_extensions()
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    json_text, images, ignored = None, [], []
    for rel, path in files:
        if rel == LABELS_FILE:
            json_text = path.read_bytes()
        elif path.suffix.lower() in exts:
            images.append(Input(rel, str(path), lambda p=path: _read_file(p)))
        else:
            ignored.append(rel)
    return _labelled(images, ignored, json_text, str(root / LABELS_FILE), str(root), labels)


def list_zip(path: Path, labels: str = "auto") -> Listing:
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
    json_text, images, ignored = None, [], []
    for name in members:
        if name == LABELS_FILE:
            with lock:
                json_text = archive.read(name)
        elif Path(name).suffix.lower() in exts:
            images.append(Input(name, f"{path}:{name}", lambda m=name: load(m)))
        else:
            ignored.append(name)
    return _labelled(images, ignored, json_text, f"{path}:{LABELS_FILE}", str(path), labels)


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
    names = list(builder.info.features[label_key].names) if label_key else None
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

    return Listing(inputs(), total, [], None, "", num_classes if label_key else None, names)


def open_source(
    source: str,
    *,
    split: str = "train",
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_key: str = "image",
    label_key: str | None = None,
    labels: str = "auto",
) -> Listing:
    """A folder, a .zip file, or 'tfds:NAME[/CONFIG][:VERSION]'; `labels` (folders and zips):
    auto (dataset.json where present), folders (class sub-folders) or none."""
    if source.startswith("tfds:"):
        if labels == "folders":
            raise DatasetError("--labels folders is for image folders and zips; a TFDS source "
                               "takes its labels from --label-key")
        return list_tfds(source[5:], split, data_dir, manual_dir, image_key, label_key)
    path = Path(source)
    if path.is_dir():
        return list_folder(path, labels)
    if path.is_file() and path.suffix.lower() == ".zip":
        return list_zip(path, labels)
    if path.exists():
        raise DatasetError(f"{source}: not a folder, a .zip file or tfds:NAME")
    raise DatasetError(f"{source}: no such file or folder")
