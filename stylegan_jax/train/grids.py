"""The run's image grids under workdir/samples (process 0): the reals, and G EMA's fakes
for the fixed seeds 0..n-1, as the official snapshots. A conditional run's grids hold one
class per row (as the official `setup_snapshot_image_grid`), named in a strip on the left; a
run on label vectors holds one of the data's vectors per row (the first distinct ones of the
data's seeded order), written in the strip and, in full, to samples/grid_labels.json."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stylegan_jax import images
from stylegan_jax.augment import augment
from stylegan_jax.models.sampling import latents_for_seeds, synthesize
from stylegan_jax.train.inputs import conditioning
from stylegan_jax.train.labels import format_vector

LABELS_FILE = "grid_labels.json"  # a vector-labelled run's row vectors, under samples/


class Grids:
    """Renders and writes the grids. They are not essential: the first failed write warns,
    later ones are silent, and training goes on."""

    def __init__(self, samples: Path, z_dim: int, c_dim: int, seeds: int,
                 log: Callable[[str], None], class_names: tuple[str, ...] = (),
                 label_vectors: np.ndarray | None = None):
        """label_vectors: a vector-labelled run's candidates for the rows, float32 [K, c_dim]
        (`inputs.grid_label_vectors`): row r takes vector r % K."""
        self.samples, self.log, self.failed = samples, log, False
        self.n = max(1, seeds)
        self.rows, self.cols = images.grid_shape(self.n)
        self.c_dim, self.class_names = c_dim, tuple(class_names)
        self.row_vectors = None
        if label_vectors is not None:
            label_vectors = np.asarray(label_vectors, np.float32)
            if label_vectors.ndim != 2 or label_vectors.shape[1] != c_dim or not len(
                    label_vectors):
                raise ValueError(f"grid label vectors must be [K >= 1, {c_dim}], got shape "
                                 f"{label_vectors.shape}")
            self.row_vectors = label_vectors[np.arange(self.rows) % len(label_vectors)]
        self._labels_written = False
        self.z = jnp.asarray(latents_for_seeds(list(range(self.n)), z_dim))
        self.c = jnp.asarray(conditioning(self.row_classes()[np.arange(self.n) // self.cols],
                                          c_dim))

    def row_classes(self) -> np.ndarray:
        """The label of each grid row: classes 0, 1, ..., c_dim - 1, 0, ... (all 0:
        unconditional), or a vector-labelled run's row vectors [rows, c_dim]."""
        if self.row_vectors is not None:
            return self.row_vectors
        return np.arange(self.rows) % max(self.c_dim, 1)

    def row_names(self) -> list[str] | None:
        """Each row's label as its strip shows it (None: no strip)."""
        if self.row_vectors is not None:
            return [format_vector(v) for v in self.row_vectors]
        if self.class_names:
            return [self.class_names[k] for k in self.row_classes()]
        return None

    def grid(self, imgs: np.ndarray) -> np.ndarray:
        """The grid image of n uint8 images; with class names or label vectors, each row's
        on its left."""
        grid = images.make_grid(imgs, self.cols)
        names = self.row_names()
        if names is None:
            return grid
        return np.concatenate([name_strip(names, imgs.shape[1], imgs.shape[-1]), grid], 1)

    def fakes(self, G) -> np.ndarray:
        """G's (a registry.Network) images for the fixed seeds, uint8 NHWC."""
        fakes = _grid_program(G.module)(G.variables, self.z, self.c, G.lod)
        return images.to_uint8(np.asarray(fakes))

    @staticmethod
    def augmented(reals: np.ndarray, pipe, p: float, seed: int) -> np.ndarray:
        """uint8 reals through the ADA pipe at strength p (draws from PRNGKey(seed))."""
        x = jnp.asarray(reals, jnp.float32) / 127.5 - 1.0
        out = _augment_program(pipe)(x, jnp.float32(p), jax.random.PRNGKey(seed))
        return images.to_uint8(np.asarray(out))

    def save(self, grid: np.ndarray, name: str) -> None:
        path = self.samples / name
        try:
            path.parent.mkdir(exist_ok=True)
            images.save_image(grid, path)
            if self.row_vectors is not None and not self._labels_written:
                rows = [{"row": r, "label": v.tolist()} for r, v in enumerate(self.row_vectors)]
                (self.samples / LABELS_FILE).write_text(json.dumps(rows, indent=1) + "\n")
                self._labels_written = True
        except OSError as e:
            if not self.failed:
                self.log(f"warning: cannot write the image grid {path} ({e}); training goes "
                         "on (later grid failures are not reported)")
            self.failed = True


@functools.cache
def _augment_program(pipe):
    return jax.jit(lambda x, p, key: augment(x, p, pipe, key))


@functools.cache
def _grid_program(G):
    return jax.jit(lambda v, z, c, lod: synthesize(G, v, z, c, jax.random.PRNGKey(0), lod))


def name_strip(names: list[str], row_height: int, channels: int) -> np.ndarray:
    """uint8 [len(names) * row_height, W, channels]: each name in white on black, at the
    height of its grid row (PIL's built-in font: no font file needed)."""
    font = ImageFont.load_default()
    width = max(int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(n, font=font))
                for n in names) + 8
    strip = Image.new("L", (width, len(names) * row_height), 0)
    draw = ImageDraw.Draw(strip)
    for r, name in enumerate(names):
        draw.text((4, r * row_height + row_height // 2), name, fill=255, font=font, anchor="lm")
    out = np.repeat(np.asarray(strip)[..., None], channels, axis=-1)
    if channels == 4:
        out[..., 3] = 255  # an opaque strip on an RGBA grid
    return out
