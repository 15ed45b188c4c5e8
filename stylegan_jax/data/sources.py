"""Where images come from: the bundled faces, the dataset tool's shards, or any TFDS dataset.

``SourceConfig`` describes a source in a config; ``open_indexed`` gives random access to the
two sources that allow it (bundled, tfrecord), ``tfds_builder`` / ``tfds_image_stream`` stream
a TFDS split through tf.data. Only the TFDS functions import tensorflow, lazily, and keep it
off every GPU.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

from stylegan_jax.data import images as image_ops
from stylegan_jax.data import tf_runtime
from stylegan_jax.data.shards import DatasetError, ShardedImages, read_manifest
from stylegan_jax.shapes import ImageShape

KINDS = ("bundled", "tfrecord", "tfds")
BUNDLED_RESOLUTION = 32
BUNDLED_CHANNELS = 1
BUNDLED_FACES = 100  # lfw_subset(): crops 0..99 are faces, 100..199 are not
BUNDLED_CLASS_NAMES = ("face", "non-face")  # the labelled bundled source's labels 0 and 1
# How each source resizes, as the scores computed on its images record it.
BUNDLED_RESIZE = "Pillow bicubic up from the 25x25 crops (box when smaller)"
TFDS_RESIZE = "centre crop, tf.image.resize area (down) or bicubic (up)"
TFDS_TRANSFORMS = ("center-crop", "pad-to-ratio")  # the dataset tool's, as tf.data ops


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """A data source as a config names it; unused fields stay None.

    kind: 'bundled' (scikit-image's 100 LFW face crops, no download), 'tfrecord' (a directory
    written by ``stylegan-jax dataset``) or 'tfds' (any TFDS image dataset).
    labels: bundled only: serve all 200 crops of ``lfw_subset()`` labelled 0 (face) and 1
    (non-face), for conditional training. A bool, not label_key: label_key names a TFDS
    feature, and the bundled crops have none; tfrecord labels come from the manifest.
    path: the tfrecord directory. name / split / data_dir / manual_dir: the TFDS dataset
    ('celeb_a', 'celeb_a_hq/1024', 'lfw'), e.g. split 'train' or 'train[:90%]'.
    image_key / label_key: TFDS feature names; label_key must be a ClassLabel (or None).
    resolution / channels: bundled and tfds output (defaults 32 and 1 for bundled, channels 3
    for tfds); a tfrecord dataset takes them from its manifest and checks them if given.
    aspect / transform: bundled and tfds: (height, width) multiples of resolution (shapes.py;
    W x H images) and how an image reaches that ratio, as the dataset tool's --transform:
    'center-crop' (the largest centred crop) or 'pad-to-ratio' (black bands).
    shuffle_buffer: tfds only, examples held by the tf.data shuffle after the file shuffle.
    """

    kind: str = "bundled"
    path: str | None = None
    name: str | None = None
    split: str = "train"
    data_dir: str | None = None
    manual_dir: str | None = None
    image_key: str = "image"
    label_key: str | None = None
    resolution: int | None = None
    channels: int | None = None
    shuffle_buffer: int = 4096
    labels: bool = False
    aspect: tuple[int, int] = (1, 1)
    transform: str = "center-crop"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"source kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "tfrecord" and not self.path:
            raise ValueError("source kind 'tfrecord' needs path (the dataset tool's --dest)")
        if self.kind == "tfds" and not self.name:
            raise ValueError("source kind 'tfds' needs name, e.g. 'celeb_a' or 'lfw'")
        if self.kind == "tfds" and self.resolution is None:
            raise ValueError("source kind 'tfds' needs resolution (images are resized to it)")
        if self.resolution is not None:
            image_ops.check_resolution(self.resolution, "source resolution")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"source channels must be 1 or 3, got {self.channels}")
        if self.labels not in (False, True):
            raise ValueError(f"source labels must be true or false, got {self.labels!r}")
        aspect = tuple(self.aspect)
        object.__setattr__(self, "aspect", aspect)  # a list from JSON or a ConfigDict
        if aspect != (1, 1) or self.transform != "center-crop":
            if self.kind == "tfrecord":
                raise ValueError("source aspect and transform are for kinds 'bundled' and "
                                 "'tfds' (a tfrecord dataset has its shape in its manifest)")
            ImageShape.of(4, aspect)  # (1, 2^k) or (2^k, 1)
            if self.transform not in TFDS_TRANSFORMS:
                raise ValueError(f"source transform must be one of {TFDS_TRANSFORMS}, got "
                                 f"{self.transform!r}")
        if self.labels and self.kind != "bundled":
            raise ValueError(
                f"source labels=True is for kind 'bundled', not {self.kind!r} (tfrecord labels "
                "come from the dataset's manifest, tfds labels from label_key)"
            )

    @classmethod
    def from_dict(cls, d: Any) -> SourceConfig:
        """From a dict or ConfigDict; unknown keys are an error, not silently dropped."""
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown source fields {sorted(unknown)}")
        return cls(**d)


def source_from_config(data) -> dict[str, Any]:
    """A training config's `data` section -> the source dict the data pipeline takes
    (`SourceConfig.from_dict`)."""
    if data.source == "tfrecord":
        return dict(kind="tfrecord", path=data.path)
    if data.source == "bundled":
        source = dict(kind="bundled", resolution=data.resolution, channels=data.channels)
        if data.use_labels:
            source["labels"] = True
    elif data.source == "tfds":
        source = dict(kind="tfds", name=data.path, split=data.split,
                      data_dir=data.data_dir or None, manual_dir=data.manual_dir or None,
                      resolution=data.resolution, channels=data.channels,
                      label_key="label" if data.use_labels else None)
    else:
        raise ValueError(
            f"config.data.source={data.source!r}: expected bundled, tfrecord or tfds")
    # Configs written before rectangles have neither field.
    aspect = tuple(getattr(data, "aspect", None) or (1, 1))
    if aspect != (1, 1):
        source["aspect"] = aspect
    if getattr(data, "transform", None):
        source["transform"] = data.transform
    return source


@functools.lru_cache(maxsize=8)
def _bundled(resolution: int, channels: int, aspect: tuple[int, int] = (1, 1),
             transform: str = "center-crop") -> np.ndarray:
    """All 200 crops of lfw_subset() (100 faces, then 100 non-faces), read-only uint8
    [200, R * aspect[0], R * aspect[1], C]."""
    # Function-level: scikit-image is heavy and only the bundled faces need it.
    import skimage.data

    # lfw_subset(): 25x25 grayscale floats in [0, 1].
    crops = np.rint(np.clip(skimage.data.lfw_subset(), 0, 1) * 255).astype(np.uint8)
    # The square crops go to the side the ratio keeps (the longer one for a centre crop, the
    # shorter for bands), then to the ratio as the dataset tool's --transform takes them.
    side = resolution * (max(aspect) if transform == "center-crop" else 1)
    filt = "bicubic" if side > crops.shape[1] else "box"
    out = np.stack([image_ops.transform_image(image_ops.resize(f[..., None], side, side, filt),
                                              resolution, transform, aspect=aspect)
                    for f in crops])
    out = image_ops.to_channels(out, channels) if channels == 3 else out
    out.setflags(write=False)
    return out


def _check_bundled(resolution: int, channels: int) -> None:
    image_ops.check_resolution(resolution)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")


def bundled_faces(
    resolution: int = BUNDLED_RESOLUTION, channels: int = BUNDLED_CHANNELS,
    aspect: tuple[int, int] = (1, 1), transform: str = "center-crop",
) -> np.ndarray:
    """The 100 LFW face crops scikit-image ships, as read-only uint8 [100, R, R, C].

    The crops are 25x25 grayscale: 32 is the nearest power of two that keeps every pixel
    (bicubic upsampling; box filter when smaller), and 1 channel keeps what the data has
    (channels=3 repeats the plane for an RGB model). `aspect` and `transform` make W x H
    images as the dataset tool's --transform (center-crop or pad-to-ratio) would.
    """
    _check_bundled(resolution, channels)
    return _bundled(resolution, channels, tuple(aspect), transform)[:BUNDLED_FACES]


def bundled_labelled(
    resolution: int = BUNDLED_RESOLUTION, channels: int = BUNDLED_CHANNELS,
    aspect: tuple[int, int] = (1, 1), transform: str = "center-crop",
) -> tuple[np.ndarray, np.ndarray]:
    """All 200 crops of ``lfw_subset()`` and their labels: (read-only uint8 [200, R, R, C],
    int32 [200]), label 0 (face) for crops 0..99 and 1 (non-face) for 100..199; see
    ``BUNDLED_CLASS_NAMES``. The first 100 images are ``bundled_faces``'s."""
    _check_bundled(resolution, channels)
    images = _bundled(resolution, channels, tuple(aspect), transform)
    labels = (np.arange(len(images)) >= BUNDLED_FACES).astype(np.int32)
    labels.setflags(write=False)
    return images, labels


class ArrayImages:
    """Random access to images held in memory, the same interface as ShardedImages."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.count, h, w, self.channels = array.shape
        self.resolution = min(h, w)  # the shorter side, as ShardedImages

    def read(
        self, indices: np.ndarray, flips: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        out = np.take(self.array, np.asarray(indices, np.int64), axis=0, out=out)
        if flips is not None and np.any(flips):
            out[flips] = out[flips, :, ::-1]
        return out


@dataclasses.dataclass
class IndexedSource:
    """A source with random access: count images, labels aligned with them: class indices
    (int32 [count], `num_classes` classes) or label vectors (float32 [count, dim], the
    generator's c as they are; num_classes 0)."""

    count: int
    resolution: int
    channels: int
    labels: np.ndarray | None  # int32 [count], float32 [count, dim] or None
    num_classes: int
    levels: tuple[int, ...]  # resolutions stored (or computed) without further work
    images_at: Any  # resolution -> object with .read(indices, flips)
    class_names: tuple[str, ...] | None = None  # label k's name, where the source knows it
    aspect: tuple[int, int] = (1, 1)  # (height, width) multiples of `resolution` (shapes.py)
    resize_filter: str | None = None  # the dataset tool's (its manifest), None: unknown

    @property
    def vector_labels(self) -> bool:
        return self.labels is not None and self.labels.ndim == 2

    @property
    def label_dim(self) -> int:
        """The c_dim a conditional generator takes: the classes, or the vectors' length."""
        return int(self.labels.shape[1]) if self.vector_labels else self.num_classes


def open_indexed(source: SourceConfig) -> IndexedSource:
    """Opens a bundled or tfrecord source for random access."""
    if source.kind == "bundled":
        res, channels = source.resolution or BUNDLED_RESOLUTION, source.channels or BUNDLED_CHANNELS
        shape = dict(aspect=source.aspect, transform=source.transform)
        if source.labels:
            faces, labels = bundled_labelled(res, channels, **shape)
        else:
            faces, labels = bundled_faces(res, channels, **shape), None
        return IndexedSource(
            count=len(faces),
            resolution=res,
            channels=faces.shape[-1],
            labels=labels,
            num_classes=len(BUNDLED_CLASS_NAMES) if source.labels else 0,
            levels=(res,),
            images_at=lambda r: ArrayImages(faces),
            class_names=BUNDLED_CLASS_NAMES if source.labels else None,
            aspect=source.aspect,
        )
    if source.kind != "tfrecord":
        raise ValueError(f"source kind {source.kind!r} has no random access")
    root = Path(source.path)
    manifest = read_manifest(root)
    for field in ("resolution", "channels"):
        want = getattr(source, field)
        if want is not None and want != manifest[field]:
            raise DatasetError(
                f"{root}: the dataset has {field} {manifest[field]}, the config asks for {want}"
            )
    labels = manifest.get("labels")
    levels = manifest["levels"]

    aspect = tuple(manifest["aspect"])

    def images_at(r: int) -> ShardedImages:
        return ShardedImages(root, levels[str(r)], r, manifest["channels"], aspect=aspect)

    return IndexedSource(
        count=int(manifest["count"]),
        resolution=int(manifest["resolution"]),
        channels=int(manifest["channels"]),
        labels=None if labels is None else np.asarray(
            labels, np.float32 if manifest["label_kind"] == "vector" else np.int32),
        num_classes=int(manifest.get("num_classes", 0)),
        levels=tuple(sorted(int(k) for k in levels)),
        images_at=images_at,
        class_names=None if manifest.get("class_names") is None else tuple(
            manifest["class_names"]),
        aspect=aspect,
        resize_filter=manifest.get("resize_filter"),
    )


def tfds_builder(name: str, data_dir: str | None = None, manual_dir: str | None = None):
    """A prepared TFDS builder; prepares it (from manual_dir for manual datasets) if needed.

    Preparing downloads what the dataset's builder downloads; on several hosts prepare once
    beforehand (or convert with the dataset tool) instead of racing.
    """
    tf_runtime.import_tensorflow()
    # Function-level: tensorflow_datasets imports tensorflow (heavy; absent on GPU hosts).
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises several types for unknown names and configs
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(f"TFDS dataset {name!r}: {first} (see tfds.list_builders())") from None
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=config)
    return builder


def tfds_features(builder, image_key: str, label_key: str | None) -> int:
    """Checks the image and label features; returns the number of classes (0: no labels)."""
    # Function-level: tensorflow_datasets imports tensorflow (heavy; absent on GPU hosts).
    import tensorflow_datasets as tfds

    features = builder.info.features
    if image_key not in features or not isinstance(features[image_key], tfds.features.Image):
        raise DatasetError(
            f"TFDS dataset {builder.name!r}: no image feature {image_key!r} "
            f"(features: {sorted(features.keys())})"
        )
    if label_key is None:
        return 0
    if label_key not in features or not isinstance(features[label_key], tfds.features.ClassLabel):
        raise DatasetError(
            f"TFDS dataset {builder.name!r}: {label_key!r} is not a ClassLabel feature "
            f"(features: {sorted(features.keys())})"
        )
    return int(features[label_key].num_classes)


def tfds_num_files(builder, split: str) -> int:
    """Files behind a (sub)split; 0 when TFDS cannot tell (e.g. under mock_data)."""
    try:
        return len(builder.info.splits[split].file_instructions)
    except Exception:  # noqa: BLE001 - unknown means: share by records
        return 0


def tfds_encoded(
    builder,
    split: str,
    image_key: str,
    label_key: str | None,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    shuffle_files: bool = True,
):
    """tf.data of (encoded image bytes, int32 label): this process's share of the split.

    By files when the split has at least one file per process (TFDS's input_context), else
    by records (every process reads the same seeded file order and keeps every P-th record).
    """
    tf = tf_runtime.import_tensorflow()
    # Function-level: tensorflow_datasets imports tensorflow (heavy; absent on GPU hosts).
    import tensorflow_datasets as tfds

    by_files = process_count > 1 and tfds_num_files(builder, split) >= process_count
    context = None
    if by_files:
        context = tf.distribute.InputContext(process_count, process_index, 1)
    read_config = tfds.ReadConfig(
        shuffle_seed=seed,
        shuffle_reshuffle_each_iteration=False,
        input_context=context,
        try_autocache=False,
    )
    ds = builder.as_dataset(
        split=split,
        shuffle_files=shuffle_files,
        read_config=read_config,
        decoders={image_key: tfds.decode.SkipDecoding()},
    )
    if process_count > 1 and not by_files:
        ds = ds.shard(process_count, process_index)

    def pick(ex):
        label = tf.cast(ex[label_key], tf.int32) if label_key else tf.constant(0, tf.int32)
        return ex[image_key], label

    return ds.map(pick)


def tfds_decode_fn(resolution: int, channels: int, aspect: tuple[int, int] = (1, 1),
                   transform: str = "center-crop"):
    """tf function: encoded image -> uint8 [R * aspect[0], R * aspect[1], C] (shapes.py),
    brought to the target's ratio as the dataset tool's --transform (centre crop, or black
    bands for pad-to-ratio), then area-resized.

    Area resizing is the box filter when shrinking; smaller images are upsampled bicubically.
    """
    tf = tf_runtime.import_tensorflow()
    th, tw = resolution * aspect[0], resolution * aspect[1]
    if transform not in TFDS_TRANSFORMS:
        raise ValueError(f"source transform must be one of {TFDS_TRANSFORMS}, got {transform!r}")

    def decode(encoded, label):
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        wider = w * th >= h * tw  # than the target: crop columns, or pad rows
        if transform == "center-crop":
            ch = tf.where(wider, h, w * th // tw)
            cw = tf.where(wider, h * tw // th, w)
            image = tf.image.crop_to_bounding_box(image, (h - ch) // 2, (w - cw) // 2, ch, cw)
        else:
            ch = tf.maximum(tf.where(wider, w * th // tw, h), h)
            cw = tf.maximum(tf.where(wider, w, h * tw // th), w)
            image = tf.image.pad_to_bounding_box(image, (ch - h) // 2, (cw - w) // 2, ch, cw)
        size = [th, tw]
        image = tf.cond(
            ch >= th,
            lambda: tf.image.resize(image, size, method="area"),
            lambda: tf.image.resize(image, size, method="bicubic"),
        )
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return tf.ensure_shape(image, [th, tw, channels]), label

    return decode
