"""Attribution requests ("is this face real?") behind their own worker and their own limit.

A projection takes seconds to minutes where an image takes milliseconds, so projections
never share the generator's thread or queue: they run one at a time on a worker thread of
their own, and at most `limit` uploads are in the server at once (being read, decoded,
waiting or projected); one more is refused at once (503 with Retry-After) instead of
waiting without bound. Image requests are answered meanwhile.

Before the first answer the worker compiles the projection (a one-step run) and, when no
threshold was given, calibrates one on the network's own images (`attribution`'s
self-calibration rule on their projection distances); both are queued at start-up, so every
request waits behind them and none answers without a threshold. Stopping the server stops
the worker after the projection (or compilation) under way: the calibration is projected
one image at a time so that a server stopped during it exits within one projection, not
after all of them. (A daemon thread would not have to be waited for, but one killed inside
XLA at exit aborts the process.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stylegan_jax.serve.batcher import Overloaded
from stylegan_jax.tools.attribution import self_threshold_of, verdict


class Projector(Protocol):
    """What the queue runs: projections of uint8 targets [H, W, C] at the generator's size."""

    distance_name: str
    steps: int

    def warm_up(self) -> None:
        """Compiles what `project` runs."""

    def project(self, target: np.ndarray) -> float:
        """The distance between `target` and its projection."""

    def own_images(self) -> np.ndarray:
        """uint8 [N, H, W, C]: the network's own images, for self-calibration."""


@dataclass(frozen=True)
class Threshold:
    value: float | None  # None: self-calibration runs on the worker before the first answer
    source: str  # what a client is told it came from


@dataclass
class AttributionStats:
    projections: int = 0
    busy_s: float = 0.0  # seconds inside projections (preparation excluded)
    refused: int = 0  # uploads refused because `limit` were already in
    prepare_s: float = 0.0  # warm-up and calibration


class AttributionQueue:
    def __init__(self, projector: Projector, threshold: Threshold, limit: int = 4):
        if limit < 1:
            raise ValueError(f"--attribute-queue must be >= 1 (0 turns attribution off), "
                             f"got {limit}")
        self.projector, self.limit = projector, limit
        self._threshold = threshold.value
        self.threshold_source = threshold.source
        self.stats = AttributionStats()
        self.pending = 0  # admitted, not yet answered (read on the event loop only)
        self.failed: str | None = None  # why preparation failed, if it did
        self._prepared, self._stopping = threading.Event(), threading.Event()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self._prepared.is_set() and self.failed is None

    @property
    def threshold(self) -> float | None:
        return self._threshold

    def start(self) -> None:
        """Starts the worker and queues its preparation (warm-up, calibration)."""
        if self._worker is not None:
            return
        self._worker = threading.Thread(target=self._work, name="attribution")
        self._worker.start()
        self._submit(self._prepare)

    def stop(self) -> None:
        """Cancels what has not started; the worker ends after the projection under way."""
        self._stopping.set()
        self._jobs.put(None)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """One upload's place, for its whole life; Overloaded when `limit` are taken."""
        if self.pending >= self.limit:
            self.stats.refused += 1
            raise Overloaded(f"{self.limit} uploads already in (one projection at a time)")
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    def submit(self, target: np.ndarray) -> asyncio.Future:
        """A future of {distance, threshold, verdict, seconds} for one uint8 target."""
        if self._worker is None:
            raise RuntimeError("AttributionQueue.start() has not run")
        return asyncio.wrap_future(self._submit(self._one, target))

    def _submit(self, fn, *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None and not self._stopping.is_set():
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue  # its client left while it waited
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # the request gets the error, the worker lives
                future.set_exception(e)
        while job is not None or not self._jobs.empty():  # stopping: the rest will not run
            if job is not None:
                job[0].cancel()
            job = None if self._jobs.empty() else self._jobs.get()

    def _prepare(self) -> None:
        t0 = time.perf_counter()
        try:
            self.projector.warm_up()
            if self._threshold is None:
                distances = []
                for image in self.projector.own_images():
                    if self._stopping.is_set():
                        raise RuntimeError("the server stopped during self-calibration")
                    distances.append(self.projector.project(image))
                self._threshold = self_threshold_of(distances)
        except Exception as e:
            self.failed = f"{type(e).__name__}: {e}"
            raise
        finally:
            self.stats.prepare_s = time.perf_counter() - t0
            self._prepared.set()

    def _one(self, target: np.ndarray) -> dict:
        if self.failed is not None:
            raise RuntimeError(f"attribution is unavailable: its preparation failed "
                               f"({self.failed})")
        t0 = time.perf_counter()
        distance = float(self.projector.project(target))
        seconds = time.perf_counter() - t0
        self.stats.projections += 1
        self.stats.busy_s += seconds
        return {"distance": distance, "threshold": self._threshold,
                "verdict": verdict(distance, self._threshold), "seconds": seconds}
