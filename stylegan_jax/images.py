"""Image conversion and grids: generator output (NHWC, [-1, 1]) -> uint8 PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(images, drange: tuple[float, float] = (-1.0, 1.0), xp=np) -> np.ndarray:
    """Maps `drange` to [0, 255] with rounding, as the official tools do (NHWC). `xp` is
    the array module: `jax.numpy` traces it into a program (an exported generator)."""
    lo, hi = drange
    x = (xp.asarray(images, xp.float32) - lo) * (255.0 / (hi - lo))
    return xp.clip(xp.rint(x), 0, 255).astype(xp.uint8)


def grid_shape(n: int, max_cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding n images."""
    cols = max(1, math.ceil(math.sqrt(n)))
    if max_cols:
        cols = min(cols, max_cols)
    return math.ceil(n / cols), cols


def make_grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
    """[N, H, W, C] uint8 -> one [rows*H, cols*W, C] uint8 image (blank cells are black)."""
    n, h, w, c = images.shape
    rows, cols = grid_shape(n) if cols is None else (math.ceil(n / cols), cols)
    canvas = np.zeros((rows * cols, h, w, c), images.dtype)
    canvas[:n] = images
    canvas = canvas.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4)
    return canvas.reshape(rows * h, cols * w, c)


def over_black(image: np.ndarray) -> np.ndarray:
    """uint8 [..., 4] RGBA -> [..., 3] RGB composited over black (for formats without alpha:
    JPEG, H.264), rounded to the nearest level; other images unchanged."""
    if image.shape[-1] != 4:
        return image
    alpha = image[..., 3:].astype(np.float32) / 255
    return np.rint(image[..., :3] * alpha).astype(np.uint8)


def save_image(image: np.ndarray, path: str | Path) -> Path:
    """Saves one [H, W, C] uint8 image (C = 1, 3, or 4: RGBA, alpha kept) as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(image.shape[-1])
    if mode is None:
        raise ValueError(f"{path}: an image needs 1, 3 or 4 channels, got {image.shape[-1]}")
    Image.fromarray(image[..., 0] if mode == "L" else image, mode).save(path)
    return path
