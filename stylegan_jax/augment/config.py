"""The ADA pipe's settings: every official `AugmentPipe` argument, and the named pipes.

Each operation has a probability multiplier (0 = off, 1 = applied with probability p)
and its own range or standard deviation; the defaults are the official ones.

Channel layouts: 1 (L), 3 (RGB) and 4 (RGBA). Colour operations and additive noise act on
the colour channels only (the first 1 or 3); alpha is part of the image's geometry and
content, so it moves with the image (the same resampling), is filtered and is cut out with
it, but keeps its values under colour operations and noise. The official pipe knows L and
RGB only; on the colour channels of RGBA images this pipe is the official RGB pipe, with the
same draws.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

# Operation multipliers per group, in the order the official pipe runs them.
BLIT_OPS = ("xflip", "rotate90", "xint")
GEOM_OPS = ("scale", "rotate", "aniso", "xfrac")
COLOR_OPS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
# Number of colour channels of each supported layout (L, RGB, RGBA).
COLOR_CHANNELS = {1: 1, 3: 3, 4: 3}


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Official AugmentPipe arguments (stylegan2-ada-pytorch training/augment.py)."""

    # Pixel blitting.
    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0
    xint_max: float = 0.125  # integer translation range, relative to the image size
    # General geometric transformations.
    scale: float = 0.0
    rotate: float = 0.0
    aniso: float = 0.0
    xfrac: float = 0.0
    scale_std: float = 0.2  # log2 standard deviation of isotropic scaling
    rotate_max: float = 1.0  # rotation range, 1 = full circle
    aniso_std: float = 0.2  # log2 standard deviation of anisotropic scaling
    xfrac_std: float = 0.125  # fractional translation std, relative to the image size
    # Color transformations.
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    brightness_std: float = 0.2
    contrast_std: float = 0.5  # log2
    hue_max: float = 1.0  # 1 = full circle
    saturation_std: float = 1.0  # log2
    # Image-space filtering.
    imgfilter: float = 0.0
    imgfilter_bands: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    imgfilter_std: float = 1.0  # log2 standard deviation of the band amplification
    # Image-space corruptions.
    noise: float = 0.0
    cutout: float = 0.0
    noise_std: float = 0.1
    cutout_size: float = 0.5  # side of the cutout square, relative to the image size

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "imgfilter_bands":
                bands = tuple(float(b) for b in value)
                if len(bands) != 4 or any(not math.isfinite(b) or b < 0 for b in bands):
                    raise ValueError(
                        f"augment imgfilter_bands: {list(value)} must be 4 finite numbers >= 0 "
                        "(one probability multiplier per frequency band)")
                object.__setattr__(self, field.name, bands)
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"augment {field.name}: {value!r} is not a number") from None
            if not math.isfinite(number) or number < 0:
                raise ValueError(f"augment {field.name}: {value!r} must be finite and >= 0")
            object.__setattr__(self, field.name, number)

    @property
    def any_geometric(self) -> bool:
        return any(getattr(self, n) > 0 for n in BLIT_OPS + GEOM_OPS)

    @property
    def any_color(self) -> bool:
        return any(getattr(self, n) > 0 for n in COLOR_OPS)

    def check_channels(self, channels: int) -> None:
        """Colour operations and noise need a known layout; the others take any channels.

        Geometry, filtering and cutout treat every channel alike (as the official pipe),
        but which channels are colour is only known for L, RGB and RGBA.
        """
        needs_layout = [n for n in COLOR_OPS + ("noise",) if getattr(self, n) > 0]
        if needs_layout and channels not in COLOR_CHANNELS:
            raise ValueError(
                f"augment {needs_layout[0]}: needs images with 1 (L), 3 (RGB) or 4 (RGBA) "
                f"channels, got {channels} channels")

    def replace(self, **changes: Any) -> AugmentConfig:
        return make_config(dataclasses.asdict(self) | changes)


_ALL = BLIT_OPS + GEOM_OPS + COLOR_OPS + ("imgfilter", "noise", "cutout")
# The official named pipes (train.py --augpipe): each enables its operations at 1.
PIPES: dict[str, tuple[str, ...]] = {
    "blit": BLIT_OPS,
    "geom": GEOM_OPS,
    "color": COLOR_OPS,
    "filter": ("imgfilter",),
    "noise": ("noise",),
    "cutout": ("cutout",),
    "bg": BLIT_OPS + GEOM_OPS,
    "bgc": BLIT_OPS + GEOM_OPS + COLOR_OPS,
    "bgcf": _ALL[:-2],
    "bgcfn": _ALL[:-1],
    "bgcfnc": _ALL,
}


def make_config(kwargs: Mapping[str, Any]) -> AugmentConfig:
    """AugmentConfig from official AugmentPipe keyword arguments; unknown names raise."""
    known = {f.name for f in dataclasses.fields(AugmentConfig)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"augment: unknown argument(s) {unknown}; known: {sorted(known)}")
    return AugmentConfig(**kwargs)


def named_pipe(name: str, **overrides: Any) -> AugmentConfig:
    """The official pipe `name` (blit, geom, ..., bgcfnc), with optional argument overrides."""
    if name not in PIPES:
        raise ValueError(f"augment pipe {name!r} is not one of {sorted(PIPES)}")
    return make_config({op: 1.0 for op in PIPES[name]} | dict(overrides))
