"""Query parameters of `/` and `/api/image`, validated into one `ImageQuery`.

Every refusal names the parameter, what was given and what is allowed, so a client (or a
person editing a URL) can fix it from the message alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from stylegan_jax.serve.codec import MEDIA_TYPES
from stylegan_jax.serve.render import Spec

SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)
PSI_RANGE = (-1.0, 2.0)  # beyond this w leaves the region the generator was trained on
PARAMETERS = ("seed", "psi", "class", "format")


class BadParameter(ValueError):
    def __init__(self, name: str, given, allowed: str):
        super().__init__(f"{name}: got {given!r}, expected {allowed}")
        self.name, self.given, self.allowed = name, given, allowed

    def as_json(self) -> dict:
        return {"error": str(self), "parameter": self.name, "allowed": self.allowed}


@dataclass(frozen=True)
class Defaults:
    psi: float = 1.0
    class_idx: int | None = None


@dataclass(frozen=True)
class ImageQuery:
    seed: int | None  # None: the server draws one
    psi: float
    class_idx: int | None
    format: str


def psi_allowed(spec: Spec) -> str:
    if not spec.truncates:
        return "1 (this network has no truncation)"
    return f"a number in [{PSI_RANGE[0]:g}, {PSI_RANGE[1]:g}]"


def class_allowed(spec: Spec) -> str:
    if not spec.c_dim:
        return "no class (this network is unconditional)"
    return f"an integer in [0, {spec.c_dim - 1}]"


def check_defaults(spec: Spec, defaults: Defaults) -> Defaults:
    """The server's own defaults (from its flags), held to the rules of a request."""
    psi = _psi(spec, str(defaults.psi), "--trunc")
    cls = defaults.class_idx
    if cls is None and spec.c_dim:
        cls = 0
    if cls is not None:
        cls = _class(spec, str(cls), "--class")
    return Defaults(psi, cls)


def parse(spec: Spec, defaults: Defaults, query: Mapping[str, str]) -> ImageQuery:
    unknown = sorted(set(query) - set(PARAMETERS))
    if unknown:
        raise BadParameter(unknown[0], query[unknown[0]],
                           f"only the parameters {', '.join(PARAMETERS)}")
    seed = query.get("seed")
    if seed is not None:
        seed = _int(seed, "seed", 0, SEED_MAX, f"an integer in [0, {SEED_MAX}]")
    psi = defaults.psi if query.get("psi") is None else _psi(spec, query["psi"], "psi")
    cls = defaults.class_idx if query.get("class") is None else \
        _class(spec, query["class"], "class")
    fmt = query.get("format", "png")
    if fmt not in MEDIA_TYPES:
        raise BadParameter("format", fmt, " or ".join(MEDIA_TYPES))
    return ImageQuery(seed, psi, cls, fmt)


def _int(text: str, name: str, lo: int, hi: int, allowed: str) -> int:
    if not re.fullmatch(r"-?[0-9]{1,20}", text):
        raise BadParameter(name, text, allowed)
    value = int(text)
    if not lo <= value <= hi:
        raise BadParameter(name, text, allowed)
    return value


def _psi(spec: Spec, text: str, name: str) -> float:
    allowed = psi_allowed(spec)
    try:
        value = float(text)
    except ValueError:
        raise BadParameter(name, text, allowed) from None
    lo, hi = PSI_RANGE if spec.truncates else (1.0, 1.0)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise BadParameter(name, text, allowed)
    return value


def _class(spec: Spec, text: str, name: str) -> int:
    if not spec.c_dim:
        raise BadParameter(name, text, class_allowed(spec))
    return _int(text, name, 0, spec.c_dim - 1, class_allowed(spec))
