"""Image encoding for responses: PNG exactly as `images.save_image` writes it (same PIL
modes and defaults, so a served PNG has the bytes of `generate`'s file), or JPEG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}
JPEG_QUALITY = 95  # and no chroma subsampling: small images lose too much colour to 4:2:0


def encode(image: np.ndarray, fmt: str) -> bytes:
    """One [H, W, C] uint8 image (C = 1 or 3) as `fmt` ('png' or 'jpeg')."""
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"format must be one of {sorted(MEDIA_TYPES)}, got {fmt!r}")
    pil = Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else \
        Image.fromarray(image, "RGB")
    buf = io.BytesIO()
    if fmt == "png":
        pil.save(buf, format="PNG")
    else:
        pil.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()
