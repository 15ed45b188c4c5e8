"""Image shapes beyond the square: `W x H` with a power-of-two ratio.

A network for a rectangle is the square network of its shorter side R (`img_resolution`)
whose every feature map is stretched by `aspect` = (height multiple, width multiple), one of
them 1 and the other a power of two: 512x256 (W x H) is R = 256, aspect (1, 2), a 4x8
constant and blocks b4 (4x8) ... b256 (256x512). Square images are aspect (1, 1): the
official networks, unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def _power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


@dataclass(frozen=True)
class ImageShape:
    height: int
    width: int

    def __post_init__(self):
        h, w = self.height, self.width
        if not (isinstance(h, int) and isinstance(w, int) and _power_of_two(h)
                and _power_of_two(w)):
            raise ValueError(f"image size {w}x{h} (W x H): both sides must be powers of two")
        if min(h, w) < 4:
            raise ValueError(f"image size {w}x{h} (W x H): the shorter side must be >= 4")

    @property
    def resolution(self) -> int:
        """The shorter side: the square network's resolution (`img_resolution`)."""
        return min(self.height, self.width)

    @property
    def aspect(self) -> tuple[int, int]:
        """(height multiple, width multiple) of the shorter side: (1, 1) for a square."""
        r = self.resolution
        return self.height // r, self.width // r

    @property
    def square(self) -> bool:
        return self.height == self.width

    def at(self, resolution: int) -> tuple[int, int]:
        """(height, width) of a feature map whose shorter side is `resolution`."""
        ah, aw = self.aspect
        return resolution * ah, resolution * aw

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    @classmethod
    def of(cls, resolution: int, aspect: tuple[int, int] = (1, 1)) -> ImageShape:
        ah, aw = (int(a) for a in aspect)
        if min(ah, aw) != 1 or not _power_of_two(max(ah, aw)):
            raise ValueError(f"aspect must be (1, 2^k) or (2^k, 1) (height, width multiples), "
                             f"got {tuple(aspect)!r}")
        return cls(resolution * ah, resolution * aw)


def check_aspect(aspect, field: str = "img_aspect") -> tuple[int, int]:
    """A network's (height, width) multiples of the shorter side: (1, 1), (1, 2^k) or (2^k, 1);
    ValueError naming `field` otherwise (bools and floats included)."""
    if (isinstance(aspect, tuple | list) and len(aspect) == 2
            and all(isinstance(a, int) and not isinstance(a, bool) for a in aspect)):
        try:
            return ImageShape.of(4, aspect).aspect
        except ValueError:
            pass
    raise ValueError(f"{field} must be (height, width) multiples (1, 1), (1, 2^k) or (2^k, 1), "
                     f"got {aspect!r}")


def require_square(resolution: int, aspect, what: str, formats: str) -> None:
    """ValueError for a W x H network: `formats` (an official pickle format) hold square
    networks only. `what` names the network, e.g. "'G_ema'"."""
    ah, aw = check_aspect(aspect)
    if (ah, aw) != (1, 1):
        raise ValueError(f"{what} is a {ImageShape.of(resolution, (ah, aw))} (W x H) network "
                         f"(img_aspect={(ah, aw)}): {formats} hold square networks only; keep "
                         "it as a stylegan_jax network directory")


def parse_size(value, what: str = "resolution") -> ImageShape:
    """An int R (R x R) or 'WxH' text (e.g. '512x256': 512 wide, 256 high) -> ImageShape;
    the error names `what`, the value and what is allowed."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: got {value!r}, expected a power of two or 'WxH'")
    if isinstance(value, int):
        w = h = value
    else:
        text = str(value)
        if text.strip().isdigit():
            w = h = int(text)
        else:
            m = _SIZE.match(text)
            if not m:
                raise ValueError(f"{what}: got {value!r}, expected a power of two (e.g. 256) or "
                                 "WxH with power-of-two sides (e.g. 512x256)")
            w, h = int(m.group(1)), int(m.group(2))
    try:
        return ImageShape(h, w)
    except ValueError as e:
        raise ValueError(f"{what}: got {value!r}: {e}") from None


def data_shape(data) -> ImageShape:
    """The image shape of a config's `data` section: `resolution` (the shorter side) and
    `aspect` (absent in configs written before rectangles: square)."""
    aspect = data.get("aspect", None) or (1, 1)
    return ImageShape.of(int(data.resolution), tuple(aspect))
