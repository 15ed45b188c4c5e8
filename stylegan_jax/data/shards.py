"""On-disk format of the dataset tool: TFRecord shards of raw pixels and a JSON manifest.

A dataset directory holds::

    manifest.json               written last: its presence marks a finished dataset
    r256/shard-00000.tfrecord   one tf.train.Example per image, in dataset order:
    r128/shard-00000.tfrecord   {'image': bytes_list[raw uint8 HWC pixels]} (optional levels)

Raw pixels make "decoding" a memcpy, which is what lets two cores feed eight accelerators.
Every record of one level has the same length, so record i of a shard starts at
i * record_bytes: the pipeline reads any image by offset through a memory map, needs no
tensorflow, and resumes anywhere at no cost. Labels (aligned with the record order) live in
the manifest because a label feature would make the records vary in length: ``label_kind``
'class' (``labels`` are class indices, ``num_classes``, optional ``class_names``) or 'vector'
(``labels`` are lists of ``label_dim`` float32 values, the generator's c as they are). Any TFRecord
reader still parses the shards::

    spec = {'image': tf.io.FixedLenFeature([], tf.string)}
    ds = tf.data.TFRecordDataset(files).map(
        lambda r: tf.io.decode_raw(tf.io.parse_single_example(r, spec)['image'], tf.uint8))
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from stylegan_jax.data import tf_runtime

FORMAT = "stylegan_jax.shards/1"
MANIFEST = "manifest.json"
FEATURE = b"image"
_FRAME_HEADER = 12  # uint64 length + uint32 masked CRC of the length
_FRAME_FOOTER = 4  # uint32 masked CRC of the data


class DatasetError(ValueError):
    """A dataset (or a source of one) cannot be used; the message names the file and why."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, length: int) -> bytes:
    """Tag and length of a length-delimited protobuf field."""
    return bytes([number << 3 | 2]) + _varint(length)


def example_prefix(payload_len: int) -> bytes:
    """Serialized tf.train.Example{'image': bytes_list[payload]} up to the payload bytes.

    Example.features(1) > Features.feature(1, map entry: key(1), value(2)) >
    Feature.bytes_list(1) > BytesList.value(1); the payload is the last thing in the message.
    """
    n = payload_len
    bytes_list = _field(1, n)
    feature = _field(1, len(bytes_list) + n) + bytes_list
    entry = _field(1, len(FEATURE)) + FEATURE
    entry += _field(2, len(feature) + n) + feature
    features = _field(1, len(entry) + n) + entry
    return _field(1, len(features) + n) + features


def record_layout(resolution: int, channels: int, aspect: tuple[int, int] = (1, 1)
                  ) -> tuple[int, int, int]:
    """(record_bytes, payload offset, payload bytes) of one image's TFRecord frame."""
    payload = resolution * aspect[0] * resolution * aspect[1] * channels
    prefix = len(example_prefix(payload))
    return _FRAME_HEADER + prefix + payload + _FRAME_FOOTER, _FRAME_HEADER + prefix, payload


def level_dir(resolution: int) -> str:
    return f"r{resolution}"


class LevelWriter:
    """Appends images of one resolution (the shorter side; `aspect` stretches it) to shards
    of at most max_shard_bytes each."""

    def __init__(self, root: Path, resolution: int, channels: int, max_shard_bytes: int,
                 aspect: tuple[int, int] = (1, 1)):
        self.root, self.resolution, self.channels = Path(root), resolution, channels
        self.shape = (resolution * aspect[0], resolution * aspect[1], channels)
        self.record_bytes, _, self._payload = record_layout(resolution, channels, aspect)
        self._prefix = example_prefix(self._payload)
        self._per_shard = max(1, max_shard_bytes // self.record_bytes)
        self._shards: list[dict[str, Any]] = []
        self._writer = None
        (self.root / level_dir(resolution)).mkdir(parents=True, exist_ok=True)

    def write(self, image: np.ndarray) -> None:
        shape = self.shape
        if image.shape != shape or image.dtype != np.uint8:
            raise ValueError(f"expected uint8 {shape}, got {image.dtype} {image.shape}")
        if self._writer is None or self._shards[-1]["count"] == self._per_shard:
            self._open_next()
        with self._writing():
            self._writer.write(self._prefix + image.tobytes())
        self._shards[-1]["count"] += 1

    def _open_next(self) -> None:
        tf = tf_runtime.import_tensorflow()
        self._close_writer()
        name = f"{level_dir(self.resolution)}/shard-{len(self._shards):05d}.tfrecord"
        self._shards.append({"file": name, "count": 0})
        with self._writing():
            self._writer = tf.io.TFRecordWriter(str(self.root / name))

    def _close_writer(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with self._writing():
                writer.close()

    @contextlib.contextmanager
    def _writing(self):
        """A full disk, an I/O error or a permission error (OSError, or TensorFlow's
        OpError from its writer) becomes a DatasetError naming the shard."""
        failure = None
        try:
            yield
        except OSError as e:
            failure = e
        except Exception as e:
            if not isinstance(e, tf_runtime.import_tensorflow().errors.OpError):
                raise
            failure = e
        if failure is not None:
            shard = self.root / self._shards[-1]["file"]
            raise DatasetError(f"{shard}: cannot write ({failure})") from None

    def close(self) -> dict[str, Any]:
        """Flushes the last shard; returns this level's manifest entry."""
        self._close_writer()
        return {"record_bytes": self.record_bytes, "shards": self._shards}


class ShardedImages:
    """Random access to one level of a tool-written dataset: one pread per image.

    pread copies straight into the batch (kernel copy, no page-table churn of a memory map),
    scattering the record's header into a buffer that is checked against the first record's.
    """

    def __init__(
        self, root: Path, level: dict[str, Any], resolution: int, channels: int, max_open: int = 64,
        aspect: tuple[int, int] = (1, 1),
    ):
        self._fds: dict[int, int] = {}  # shard -> open descriptor, least recently used first
        self.resolution, self.channels = resolution, channels
        self.height, self.width = resolution * aspect[0], resolution * aspect[1]
        self.record_bytes, self._offset, self._payload = record_layout(resolution, channels,
                                                                       aspect)
        if level.get("record_bytes") != self.record_bytes:
            raise DatasetError(
                f"{root / MANIFEST}: level {resolution} has record_bytes "
                f"{level.get('record_bytes')}, expected {self.record_bytes}"
            )
        self._files, counts = [], []
        for shard in level["shards"]:
            path, count = root / shard["file"], int(shard["count"])
            size = path.stat().st_size if path.is_file() else None
            if size != count * self.record_bytes:
                first_bad = 0 if size is None else min(size // self.record_bytes, count)
                raise DatasetError(
                    f"{path}: {'missing' if size is None else f'{size} bytes'}, expected "
                    f"{count} records of {self.record_bytes} bytes (truncated or replaced?"
                    + (f" record {first_bad} onwards is missing)" if first_bad < count else ")")
                )
            self._files.append(path)
            counts.append(count)
        self._ends = np.cumsum(counts, dtype=np.int64)
        self._starts = self._ends - np.asarray(counts, np.int64)
        self.count = int(self._ends[-1]) if counts else 0
        self._max_open = max_open
        self._header = np.zeros(self._offset, np.uint8)
        self._scratch = np.empty((self.height, self.width, channels), np.uint8)
        if self.count:
            head = np.empty(self._offset, np.uint8)
            os.preadv(self._fd(0), [head], 0)
            length = struct.pack("<Q", self._offset - _FRAME_HEADER + self._payload)
            if head[:8].tobytes() != length or head[12:].tobytes() != example_prefix(self._payload):
                raise DatasetError(f"{self._files[0]}: record 0 is not a raw-pixel image record")
            self._header = head  # length, its CRC and the Example prefix: equal in every record

    def _fd(self, shard: int) -> int:
        fd = self._fds.pop(shard, None)
        if fd is None:
            if len(self._fds) >= self._max_open:
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = os.open(self._files[shard], os.O_RDONLY)
        self._fds[shard] = fd
        return fd

    def read(
        self, indices: np.ndarray, flips: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Images at dataset indices as uint8 [n, H, W, C] (into `out` if given), mirrored
        where flips is True."""
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.count):
            raise IndexError(f"indices outside [0, {self.count})")
        shards = np.searchsorted(self._ends, indices, side="right")
        rows = indices - self._starts[shards]
        shape = (len(indices), self.height, self.width, self.channels)
        if out is None:
            out = np.empty(shape, np.uint8)
        elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous uint8 {shape}")
        pixel = np.dtype((np.void, self.channels))  # mirror whole pixels in one strided copy
        head = np.empty_like(self._header)
        for i, (shard, row) in enumerate(zip(shards.tolist(), rows.tolist(), strict=True)):
            flip = flips is not None and flips[i]
            target = self._scratch if flip else out[i]
            got = os.preadv(self._fd(shard), [head, target], row * self.record_bytes)
            if got != self._offset + self._payload:
                raise DatasetError(
                    f"{self._files[shard]}: record {row} is truncated (read {got} of "
                    f"{self._offset + self._payload} bytes; dataset index {indices[i]})")
            if not np.array_equal(head, self._header):
                raise DatasetError(f"{self._files[shard]}: record {row} is corrupt (bad header;"
                                   f" dataset index {indices[i]})")
            if flip:
                out[i].view(pixel)[..., 0] = target.view(pixel)[:, ::-1, 0]
        return out

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])

    def __del__(self):
        self.close()


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    try:
        with open(Path(root) / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise DatasetError(f"{Path(root) / MANIFEST}: cannot write ({e})") from None


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Loads and checks a dataset's manifest; errors name the file and the problem.

    ``resize_filter`` (the Pillow filter the tool resized with) is always present: manifests
    written before the field existed give the ``filter`` their command line recorded in
    ``args``, or None (unknown: written through the Python API).
    """
    if "://" in str(path):
        raise DatasetError(
            f"{path}: datasets are read through memory maps; copy it to a "
            "local or mounted file system"
        )
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise DatasetError(
            f"{path}: no {MANIFEST}, so not a finished dataset; create one "
            "with `stylegan-jax dataset --source ... --dest ...`"
        )
    try:
        manifest = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{file}: unreadable ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetError(f"{file}: format is not {FORMAT!r}")
    for key in ("count", "resolution", "channels", "levels"):
        if key not in manifest:
            raise DatasetError(f"{file}: missing field {key!r}")
    labels = manifest.get("labels")
    if labels is not None and len(labels) != manifest["count"]:
        raise DatasetError(f"{file}: {len(labels)} labels for {manifest['count']} images")
    _check_label_kind(manifest, file)
    names = manifest.get("class_names")
    if names is not None and (not isinstance(names, list)
                              or len(names) != manifest.get("num_classes", 0)
                              or not all(isinstance(n, str) for n in names)):
        raise DatasetError(f"{file}: field 'class_names' must list {manifest.get('num_classes')}"
                           f" names (one per class), got {names!r}")
    aspect = manifest.setdefault("aspect", [1, 1])  # written before rectangles: square
    if (not isinstance(aspect, list) or len(aspect) != 2 or min(aspect) != 1
            or not all(isinstance(a, int) and a >= 1 and a & (a - 1) == 0 for a in aspect)):
        raise DatasetError(f"{file}: field 'aspect' must be [height, width] multiples, one 1 "
                           f"and the other a power of two, got {aspect!r}")
    if "resize_filter" not in manifest:
        args = manifest.get("args")
        manifest["resize_filter"] = args.get("filter") if isinstance(args, dict) else None
    if manifest["resize_filter"] is not None and not isinstance(manifest["resize_filter"], str):
        raise DatasetError(
            f"{file}: field 'resize_filter' must be a filter name, got "
            f"{manifest['resize_filter']!r}"
        )
    return manifest


def _check_label_kind(manifest: dict[str, Any], file: Path) -> None:
    """Sets ``label_kind`` and ``label_dim`` where a manifest written before label vectors
    lacks them (its labels are classes); checks that vector labels are `label_dim` finite
    numbers each."""
    labels = manifest.get("labels")
    kind = manifest.setdefault("label_kind", None if labels is None else "class")
    if kind not in ((None,) if labels is None else ("class", "vector")):
        raise DatasetError(f"{file}: field 'label_kind' is {kind!r}, expected "
                           + ("null (no labels)" if labels is None else "'class' or 'vector'"))
    dim = manifest.setdefault("label_dim", manifest.get("num_classes", 0) if kind == "class"
                              else 0)
    if kind != "vector":
        return
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise DatasetError(f"{file}: field 'label_dim' must be an int >= 1, got {dim!r}")
    try:
        values = np.asarray(labels, np.float64)
        good = values.shape == (len(labels), dim) and bool(np.isfinite(values).all())
    except (TypeError, ValueError):  # ragged, or not numbers
        good = False
    if good:
        return
    for i, label in enumerate(labels):  # name the first bad one
        if (not isinstance(label, list) or len(label) != dim
                or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in label)
                or not np.isfinite(label).all()):
            raise DatasetError(f"{file}: labels[{i}] is {label!r}; expected a vector of "
                               f"{dim} finite numbers (label_dim)")
