"""Image encoding for responses: PNG exactly as `images.save_image` writes it (same PIL
modes and defaults, so a served PNG has the bytes of `generate`'s file, alpha included), or
JPEG (RGBA composited over black: JPEG has no alpha)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from stylegan_jax import images

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}
JPEG_QUALITY = 95  # and no chroma subsampling: small images lose too much colour to 4:2:0


def encode(image: np.ndarray, fmt: str) -> bytes:
    """One [H, W, C] uint8 image (C = 1, 3 or 4) as `fmt` ('png' or 'jpeg')."""
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"format must be one of {sorted(MEDIA_TYPES)}, got {fmt!r}")
    if fmt == "jpeg":
        image = images.over_black(image)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[image.shape[-1]]
    pil = Image.fromarray(image[..., 0] if mode == "L" else image, mode)
    buf = io.BytesIO()
    if fmt == "png":
        pil.save(buf, format="PNG")
    else:
        pil.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()
