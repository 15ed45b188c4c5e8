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
from stylegan_jax.tools.latent_directions import parse_edits

SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)
PSI_RANGE = (-1.0, 2.0)  # beyond this w leaves the region the generator was trained on
TRANSLATE_MAX = 1.0  # fractions of the image: a whole image either way
ROTATE_MAX = 360.0  # degrees either way
STRENGTH_MAX = 10.0  # an edit's strength, in standard deviations of w along its direction
MAX_EDITS = 16  # directions one request may move at once
PARAMETERS = ("seed", "psi", "class", "format", "translate", "rotate", "edit")

Edits = tuple[tuple[int, float], ...]  # (direction index, strength), by index, none at 0


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
class EditRule:
    """What `edit` may name on this server: `count` latent directions, or none and why."""

    count: int = 0
    reason: str = "this server has no latent directions (serve --sliders 0)"


@dataclass(frozen=True)
class ImageQuery:
    seed: int | None  # None: the server draws one
    psi: float
    class_idx: int | None
    format: str
    translate: tuple[float, float] = (0.0, 0.0)  # StyleGAN3 only, as generate --translate
    rotate: float = 0.0  # degrees; StyleGAN3 only, as generate --rotate
    edits: Edits = ()  # latent edits: each direction's strength, zero strengths left out

    @property
    def move(self) -> tuple[float, float, float]:
        return (*self.translate, self.rotate)


def psi_allowed(spec: Spec) -> str:
    if not spec.truncates:
        return "1 (this network has no truncation)"
    return f"a number in [{PSI_RANGE[0]:g}, {PSI_RANGE[1]:g}]"


def class_allowed(spec: Spec) -> str:
    if not spec.c_dim:
        return "no class (this network is unconditional)"
    if spec.class_names:
        return f"one of {', '.join(spec.class_names)} or an integer in [0, {spec.c_dim - 1}]"
    return f"an integer in [0, {spec.c_dim - 1}]"


def translate_allowed(spec: Spec) -> str:
    if not spec.moves:
        return "no translate (only StyleGAN3 networks move their input)"
    return f"X,Y: two numbers in [{-TRANSLATE_MAX:g}, {TRANSLATE_MAX:g}] (fractions of the image)"


def rotate_allowed(spec: Spec) -> str:
    if not spec.moves:
        return "no rotate (only StyleGAN3 networks move their input)"
    return f"degrees in [{-ROTATE_MAX:g}, {ROTATE_MAX:g}]"


def edit_allowed(rule: EditRule) -> str:
    if not rule.count:
        return f"no edit ({rule.reason})"
    return (f"K:STRENGTH[,K:STRENGTH...] (at most {min(rule.count, MAX_EDITS)}, each K once): "
            f"K a direction index in [0, {rule.count - 1}], STRENGTH a number in "
            f"[{-STRENGTH_MAX:g}, {STRENGTH_MAX:g}] (standard deviations of w along it)")


def edit_text(edits: Edits) -> str:
    """The canonical `edit` value of `edits` ('' for none): what a permalink carries."""
    return ",".join(f"{k}:{strength!r}" for k, strength in edits)


def check_defaults(spec: Spec, defaults: Defaults) -> Defaults:
    """The server's own defaults (from its flags), held to the rules of a request."""
    psi = _psi(spec, str(defaults.psi), "--trunc")
    cls = defaults.class_idx
    if cls is None and spec.c_dim:
        cls = 0
    if cls is not None:
        cls = _class(spec, str(cls), "--class")
    return Defaults(psi, cls)


def parse(spec: Spec, defaults: Defaults, query: Mapping[str, str],
          edit_rule: EditRule = EditRule()) -> ImageQuery:
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
    translate = (0.0, 0.0) if query.get("translate") is None else \
        _translate(spec, query["translate"])
    rotate = 0.0 if query.get("rotate") is None else _rotate(spec, query["rotate"])
    edits = () if query.get("edit") is None else _edits(edit_rule, query["edit"])
    return ImageQuery(seed, psi, cls, fmt, translate, rotate, edits)


def _int(text: str, name: str, lo: int, hi: int, allowed: str) -> int:
    if not re.fullmatch(r"-?[0-9]{1,20}", text):
        raise BadParameter(name, text, allowed)
    value = int(text)
    if not lo <= value <= hi:
        raise BadParameter(name, text, allowed)
    return value


def _number(text: str, limit: float) -> float | None:
    """A finite float in [-limit, limit], else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and -limit <= value <= limit else None


def _translate(spec: Spec, text: str) -> tuple[float, float]:
    xy = [_number(v, TRANSLATE_MAX) for v in text.split(",")] if spec.moves else []
    if len(xy) != 2 or None in xy:
        raise BadParameter("translate", text, translate_allowed(spec))
    return xy[0], xy[1]


def _rotate(spec: Spec, text: str) -> float:
    value = _number(text, ROTATE_MAX) if spec.moves else None
    if value is None:
        raise BadParameter("rotate", text, rotate_allowed(spec))
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
    if text in spec.class_names:
        return spec.class_names.index(text)
    return _int(text, name, 0, spec.c_dim - 1, class_allowed(spec))


def _edits(rule: EditRule, text: str) -> Edits:
    """Checked edits, sorted by direction (the offset is a sum: order does not change the
    image, and one order gives one permalink), with zero strengths left out."""
    bad = BadParameter("edit", text, edit_allowed(rule))
    if not rule.count or text.count(",") >= MAX_EDITS:
        raise bad
    try:
        pairs = parse_edits(text)
    except ValueError:
        raise bad from None
    indices = [k for k, _ in pairs]
    if not pairs or len(set(indices)) != len(indices):
        raise bad
    for k, strength in pairs:
        if not (0 <= k < rule.count and math.isfinite(strength)
                and abs(strength) <= STRENGTH_MAX):
            raise bad
    return tuple(sorted((int(k), float(v)) for k, v in pairs if v != 0))
