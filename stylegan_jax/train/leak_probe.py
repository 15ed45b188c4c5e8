"""A cheap look for ADA augmentations leaking into G's images (Karras et al. 2020, sec. 2.3:
past p ~ 0.8 the generator may learn to produce rotated or recoloured images).

Two statistics of the snapshot grid's fakes against the reals grid's images, each read as
"how much more augmented-looking are the fakes than the reals", so that a dataset's own
quirks cancel:
- rotation: the share of images that match the reals' mean image turned by 90, 180 or 270
  degrees clearly better than upright (correlation of the standardised luma; mirrors, which
  a dataset with x-flips has anyway, count with their turn); fakes' share minus reals',
  counted, as the next, only once G's images look like the data in some orientation;
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


def orientation_scores(images: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, ...]:
    """(upright, turned, likeness): per image, the best correlation of its standardised luma
    with the `template` ([H, W] luma) upright or mirrored, and turned by 90, 180 or 270
    degrees (or mirrored and turned; a non-square image turns by 180 only); and the largest
    |correlation| of all (an image inverted in luma is still like the data)."""
    h, w = template.shape
    turns = (0, 1, 2, 3) if h == w else (0, 2)
    refs = []
    for k in turns:
        t = np.rot90(template, k)
        refs += [t, t[:, ::-1]]
    corr = _standardise(luma(images)) @ _standardise(np.stack(refs)).T / (h * w)
    return corr[:, :2].max(1), corr[:, 2:].max(1), np.abs(corr).max(1)


# An image counts as turned when it matches a turned template as well as a typical real
# matches the upright one (the reals' 10th percentile) and better than upright by this.
_MARGIN = 0.1
# Below this share of the reals' likeness to the template (median largest |correlation|)
# G's images do not look like the data in any orientation yet (an untrained or collapsed
# G): how they differ from the reals says nothing about a leak.
_MIN_LIKENESS = 0.75


def colour_stats(images: np.ndarray) -> np.ndarray:
    """[N, S] per-image brightness, contrast (and saturation with 3+ channels)."""
    y = luma(images).reshape(len(images), -1)
    stats = [y.mean(1), y.std(1)]
    if images.shape[-1] >= 3:
        rgb = images[..., :3].astype(np.float64) / 255.0
        stats.append((rgb.max(-1) - rgb.min(-1)).reshape(len(images), -1).mean(1))
    return np.stack(stats, 1)


def probe(fakes: np.ndarray, reals: np.ndarray) -> dict[str, float]:
    """{"leak_rotation", "leak_colour", "leak_likeness"} of uint8 NHWC fakes against reals of
    the same size. Both leak statistics are 0 (no evidence) while the fakes' likeness is
    below _MIN_LIKENESS: an untrained G's images differ from the reals in every statistic."""
    template = luma(reals).mean(0)
    up_r, turned_r, like_r = orientation_scores(reals, template)
    up_f, turned_f, like_f = orientation_scores(fakes, template)
    likeness = float(np.median(like_f) / max(np.median(like_r), 1e-8))
    if likeness < _MIN_LIKENESS:
        return {"leak_rotation": 0.0, "leak_colour": 0.0, "leak_likeness": likeness}
    floor = np.percentile(up_r, 10)
    share = [float(np.mean((t >= floor) & (t - u >= _MARGIN)))
             for u, t in ((up_f, turned_f), (up_r, turned_r))]
    f, r = colour_stats(fakes), colour_stats(reals)
    colour = np.abs(f.mean(0) - r.mean(0)) / np.maximum(r.std(0), 1e-3)
    return {"leak_rotation": share[0] - share[1], "leak_colour": float(colour.max()),
            "leak_likeness": likeness}
