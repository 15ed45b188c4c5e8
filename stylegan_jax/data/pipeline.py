"""This process's training batches: deterministic, resumable, and placed on the devices.

Usage in a training loop::

    pipe = make_pipeline(SourceConfig(kind="tfrecord", path="/data/ffhq256"),
                         global_batch=64, seed=0, xflip=True, position=saved_or_None)
    for batch in pipe:  # Batch(images=uint8 [64/P, R, R, C], labels=int32 [64/P])
        batch = to_global_array(batch, mesh)  # jax.Arrays sharded over the 'data' axis
        ...
        checkpoint["data_position"] = pipe.position()  # {"examples": n}

Labels are class indices (int32; all 0 when num_classes == 0); one-hot them on the device with
``jax.nn.one_hot(labels, pipe.num_classes)``. A dataset with label vectors serves them as
float32 [B, pipe.label_dim] (``pipe.vector_labels``), the generator's c as they are.
Transfers are asynchronous, so calling ``to_global_array`` before dispatching the step overlaps
the copy with the previous step.

Order, for sources with random access (bundled, tfrecord): one global stream of examples,
epoch e being ``np.random.default_rng([seed, e]).permutation(N)`` and epochs following each
other without a gap. Global batch b is stream[b*G : (b+1)*G] and process p of P takes the p-th
slice of G/P, so the processes' shares are disjoint, cover every epoch, and together equal the
one-process batch for any P. Mirroring is a hash of (seed, stream position). The position is
the number of global examples consumed, the same on every process: restoring it costs nothing
and continues exactly, even on another process count (for the same global batch).

TFDS sources stream: each process reads its share (by files when the split has a file per
process, else by records), epoch e shuffles files and a buffer with seeds drawn from (seed, e).
Restoring skips the encoded records already consumed in the current epoch (time grows with the
position in the epoch) and is exact for the same process count.

``resolution`` below the source's serves box-averaged images: the dataset tool's stored level
when there is one, else the exact box average of a stored level above (progressive growing).

Sources with random access are read by ``threads`` reader threads (default: one per core this
process may use, at most 8): reader k reads global batches k, k + threads, ... with its own
open files, and the pipeline takes them in turn (tf.data's deterministic interleave), so the
order is the same for every thread count. The reads are ``pread`` calls into the batch, which
release the GIL, so the threads read in parallel. Each thread holds up to two batches (one
queued, one being read). TFDS sources decode with tf.data's parallel map instead.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from stylegan_jax.data import sources as src
from stylegan_jax.data.images import check_resolution
from stylegan_jax.data.order import Batch, indexed_batches, tfds_batches
from stylegan_jax.data.shards import DatasetError

__all__ = [
    "Batch",
    "Pipeline",
    "default_threads",
    "make_pipeline",
    "to_global_array",
    "to_pmap_layout",
]

MAX_DEFAULT_THREADS = 8  # a cap: every reader holds batches in memory and competes for cores


class _Failure(NamedTuple):
    error: BaseException


class _Prefetcher:
    """Runs a generator in a daemon thread, `size` items ahead; re-raises its errors."""

    def __init__(self, make_iter: Callable[[], Iterator[Any]], size: int):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, size))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make_iter,), daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _run(self, make_iter):
        try:
            for item in make_iter():
                if not self._put(item):
                    return
            self._put(_Failure(StopIteration()))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._put(_Failure(e))

    def get(self):
        if self._stop.is_set():
            raise RuntimeError("the pipeline is closed")
        item = self._queue.get()
        if isinstance(item, _Failure):
            self._queue.put(item)  # every later call fails the same way
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)


class Pipeline:
    """Iterator of this process's Batch; ``position()`` is what a checkpoint saves.

    make_iters: generator factories taken in turn, one thread each (see the module docstring).
    """

    def __init__(
        self,
        make_iters: list[Callable[[], Iterator[Any]]],
        examples: int,
        *,
        resolution: int,
        channels: int,
        num_classes: int,
        count: int | None,
        local_batch: int,
        prefetch: int,
        class_names: tuple[str, ...] | None = None,
        aspect: tuple[int, int] = (1, 1),
        label_dim: int | None = None,
    ):
        self.resolution, self.channels, self.num_classes = resolution, channels, num_classes
        # c_dim of a conditional generator: num_classes, or the label vectors' length
        self.label_dim = num_classes if label_dim is None else label_dim
        self.vector_labels = self.label_dim > 0 and num_classes == 0
        self.aspect = aspect  # images are [resolution * aspect[0], resolution * aspect[1]]
        self.class_names = class_names  # label k's name where the source names it, else None
        self.count, self.local_batch, self.threads = count, local_batch, len(make_iters)
        self._examples, self._turn = examples, 0
        ahead = max(1, math.ceil(prefetch / len(make_iters)))
        self._prefetchers = [_Prefetcher(m, ahead) for m in make_iters]

    def __iter__(self) -> Pipeline:
        return self

    def __next__(self) -> Batch:
        batch, examples = self._prefetchers[self._turn].get()
        self._turn = (self._turn + 1) % len(self._prefetchers)
        self._examples = examples
        return batch

    def position(self) -> dict[str, int]:
        """{'examples': global examples consumed}: pass it back as make_pipeline(position=)."""
        return {"examples": self._examples}

    def close(self) -> None:
        for prefetcher in getattr(self, "_prefetchers", ()):
            prefetcher.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - e.g. half-constructed, or interpreter shutdown
            pass


def _serving_resolution(resolution: int | None, top: int) -> int:
    res = check_resolution(resolution or top, "resolution")
    if res > top:
        raise ValueError(f"resolution {res} exceeds the source's {top}")
    return res


def default_threads() -> int:
    """Reader threads when not set: the cores this process may use, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_DEFAULT_THREADS))


def _reader(indexed, res, seed, global_batch, process_index, local_batch, xflip, start, threads, k):
    """Reader k of `threads`: global batches k, k + threads, ... counted from `start`.

    The stream stride is threads global batches; the position after the j-th batch of reader k
    is that of global batch k + j * threads. Each call opens its own files (images_at).
    """
    batches = indexed_batches(
        indexed,
        res,
        seed,
        threads * global_batch,
        process_index,
        local_batch,
        xflip,
        start + k * global_batch,
    )

    def generate():
        for j, (batch, _) in enumerate(batches()):
            yield batch, start + (k + j * threads + 1) * global_batch

    return generate


def _check_threads(threads: int | None) -> int:
    valid = threads is None or isinstance(threads, int | np.integer)
    if isinstance(threads, bool) or not valid or (threads or 0) < 0:
        raise ValueError(f"threads must be an int >= 1 (or 0/None: default), got {threads!r}")
    return int(threads) if threads else default_threads()


def make_pipeline(
    source: src.SourceConfig | Mapping[str, Any],
    global_batch: int,
    seed: int = 0,
    xflip: bool = False,
    resolution: int | None = None,
    position: Mapping[str, int] | None = None,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    prefetch: int = 2,
    threads: int | None = None,
) -> Pipeline:
    """Batches of this process's share of `source`; see the module docstring for the order.

    global_batch: examples per step over all processes (divisible by process_count).
    resolution: serve images at this power of two <= the source's (default: the source's).
    position: a ``Pipeline.position()`` to continue from (default: the start).
    process_index / process_count default to jax's; tests pass them to simulate hosts.
    prefetch: batches read ahead of the consumer, over all threads.
    threads: reader threads of a bundled or tfrecord source (0 or None: ``default_threads()``);
    the order does not depend on it. TFDS sources decode in a tf.data pool of that many threads
    (0 or None: tf.data's AUTOTUNE).
    """
    asked, threads = threads, _check_threads(threads)
    if not isinstance(source, src.SourceConfig):
        source = src.SourceConfig.from_dict(source)
    if process_index is None or process_count is None:
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside [0, {process_count})")
    if global_batch <= 0 or global_batch % process_count:
        raise ValueError(
            f"global_batch {global_batch} must be a positive multiple of the process count "
            f"{process_count}"
        )
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    examples = 0
    if position is not None:
        examples = position.get("examples") if isinstance(position, Mapping) else None
        if isinstance(examples, np.ndarray | np.integer) and np.ndim(examples) == 0:
            examples = int(examples)
        if not isinstance(examples, int) or isinstance(examples, bool) or examples < 0:
            raise ValueError(f"position must be {{'examples': int >= 0}}, got {position!r}")
    local_batch = global_batch // process_count

    if source.kind == "tfds":
        top = source.resolution
        res = _serving_resolution(resolution, top)
        channels = source.channels or 3
        make_iter, num_classes = tfds_batches(
            source,
            res,
            channels,
            seed,
            process_index,
            process_count,
            local_batch,
            xflip,
            examples,
            asked or None,
        )
        make_iters = [make_iter]
        count, class_names, aspect, label_dim = None, None, source.aspect, num_classes
    else:
        indexed = src.open_indexed(source)
        top, channels, num_classes = indexed.resolution, indexed.channels, indexed.num_classes
        label_dim = indexed.label_dim
        class_names, aspect = indexed.class_names, indexed.aspect
        res = _serving_resolution(resolution, top)
        count = indexed.count
        if count == 0:
            raise DatasetError(f"source {source.path or source.kind!r} holds no images")
        make_iters = [
            _reader(
                indexed,
                res,
                seed,
                global_batch,
                process_index,
                local_batch,
                xflip,
                examples,
                threads,
                k,
            )
            for k in range(threads)
        ]
    return Pipeline(
        make_iters,
        examples,
        resolution=res,
        channels=channels,
        num_classes=num_classes,
        count=count,
        local_batch=local_batch,
        prefetch=prefetch,
        class_names=class_names,
        aspect=aspect,
        label_dim=label_dim,
    )


def to_global_array(local_batch: Any, mesh, axis: str = "data") -> Any:
    """Assembles every process's local batch into global jax.Arrays sharded over `axis`.

    Leaves keep their dtype (uint8 images cross to the devices at a quarter of float32's size).
    """
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )


def to_pmap_layout(local_batch: Any, local_device_count: int) -> Any:
    """Reshapes each leaf [B, ...] to [devices, B / devices, ...], the layout pmap takes."""

    def split(x):
        x = np.asarray(x)
        if x.shape[0] % local_device_count:
            raise ValueError(
                f"local batch {x.shape[0]} is not divisible by {local_device_count} devices"
            )
        return x.reshape(local_device_count, x.shape[0] // local_device_count, *x.shape[1:])

    return jax.tree.map(split, local_batch)
