"""Uploaded images, read and decoded in memory with limits checked before each cost is paid.

The body is refused from its Content-Length when that is too large, and counted while it
streams in, so a missing or lying length cannot pass the byte limit either. Only PNG, JPEG,
WebP and GIF (its first frame) are opened: PIL's other parsers never see an upload. The
pixel count is read from the header and checked before a pixel is decoded, so a small file
that declares a huge image (a decompression bomb) costs nothing; the limit stays below PIL's
own bomb limit. PIL's parsers may raise any kind of exception on hostile bytes: each is a
400 naming the format, never a 500. Nothing is written to
disk: the bytes live in memory and are decoded from a `BytesIO`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import PIL.Image
import PIL.ImageOps
from starlette.requests import ClientDisconnect, Request

MAX_BYTES = 8 * 2**20
MAX_PIXELS = 16 * 2**20  # 4096 x 4096
FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # PIL's names
# Signatures of formats that are refused, so the message can say what the file seems to be.
_KNOWN = ((b"BM", "BMP"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"<svg", "SVG"),
          (b"<?xml", "XML (SVG?)"), (b"%PDF", "PDF"), (b"\0\0\0\x0cjP", "JPEG 2000"),
          (b"\0\0\1\0", "ICO"), (b"8BPS", "Photoshop"), (b"\x76\x2f\x31\x01", "OpenEXR"))


class BadUpload(ValueError):
    """An upload that cannot be used: `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def allowed(max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> str:
    return (f"a PNG, JPEG, WebP or GIF image (first frame) as the request body, at most "
            f"{_size(max_bytes)} and {max_pixels / 2**20:g} Mpx")


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def check_length(request: Request, max_bytes: int = MAX_BYTES) -> None:
    """Refuses from the headers alone: a declared length above the limit, or a bad one."""
    length = request.headers.get("content-length")
    if length is None:
        return
    if not length.isdigit():
        raise BadUpload(400, f"body: Content-Length {length!r} is not a byte count")
    if int(length) > max_bytes:
        raise BadUpload(413, f"body: {int(length)} bytes declared; the limit is "
                        f"{_size(max_bytes)}")


async def read_body(request: Request, max_bytes: int = MAX_BYTES) -> bytes:
    """The whole body, counted as it arrives: refused once it passes `max_bytes`."""
    check_length(request, max_bytes)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise BadUpload(413, f"body: more than {_size(max_bytes)} sent; the limit is "
                                f"{_size(max_bytes)}")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadUpload(400, "body: the client left before sending all of it") from None
    if not size:
        raise BadUpload(400, "body: empty; send the image file's bytes as the request body")
    return b"".join(chunks)


@dataclass(frozen=True)
class Upload:
    image: np.ndarray  # uint8 [H, W, C], C = 1 or 3, upright (EXIF orientation applied)
    format: str  # PIL's name: PNG, JPEG, WEBP, GIF
    width: int  # as stored, before the orientation
    height: int


def _what(data: bytes) -> str:
    for magic, name in _KNOWN:
        if data.lstrip()[: len(magic)] == magic:
            return f" (it looks like {name})"
    return ""


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> Upload:
    """uint8 pixels of an uploaded file, or BadUpload naming what is wrong with it."""
    if max_pixels > PIL.Image.MAX_IMAGE_PIXELS:  # PIL would warn first: keep ours the lower
        raise ValueError(f"max_pixels {max_pixels} is above PIL's bomb limit "
                         f"{PIL.Image.MAX_IMAGE_PIXELS}")
    try:
        im = PIL.Image.open(io.BytesIO(data), formats=FORMATS)
    except PIL.UnidentifiedImageError:
        kind = _guess(data)
        if kind:  # its signature, but no image PIL can read behind it
            raise BadUpload(400, f"body: corrupt or truncated {kind} image") from None
        raise BadUpload(415, "body: not a PNG, JPEG, WebP or GIF image" + _what(data)) from None
    except PIL.Image.DecompressionBombError as e:
        raise BadUpload(413, f"body: refused as a decompression bomb ({e})") from None
    except Exception as e:  # PIL's parsers raise many kinds on hostile bytes: all 400
        raise BadUpload(400, f"body: corrupt image header ({type(e).__name__}: {e})") from None
    with im:
        fmt, (width, height) = im.format, im.size
        if width * height > max_pixels:
            raise BadUpload(413, f"body: a {width}x{height} {fmt} image "
                            f"({width * height / 2**20:.1f} Mpx); the limit is "
                            f"{max_pixels / 2**20:g} Mpx")
        if width < 1 or height < 1:
            raise BadUpload(400, f"body: a {width}x{height} {fmt} image has no pixels")
        try:
            im.load()  # the first frame of an animated GIF / WebP
            pixels = _upright_8bit(im)
        except BadUpload:
            raise
        except Exception as e:
            raise BadUpload(400, f"body: corrupt or truncated {fmt} image "
                            f"({type(e).__name__}: {e})") from None
    return Upload(pixels, fmt, width, height)


def _guess(data: bytes) -> str:
    """The accepted format whose signature `data` starts with, else ''."""
    for magic, name in ((b"\x89PNG", "PNG"), (b"\xff\xd8", "JPEG"), (b"GIF8", "GIF"),
                        (b"RIFF", "WebP")):
        if data.startswith(magic):
            return name
    return ""


def _upright_8bit(im: PIL.Image.Image) -> np.ndarray:
    """uint8 [H, W, 1 | 3]: EXIF orientation applied (a phone's photo stands upright),
    palettes expanded, alpha composited onto white (as a page shows it), 16-bit refused."""
    im = PIL.ImageOps.exif_transpose(im)
    if im.mode.startswith("I") or im.mode == "F":
        raise BadUpload(415, f"body: {im.mode} pixels (16/32-bit); send an 8-bit image")
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = PIL.Image.alpha_composite(white, rgba).convert("RGB")
    elif im.mode not in ("L", "RGB"):
        im = im.convert("RGB")  # CMYK / YCbCr JPEGs, 1-bit
    array = np.asarray(im, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array

