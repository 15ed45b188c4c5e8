"""The generator behind the server: one compiled program per batch bucket, all compiled at
start-up, so nothing compiles while serving (a batch of 5 runs in the bucket of 8)."""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence

import jax
import numpy as np

from stylegan_jax import images
from stylegan_jax.generate import Condition, conditioning
from stylegan_jax.models.registry import Network
from stylegan_jax.models.sampling import latents_for_seeds, stylegan3_transform
from stylegan_jax.serve.batcher import Move
from stylegan_jax.serve.render import Spec, make_render, spec, ws_shape


def default_buckets(max_batch: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to `max_batch` (included even when not a power of two)."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    out = [1]
    while out[-1] * 2 < max_batch:
        out.append(out[-1] * 2)
    if out[-1] != max_batch:
        out.append(max_batch)
    return tuple(out)


STILL: Move = (0.0, 0.0, 0.0)


class BucketEngine(abc.ABC):
    """Renders batches of (seed, ψ, class or label vector, move, w offset) as uint8 NHWC images
    with one compiled program per bucket (c is data: float32 [N, c_dim] either way). Not
    thread-safe: one caller at a time (the batcher's generator thread). Subclasses say how a
    bucket compiles and how a padded batch runs."""

    spec: Spec
    noise_mode: str
    ws_shape: tuple[int, int] = (0, 0)  # (num_ws, w_dim) of the ws an edit offsets, if any

    def __init__(self, max_batch: int):
        self.buckets = default_buckets(max_batch)
        self._compiled: dict[int, object] = {}

    @property
    def max_batch(self) -> int:
        return self.buckets[-1]

    def _inputs(self, seeds: Sequence[int], psis: Sequence[float],
                classes: Sequence[Condition], moves: Sequence[Move] | None = None,
                offsets: Sequence[np.ndarray | None] | None = None):
        s = self.spec
        z = latents_for_seeds(list(seeds), s.z_dim)
        c = np.concatenate([conditioning(k, s.c_dim, 1) for k in classes])
        transforms = np.stack([stylegan3_transform((tx, ty), deg)
                               for tx, ty, deg in moves or [STILL] * len(seeds)])
        w_offsets = np.zeros((len(seeds), *self.ws_shape), np.float32)
        for i, offset in enumerate(offsets or []):
            if offset is not None:
                if not w_offsets.size:  # `params` refuses such an edit before it comes here
                    raise ValueError(f"a {s.family} network served as it is here has no ws "
                                     "to edit")
                w_offsets[i] = offset
        return (z, c, np.asarray(psis, np.float32), np.asarray(seeds, np.uint32),
                transforms, w_offsets)

    def _example(self, b: int):
        cls = 0 if self.spec.c_dim else None
        return self._inputs(list(range(b)), [1.0] * b, [cls] * b)

    @abc.abstractmethod
    def _compile(self, b: int):
        """Bucket `b`'s compiled program."""

    @abc.abstractmethod
    def _run(self, b: int, args) -> np.ndarray:
        """uint8 images of bucket `b`'s program on `_inputs(...)` of b samples."""

    def warm_up(self) -> float:
        """Compiles (or reads from the compilation cache) and runs every bucket; seconds."""
        t0 = time.perf_counter()
        for b in self.buckets:
            self._compiled[b] = self._compile(b)
            self._run(b, self._example(b))
        return time.perf_counter() - t0

    def bucket(self, n: int) -> int:
        for b in self.buckets:
            if b >= n:
                return b
        raise ValueError(f"batch of {n} is above the largest bucket {self.max_batch}")

    def __call__(self, seeds: Sequence[int], psis: Sequence[float],
                 classes: Sequence[Condition], moves: Sequence[Move] | None = None,
                 offsets: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        """uint8 [len(seeds), H, W, C]; the batch is padded with copies of its first item.
        `classes`: a class index or a label vector (float32 [c_dim]) per image, as
        `generate.conditioning` takes them.
        `moves` (default: none) translate and rotate StyleGAN3 images as `generate
        --translate X,Y --rotate DEG` does; `offsets` (default: none) are latent edits,
        float32 [num_ws, w_dim] or None each, added to the truncated ws."""
        if not self._compiled:
            raise RuntimeError("warm_up() has not run")
        n = len(seeds)
        pad = self.bucket(n) - n
        moves = moves or [STILL] * n
        offsets = offsets or [None] * n
        seeds, psis, classes, moves, offsets = (
            [*x] + [x[0]] * pad for x in (seeds, psis, classes, moves, offsets))
        return self._run(n + pad, self._inputs(seeds, psis, classes, moves, offsets))[:n]


class Engine(BucketEngine):
    """The generator of a Network, rendered by `serve.render`."""

    def __init__(self, net: Network, noise_mode: str = "const", max_batch: int = 32,
                 class_names: tuple[str, ...] | None = None, label_kind: str | None = None):
        super().__init__(max_batch)
        self.spec, self.ws_shape = spec(net, class_names, label_kind), ws_shape(net)
        self.noise_mode = noise_mode
        self._render = jax.jit(make_render(net, noise_mode))
        self._variables = jax.device_put(net.variables)

    def _compile(self, b: int):
        return self._render.lower(self._variables, *self._example(b)).compile()

    def _run(self, b: int, args) -> np.ndarray:
        out = self._compiled[b](self._variables, *args)
        return images.to_uint8(np.asarray(out))  # sliced by the caller: no new program

    def raw_call(self, b: int):
        """A zero-argument call of bucket `b`'s program, for timing the bare generator."""
        args = jax.device_put(self._example(b))
        return lambda: self._compiled[b](self._variables, *args)
