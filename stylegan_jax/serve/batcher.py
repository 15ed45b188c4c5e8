"""Gathers concurrent image requests into one generator call.

A request waits in a bounded queue; one worker takes the first waiting request, then
whatever else arrives within a short window (up to the largest batch), and runs the
batch in a dedicated thread, so the event loop keeps accepting and answering while the
generator works. A full queue refuses at once (the caller answers 503) instead of
growing without bound; a request whose client has gone is dropped before it is rendered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


class Overloaded(Exception):
    """The queue is full: retry later."""


Move = tuple[float, float, float]  # (translate x, translate y, rotate degrees): StyleGAN3


@dataclass
class Job:
    seed: int
    psi: float
    class_idx: int | np.ndarray | None  # a class, or a label vector float32 [c_dim]
    move: Move
    future: asyncio.Future = field(repr=False)
    offset: np.ndarray | None = field(default=None, repr=False)  # a latent edit, or none


@dataclass
class BatchStats:
    batches: int = 0
    images: int = 0
    dropped: int = 0  # requests whose client left before their batch ran
    busy_s: float = 0.0  # time spent inside the generator


class Batcher:
    """`render(seeds, psis, classes, moves, offsets) -> uint8 [n, H, W, C]` behind an
    asyncio queue (`classes`: a class index or a label vector per request; `offsets`: a
    latent edit [num_ws, w_dim] or None per request)."""

    def __init__(self, render: Callable[[Sequence[int], Sequence[float],
                                          Sequence[int | np.ndarray | None],
                                          Sequence[Move], Sequence[np.ndarray | None]],
                                         np.ndarray],
                 max_batch: int, window_s: float = 0.005, queue_limit: int = 256):
        if max_batch < 1 or queue_limit < 1 or window_s < 0:
            raise ValueError(f"need max_batch >= 1, queue_limit >= 1, window_s >= 0; got "
                             f"{max_batch}, {queue_limit}, {window_s}")
        self._render = render
        self.max_batch, self.window_s, self.queue_limit = max_batch, window_s, queue_limit
        self.stats = BatchStats()
        self._queue: asyncio.Queue[Job] | None = None
        self._worker: asyncio.Task | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "generator")

    @property
    def depth(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    def start(self) -> None:
        self._queue = asyncio.Queue(self.queue_limit)
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Finishes every queued request, then stops the worker."""
        if self._worker is None:
            return
        await self._queue.join()
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._thread.shutdown(wait=True)
        self._worker = None

    def submit(self, seed: int, psi: float, class_idx: int | np.ndarray | None,
               move: Move = (0.0, 0.0, 0.0), offset: np.ndarray | None = None
               ) -> asyncio.Future:
        """A future of the uint8 [H, W, C] image; raises Overloaded when the queue is full."""
        if self._queue is None:
            raise RuntimeError("Batcher.start() has not run")
        job = Job(seed, psi, class_idx, move, asyncio.get_running_loop().create_future(),
                  offset)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(f"{self.queue_limit} requests already wait") from None
        return job.future

    async def _gather(self) -> list[Job]:
        jobs = [await self._queue.get()]
        deadline = time.monotonic() + self.window_s
        while len(jobs) < self.max_batch:
            try:
                jobs.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        return jobs

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            try:
                live = [j for j in jobs if not j.future.done()]
                self.stats.dropped += len(jobs) - len(live)
                if not live:
                    continue
                t0 = time.perf_counter()
                try:
                    out = await loop.run_in_executor(
                        self._thread, self._render, [j.seed for j in live],
                        [j.psi for j in live], [j.class_idx for j in live],
                        [j.move for j in live], [j.offset for j in live])
                except Exception as e:  # every waiting request gets the error, the server lives
                    for j in live:
                        if not j.future.done():
                            j.future.set_exception(e)
                    continue
                self.stats.busy_s += time.perf_counter() - t0
                self.stats.batches += 1
                self.stats.images += len(live)
                for j, img in zip(live, out, strict=True):
                    if not j.future.done():
                        j.future.set_result(img)
            finally:
                for _ in jobs:
                    self._queue.task_done()
