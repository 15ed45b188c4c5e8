"""Real images for the metrics CLI without tensorflow: an image folder or an .npz array.

A folder is read recursively (PNG / JPEG, sorted by relative path as NVIDIA's
dataset tool does), with optional labels from its `dataset.json`
(`{"labels": [[relative path, class or vector], ...]}`). An `.npz` holds `images`
(uint8 NHWC or NCHW) and optionally `labels` ([N] classes or [N, c_dim]). Each
process reads items `process_index::process_count`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class ImageSource:
    path: Path
    count: int
    labels: np.ndarray | None  # [N, c_dim] float32
    _files: list[Path] | None = None
    _array: np.ndarray | None = None

    @property
    def key(self) -> str:
        """Identifies the data for the statistics cache: path, size and content summary."""
        h = hashlib.md5(str(self.path.resolve()).encode())
        if self._files is not None:
            for f in self._files:
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            st = self.path.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        return f"{self.path.stem}-{self.count}-{h.hexdigest()[:12]}"

    @property
    def identity(self) -> dict:
        """The data as a score records it (metrics.provenance): its pixels are used as they
        are, so no resize filter of ours applies (whatever made them is not known here)."""
        kind = "folder" if self._files is not None else "npz"
        return dict(source=str(self.path.resolve()), kind=kind, key=self.key, count=self.count,
                    resize_filter=None)

    def _load(self, i: int) -> np.ndarray:
        if self._array is not None:
            return self._array[i]
        with Image.open(self._files[i]) as img:
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            x = np.asarray(img, np.uint8)
        return x[:, :, None] if x.ndim == 2 else x

    def batches(self, batch_size: int, process_index: int | None = None,
                process_count: int | None = None) -> Iterator[np.ndarray]:
        """uint8 [b, H, W, C] batches of this process's items."""
        index = jax.process_index() if process_index is None else process_index
        count = jax.process_count() if process_count is None else process_count
        items = list(range(index, self.count, count))
        shape = None
        for start in range(0, len(items), batch_size):
            batch = [self._load(i) for i in items[start : start + batch_size]]
            for i, x in zip(items[start : start + batch_size], batch, strict=True):
                shape = shape or x.shape
                if x.shape != shape:
                    raise ValueError(f"{self.path}: item {i} has shape {x.shape}, "
                                     f"the first {shape}; all images must have one size")
            yield np.stack(batch)

    def label_fn(self, c_dim: int):
        """Draws labels as the official metrics do (those of uniformly random items)."""
        if c_dim == 0:
            return None
        if self.labels is None:
            raise ValueError(f"{self.path}: the generator is conditional (c_dim={c_dim}) but "
                             "the data has no labels (dataset.json / npz 'labels')")
        if self.labels.shape[1] != c_dim:
            raise ValueError(f"{self.path}: labels have {self.labels.shape[1]} dims, "
                             f"the generator expects {c_dim}")
        labels = self.labels
        return lambda rng, n: labels[rng.integers(0, len(labels), n)]


def _as_matrix(raw, n: int, where: str) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim == 1:  # class indices -> one-hot
        if not np.issubdtype(raw.dtype, np.integer) or raw.min() < 0:
            raise ValueError(f"{where}: class labels must be non-negative integers")
        out = np.zeros((n, int(raw.max()) + 1), np.float32)
        out[np.arange(n), raw] = 1
        return out
    if raw.ndim != 2 or raw.shape[0] != n:
        raise ValueError(f"{where}: labels must be [N] classes or [N, c_dim], got {raw.shape}")
    return raw.astype(np.float32)


def open_images(path: str | Path) -> ImageSource:
    """An ImageSource for a folder of PNG/JPEG files or an `.npz` of uint8 images."""
    path = Path(path)
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda p: p.relative_to(path).as_posix())
        if not files:
            raise ValueError(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} images in this folder")
        labels = None
        meta = path / "dataset.json"
        if meta.is_file():
            entries = json.loads(meta.read_text()).get("labels")
            if entries:
                by_name = dict(entries)
                try:
                    raw = [by_name[f.relative_to(path).as_posix()] for f in files]
                except KeyError as e:
                    raise ValueError(f"{meta}: no label for {e.args[0]}") from None
                labels = _as_matrix(raw, len(files), str(meta))
        return ImageSource(path, len(files), labels, _files=files)
    if path.suffix == ".npz" and path.is_file():
        with np.load(path) as f:
            if "images" not in f.files:
                raise ValueError(f"{path}: expected an 'images' array, found {f.files}")
            images = f["images"]
            raw_labels = f["labels"] if "labels" in f.files else None
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"{path}: 'images' must be uint8 [N, H, W, C], got "
                             f"{images.dtype} {images.shape}")
        if images.shape[-1] not in (1, 3) and images.shape[1] in (1, 3):
            images = np.transpose(images, (0, 2, 3, 1))  # NCHW -> NHWC
        labels = None if raw_labels is None else _as_matrix(raw_labels, len(images), str(path))
        return ImageSource(path, len(images), labels, _array=images)
    raise FileNotFoundError(f"{path}: expected a folder of images or an .npz file")
