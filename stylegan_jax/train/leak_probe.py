"""A cheap look for ADA augmentations leaking into G's images (Karras et al. 2020, sec. 2.3:
past p ~ 0.8 the generator may learn to produce rotated or recoloured images).

Two statistics of the snapshot grid's fakes against the reals grid's images, each read as
"how much more augmented-looking are the fakes than the reals", so that a dataset's own
quirks cancel:
- rotation: the share of images whose best match (correlation of the standardised luma)
  among the reals' mean image turned by 0, 90, 180, 270 degrees (and mirrored, which a
  dataset with x-flips has anyway) is not upright; fakes' share minus reals' share;
- colour: per-image brightness (mean luma), contrast (luma std) and, in colour, saturation
  (mean max-min over the channels); the largest distance between the fakes' and the reals'
  means, in the reals' standard deviations.
"""

from __future__ import annotations

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], np.float64)


def luma(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC (1, 3 or 4 channels; alpha ignored) -> [N, H, W] float64 in [0, 1]."""
    x = images.astype(np.float64) / 255.0
    return x[..., 0] if x.shape[-1] < 3 else x[..., :3] @ _LUMA


def _standardise(x: np.ndarray) -> np.ndarray:
    """[..., H, W] -> zero mean, unit std per image, flattened to [..., H * W]."""
    flat = x.reshape(*x.shape[:-2], -1)
    flat = flat - flat.mean(-1, keepdims=True)
    return flat / np.maximum(flat.std(-1, keepdims=True), 1e-8)


def turned_share(images: np.ndarray, template: np.ndarray) -> float:
    """The share of images that match `template` ([H, W] luma) best when it is turned by
    90, 180 or 270 degrees rather than upright (mirrors counted with their turn; a
    non-square image has only 0 and 180)."""
    h, w = template.shape
    turns = (0, 1, 2, 3) if h == w else (0, 2)
    candidates = []
    for k in turns:
        t = np.rot90(template, k)
        candidates += [(k, t), (k, t[:, ::-1])]
    refs = _standardise(np.stack([t for _, t in candidates]))  # [T, H * W]
    corr = _standardise(luma(images)) @ refs.T  # [N, T]
    best = np.array([candidates[i][0] for i in corr.argmax(1)])
    return float(np.mean(best != 0))


def colour_stats(images: np.ndarray) -> np.ndarray:
    """[N, S] per-image brightness, contrast (and saturation with 3+ channels)."""
    y = luma(images).reshape(len(images), -1)
    stats = [y.mean(1), y.std(1)]
    if images.shape[-1] >= 3:
        rgb = images[..., :3].astype(np.float64) / 255.0
        stats.append((rgb.max(-1) - rgb.min(-1)).reshape(len(images), -1).mean(1))
    return np.stack(stats, 1)


def probe(fakes: np.ndarray, reals: np.ndarray) -> dict[str, float]:
    """{"leak_rotation", "leak_colour"} of uint8 NHWC fakes against reals of the same size."""
    template = luma(reals).mean(0)
    rotation = turned_share(fakes, template) - turned_share(reals, template)
    f, r = colour_stats(fakes), colour_stats(reals)
    colour = np.abs(f.mean(0) - r.mean(0)) / np.maximum(r.std(0), 1e-3)
    return {"leak_rotation": rotation, "leak_colour": float(colour.max())}
