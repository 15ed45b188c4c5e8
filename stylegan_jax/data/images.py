"""Image checks and transforms shared by the dataset tool, the bundled faces and the pipeline.

All images are uint8 NHWC / HWC numpy arrays with 1 (grayscale), 3 (RGB) or 4 (RGBA)
channels, of any power-of-two ratio (`shapes.py`). Nothing here imports tensorflow.
"""

from __future__ import annotations

import io

import numpy as np
import PIL.Image

TRANSFORMS = ("none", "center-crop", "center-crop-wide", "pad-to-ratio")
DEFAULT_FILTER = "lanczos"  # the official stylegan2-ada dataset_tool's default
# Pillow's filters, as the official dataset tools resize (their --resize-filter=box is behind
# the published FFHQ-256 numbers).
FILTERS = {
    "box": PIL.Image.Resampling.BOX,
    "lanczos": PIL.Image.Resampling.LANCZOS,
    "bicubic": PIL.Image.Resampling.BICUBIC,
    "bilinear": PIL.Image.Resampling.BILINEAR,
    "hamming": PIL.Image.Resampling.HAMMING,
    "nearest": PIL.Image.Resampling.NEAREST,
}

# Why each PIL mode is refused: converting them silently would invent data (alpha, colour
# profiles, bit depth), so the user decides how.
_BAD_MODES = {
    "CMYK": "CMYK colour (convert it to RGB first)",
    "YCbCr": "YCbCr colour (convert it to RGB first)",
    "LAB": "Lab colour (convert it to RGB first)",
    "HSV": "HSV colour (convert it to RGB first)",
    "RGBa": "premultiplied alpha (mode RGBa; convert it to RGBA first)",
    "La": "premultiplied alpha (mode La; convert it to LA first)",
    "PA": "a palette with alpha (mode PA; convert it to RGB first)",
    "P": "a palette (mode P; convert it to RGB or L first)",
    "1": "1-bit pixels (mode 1; convert it to L first)",
    "I": "32-bit integer pixels (mode I; convert it to 8-bit first)",
    "F": "32-bit float pixels (mode F; convert it to 8-bit first)",
}


class BadImage(ValueError):
    """One input image cannot be used; the message says why (the caller adds the file)."""


def check_resolution(resolution: int, field: str = "resolution") -> int:
    """A power of two >= 4, as every network here needs."""
    r = int(resolution)
    if r < 4 or r & (r - 1):
        raise ValueError(f"{field} must be a power of two >= 4, got {resolution}")
    return r


def decode_image(data: bytes) -> np.ndarray:
    """Decodes an encoded image file to uint8 HWC (C = 1, 3, or 4 for images with alpha:
    RGBA, and LA as RGBA) or raises BadImage."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as im:
            mode = im.mode
            # PIL reads 16-bit RGB PNGs as 8-bit RGB; the raw mode of the tile still says 16.
            rawmodes = [str(t.args if hasattr(t, "args") else t[3]) for t in (im.tile or [])]
            if mode.startswith("I;16") or any(";16" in r for r in rawmodes):
                raise BadImage(f"16-bit pixels (mode {mode}); convert it to 8-bit first")
            if mode not in ("L", "RGB", "RGBA", "LA"):
                reason = _BAD_MODES.get(mode, f"unsupported mode {mode}")
                raise BadImage(f"image has {reason}; expected 8-bit grayscale (L), RGB or RGBA")
            im.load()
            array = np.asarray(im.convert("RGBA") if mode == "LA" else im, dtype=np.uint8)
    except BadImage:
        raise
    except PIL.UnidentifiedImageError:
        raise BadImage("not an image (no image format recognises it)") from None
    except PIL.Image.DecompressionBombError as e:
        raise BadImage(f"refused as a decompression bomb: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadImage(f"corrupt or truncated image ({e})") from None
    return array[..., None] if array.ndim == 2 else array


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Converts HWC uint8 between 1, 3 and 4 channels (ITU-R 601-2 luma, as PIL's 'L'; an
    image without alpha gets an opaque one). Alpha is never dropped silently: flattening it
    onto a background is the user's choice."""
    have = image.shape[-1]
    if have == channels:
        return image
    if have == 4:
        raise BadImage(f"image has an alpha channel (RGBA); {channels} channel(s) were asked "
                       "for: flatten it onto a background first, or keep it with --channels 4")
    if channels == 4:
        rgb = image if have == 3 else np.repeat(image, 3, axis=-1)
        return np.concatenate([rgb, np.full((*image.shape[:2], 1), 255, np.uint8)], axis=-1)
    if have == 1 and channels == 3:
        return np.repeat(image, 3, axis=-1)
    if have == 3 and channels == 1:
        return np.asarray(PIL.Image.fromarray(image, "RGB").convert("L"))[..., None]
    raise BadImage(f"has {have} channels; expected 1, 3 or 4")


def box_downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Exact box average over factor x factor blocks of uint8 [..., H, W, C], rounded once.

    Equals repeated 2x2 averaging without intermediate rounding (ProGAN's levels); rint
    rounds halves to even. Sums are exact in float64 and division by a power of two is too.
    """
    if factor == 1:
        return images
    *lead, h, w, c = images.shape
    if h % factor or w % factor:
        raise ValueError(f"{h}x{w} is not divisible by the box factor {factor}")
    blocks = images.reshape(*lead, h // factor, factor, w // factor, factor, c)
    sums = blocks.sum(axis=(-4, -2), dtype=np.float64)
    return np.rint(sums / (factor * factor)).astype(np.uint8)


def resize(image: np.ndarray, width: int, height: int, filter_name: str) -> np.ndarray:
    """Resizes HWC uint8 with a named Pillow filter, exactly as ``PIL.Image.resize``.

    Always Pillow, even a box filter with integer factors: Pillow averages horizontally, then
    vertically, rounding each pass half up to uint8, so its BOX differs by 1 from the exact
    block mean (``box_downsample``) in many pixels, and the official datasets are Pillow's.
    """
    h, w, c = image.shape
    if (w, h) == (width, height):
        return image
    if filter_name not in FILTERS:
        raise ValueError(f"resize filter must be one of {sorted(FILTERS)}, got {filter_name!r}")
    if c == 4:  # Pillow resizes RGBA premultiplied: transparent pixels' colour cannot bleed
        pil = PIL.Image.fromarray(image, "RGBA")
    else:
        pil = PIL.Image.fromarray(image[..., 0] if c == 1 else image)
    out = np.asarray(pil.resize((width, height), FILTERS[filter_name]))
    return out[..., None] if out.ndim == 2 else out


def transform_image(
    image: np.ndarray,
    resolution: int,
    transform: str = "none",
    filter_name: str = DEFAULT_FILTER,
    wide_height: int | None = None,
    aspect: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """Crops or pads, and resizes HWC uint8 to the target (resolution x aspect, as
    `shapes.ImageShape.of`), as the official dataset tools do for squares.

    none: the image must already have the target's ratio. center-crop: the largest centred
    crop of the target's ratio. center-crop-wide (square targets): the centred crop of
    aspect resolution:wide_height, resized to that size and letterboxed on a black square
    (LSUN cars). pad-to-ratio: the whole image, centred on black (transparent with alpha)
    bands that bring it to the target's ratio. The tool never upscales: an image smaller
    than the target after cropping or padding is refused.
    """
    h, w, _ = image.shape
    r = resolution
    th, tw = r * aspect[0], r * aspect[1]
    if transform == "none":
        if h * tw != w * th:
            ratio = "square" if th == tw else f"{tw}:{th}"
            raise BadImage(f"image is {w}x{h}, not {ratio}; use --transform center-crop, "
                           "center-crop-wide or pad-to-ratio")
    elif transform == "center-crop":
        ch, cw = (h, h * tw // th) if w * th >= h * tw else (w * th // tw, w)
        image = image[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
    elif transform == "pad-to-ratio":
        ph, pw = (w * th // tw, w) if w * th >= h * tw else (h, h * tw // th)
        ph, pw = max(ph, h), max(pw, w)
        canvas = np.zeros((ph, pw, image.shape[2]), np.uint8)
        canvas[(ph - h) // 2 : (ph - h) // 2 + h, (pw - w) // 2 : (pw - w) // 2 + w] = image
        image = canvas
    elif transform == "center-crop-wide":
        if th != tw:
            raise ValueError(f"--transform center-crop-wide letterboxes onto a square; the "
                             f"target is {tw}x{th}: use center-crop or pad-to-ratio")
        wh = wide_height if wide_height is not None else r * 3 // 4
        if not 0 < wh <= r:
            raise ValueError(f"wide_height must be in 1..{r}, got {wh}")
        if w * wh >= h * r:  # wider than the target aspect: crop columns
            cw, ch = int(round(h * r / wh)), h
        else:
            cw, ch = w, int(round(w * wh / r))
        if cw < r:
            raise BadImage(f"image is {w}x{h}, smaller than {r}x{wh} after the wide crop")
        y, x = (h - ch) // 2, (w - cw) // 2
        content = resize(image[y : y + ch, x : x + cw], r, wh, filter_name)
        canvas = np.zeros((r, r, image.shape[2]), np.uint8)
        canvas[(r - wh) // 2 : (r - wh) // 2 + wh] = content
        return canvas
    else:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    if image.shape[0] < th:
        what = "padding" if transform == "pad-to-ratio" else "cropping"
        raise BadImage(f"image is {w}x{h}, smaller than {tw}x{th} after {what} (no upscaling)")
    return resize(np.ascontiguousarray(image), tw, th, filter_name)
