"""Query parameters of `/` and `/api/image`, validated into one `ImageQuery`.

Every refusal names the parameter, what was given and what is allowed, so a client (or a
person editing a URL) can fix it from the message alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from stylegan_jax.serve.codec import MEDIA_TYPES
from stylegan_jax.serve.render import Spec
from stylegan_jax.tools.latent_directions import parse_edits

SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)
PSI_RANGE = (-1.0, 2.0)  # beyond this w leaves the region the generator was trained on
TRANSLATE_MAX = 1.0  # fractions of the image: a whole image either way
ROTATE_MAX = 360.0  # degrees either way
STRENGTH_MAX = 10.0  # an edit's strength, in standard deviations of w along its direction
MAX_EDITS = 16  # directions one request may move at once
PARAMETERS = ("seed", "psi", "class", "label", "format", "translate", "rotate", "edit")
FLOAT32_MAX = float(np.finfo(np.float32).max)  # a label number beyond it would be inf as c

Edits = tuple[tuple[int, float], ...]  # (direction index, strength), by index, none at 0
Label = tuple[float, ...]  # a label vector as given; the generator's c is its float32


class BadParameter(ValueError):
    def __init__(self, name: str, given, allowed: str):
        super().__init__(f"{name}: got {given!r}, expected {allowed}")
        self.name, self.given, self.allowed = name, given, allowed

    def as_json(self) -> dict:
        return {"error": str(self), "parameter": self.name, "allowed": self.allowed}


@dataclass(frozen=True)
class Defaults:
    """The server's --trunc, --class and --label (as given, or as `check_defaults` checked
    them: a class index, or a label vector)."""

    psi: float = 1.0
    class_idx: int | str | None = None
    label: str | Label | None = None


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
    label: Label | None = None  # a label vector, the generator's c (then class_idx is None)

    @property
    def move(self) -> tuple[float, float, float]:
        return (*self.translate, self.rotate)

    @property
    def condition(self) -> int | np.ndarray | None:
        """What the generator renders: the class, or the label vector as float32 [c_dim]
        (`generate.conditioning` takes either, as `generate --class / --label` give them)."""
        return self.class_idx if self.label is None else np.asarray(self.label, np.float32)


def psi_allowed(spec: Spec) -> str:
    if not spec.truncates:
        return "1 (this network has no truncation)"
    return f"a number in [{PSI_RANGE[0]:g}, {PSI_RANGE[1]:g}]"


def label_example(spec: Spec) -> str:
    return ",".join(["0"] * spec.c_dim)


def class_allowed(spec: Spec, label: str = "label") -> str:
    """`label`: how a caller gives a label vector instead (the query's label=, or --label)."""
    if not spec.c_dim:
        return "no class (this network is unconditional)"
    if spec.vector_labels:
        return (f"no class (this network was trained on label vectors: give {label} with "
                f"{spec.c_dim} comma-separated numbers, e.g. {label} {label_example(spec)})"
                if label.startswith("--") else
                f"no class (this network was trained on label vectors: give {label}=V1,V2,... "
                f"with {spec.c_dim} numbers, e.g. {label}={label_example(spec)})")
    if spec.class_names:
        return f"one of {', '.join(spec.class_names)} or an integer in [0, {spec.c_dim - 1}]"
    return f"an integer in [0, {spec.c_dim - 1}]"


def label_allowed(spec: Spec) -> str:
    if not spec.c_dim:
        return "no label (this network is unconditional)"
    return (f"{spec.c_dim} comma-separated finite numbers (the generator's c as it is, e.g. "
            f"{label_example(spec)})")


def label_text(label: Label) -> str:
    """The canonical `label` value of a label vector: what a permalink carries."""
    return ",".join(repr(v) for v in label)


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
    """The server's own defaults (from its flags), held to the rules of a request. Without
    --class / --label a conditional network renders class 0, or, trained on label vectors,
    the zero vector."""
    psi = _psi(spec, str(defaults.psi), "--trunc")
    cls, label = defaults.class_idx, defaults.label
    if label is not None:
        if cls is not None:
            raise BadParameter("--class", cls, "--class or --label, not both")
        text = label if isinstance(label, str) else label_text(label)
        return Defaults(psi, None, _label(spec, text, "--label"))
    if cls is not None:
        return Defaults(psi, _class(spec, str(cls), "--class"))
    if spec.vector_labels:
        return Defaults(psi, None, (0.0,) * spec.c_dim)
    return Defaults(psi, 0 if spec.c_dim else None)


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
    cls, label = defaults.class_idx, defaults.label
    if query.get("class") is not None and query.get("label") is not None:
        raise BadParameter("label", query["label"], "class or label, not both")
    if query.get("class") is not None:
        cls, label = _class(spec, query["class"], "class"), None
    elif query.get("label") is not None:
        cls, label = None, _label(spec, query["label"], "label")
    fmt = query.get("format", "png")
    if fmt not in MEDIA_TYPES:
        raise BadParameter("format", fmt, " or ".join(MEDIA_TYPES))
    translate = (0.0, 0.0) if query.get("translate") is None else \
        _translate(spec, query["translate"])
    rotate = 0.0 if query.get("rotate") is None else _rotate(spec, query["rotate"])
    edits = () if query.get("edit") is None else _edits(edit_rule, query["edit"])
    return ImageQuery(seed, psi, cls, fmt, translate, rotate, edits, label)


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
    if not spec.c_dim or spec.vector_labels:
        raise BadParameter(name, text,
                           class_allowed(spec, "--label" if name.startswith("--") else "label"))
    if text in spec.class_names:
        return spec.class_names.index(text)
    return _int(text, name, 0, spec.c_dim - 1, class_allowed(spec))


def _label(spec: Spec, text: str, name: str) -> Label:
    """c_dim finite numbers (finite in float32 too: the generator's c is their float32)."""
    bad = BadParameter(name, text, label_allowed(spec))
    parts = text.split(",")
    if not spec.c_dim or len(parts) != spec.c_dim:
        raise bad
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        raise bad from None
    if not all(math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in values):
        raise bad
    return values


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
