"""The server's generator from an exported artifact (`stylegan-jax export`, StableHLO or
SavedModel): no Flax module is built and no network is read, only the artifact's program
runs.

The artifact takes one ψ and one noise seed per call, so a batch runs as one call per ψ
it holds (one in the usual case), and in the random noise mode each image is its own call
with noise_seed = its seed, which draws the noise `serve` draws for that seed. A
StyleGAN3 artifact carries its input transform baked in: it cannot be moved, and with z as
its only input it cannot be edited in w either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stylegan_jax.export import formats, program
from stylegan_jax.serve.engine import BucketEngine
from stylegan_jax.serve.render import Spec

SERVABLE = ("stablehlo", "savedmodel")


class ExportedEngine(BucketEngine):
    def __init__(self, path: str | Path, max_batch: int = 32):
        super().__init__(max_batch)
        path = Path(path)
        m, self._call = formats.open_artifact(path, SERVABLE)
        if m["input"] != "z":
            raise ValueError(f"{path}: exported with --input {m['input']}; serve needs an "
                             "artifact taking z (export with --input z)")
        self.manifest = m
        res = m["resolution"]  # manifests written before rectangles are square
        aspect = (m.get("height", res) // res, m.get("width", res) // res)
        self.spec = Spec(m["family"], res, m["channels"], m["z_dim"], m["c_dim"],
                         truncates=m["truncation"], moves=False, aspect=aspect,
                         class_names=tuple(m.get("class_names", ())),
                         vector_labels=m.get("label_kind") == "vector")
        self.noise_mode = m["noise_mode"]

    def _kwargs(self, z, c, psi, seed) -> dict:
        return program.arguments(self.manifest["inputs"], z, c, psi, seed)

    def _compile(self, b: int):
        """The artifact's call, after one run at batch `b` (which compiles that shape)."""
        z, c, psis, seeds, _, _ = self._example(b)
        self._call(**self._kwargs(z, c, psis[0], seeds[0]))
        return self._call

    def _groups(self, psis, seeds) -> list[np.ndarray]:
        """Indices that share one call: one ψ (and one seed in the random noise mode)."""
        keys = list(zip(psis, seeds, strict=True)) if self.noise_mode == "random" else list(psis)
        order: dict = {}
        for i, k in enumerate(keys):
            order.setdefault(k, []).append(i)
        return [np.asarray(ix) for ix in order.values()]

    def _run(self, b: int, args) -> np.ndarray:
        z, c, psis, seeds, _, _ = args
        s = self.spec
        out = np.empty((b, s.height, s.width, s.channels), np.uint8)
        for ix in self._groups(psis, seeds):
            size = self.bucket(len(ix))  # every bucket ran once in warm_up
            pad = np.concatenate([ix, np.repeat(ix[:1], size - len(ix))])
            images = self._compiled[size](**self._kwargs(z[pad], c[pad], psis[ix[0]],
                                                          seeds[ix[0]]))
            out[ix] = images[: len(ix)]
        return out

    def raw_call(self, b: int):
        """A zero-argument call of bucket `b`'s program, for timing the bare generator."""
        z, c, psis, seeds, _, _ = self._example(b)
        kwargs = self._kwargs(z, c, psis[0], seeds[0])
        return lambda: self._compiled[b](**kwargs)
