"""Attributes images to a generator by projection (StyleGAN2 paper, section 5, figure 10).

An image the generator made projects back into its W almost exactly; a real photo does
not. The distance between an image and its projection therefore says whether the
generator made it: 'generated' when it is at most a threshold, else 'real'. The
threshold comes from calibration on known generated and real images (`choose_threshold`),
or, with no real images at hand, from the generator's own images (`self_threshold`).

The distance is LPIPS, as in the paper, when the VGG16 and LPIPS weight files are found;
otherwise 'pyramid-mse', the mean squared error in [-1, 1] of the images' 2x2 and 4x4 box
averages (`projection.PYRAMID_MSE`), used both as the projection loss (the official
schedule and noise regulariser unchanged) and as the reported distance. Its name goes
with every number, since thresholds of one distance mean nothing for the other.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from stylegan_jax import atomic, images
from stylegan_jax.generate import generate_images
from stylegan_jax.metrics import lpips as lpips_metric
from stylegan_jax.metrics import weight_files
from stylegan_jax.models.registry import Network
from stylegan_jax.tools import projection

OFFICIAL_STEPS = 1000  # official projector.py --num-steps
OFFICIAL = projection.Settings()
# Self-calibration: the 90 % quantile of the distances of the generator's own images, so
# that about 9 in 10 generated images are attributed to it and real ones are judged
# against the tail of what the generator reproduces.
SELF_QUANTILE = 0.9
THRESHOLD_RULE = ("midpoint of the cut that maximises balanced accuracy "
                  "(mean of the true-generated and true-real rates)")


@dataclass(frozen=True)
class Distance:
    """The distance projection minimises and attribution reports."""

    name: str  # 'lpips' or 'pyramid-mse'
    lpips_vars: dict | None  # the LPIPS variables (lpips only)

    def __post_init__(self):
        projection.check_distance(self.name)
        if (self.name == projection.LPIPS) != (self.lpips_vars is not None):
            raise ValueError(f"distance {self.name!r}: lpips_vars must be given for lpips "
                             "and only for it")


PYRAMID_MSE = Distance(projection.PYRAMID_MSE, None)


def load_distance(vgg16=None, lpips=None, fallback: bool = True) -> Distance:
    """LPIPS when the VGG16 and LPIPS weight files resolve (flag, environment variable or
    the metrics weights directory), else the pyramid MSE when `fallback`.

    A file named by a path or an environment variable must exist: a missing one raises
    rather than falling back. Without `fallback`, the FileNotFoundError saying how to get
    the files is raised.
    """
    named = vgg16 is not None or lpips is not None or any(
        os.environ.get(weight_files.FILES[k].env) for k in ("vgg16", "lpips"))
    try:
        lpips_vars = lpips_metric.load_lpips(weight_files.resolve("vgg16", vgg16),
                                             weight_files.resolve("lpips", lpips))
    except FileNotFoundError:
        if not fallback or named:
            raise
        return PYRAMID_MSE
    return Distance(projection.LPIPS, lpips_vars)


class Projected(NamedTuple):
    w: np.ndarray  # [N, w_dim] float32, final w per image
    distance: np.ndarray  # [N] float64: target vs its projection, rendered as the loss does
    images: np.ndarray  # [N, H, W, C] uint8 projections


def _check_positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def project_batch(module, g_vars, targets: np.ndarray, num_steps: int, distance: Distance,
                  seed: int = 303, batch_size: int = 8,
                  settings: projection.Settings = OFFICIAL,
                  progress: bool = True,
                  stats: tuple[np.ndarray, float] | None = None) -> Projected:
    """Projects uint8 targets [N, H, W, C] (the generator's height, width and channels).

    `batch_size` images are optimised at once, each exactly as `projection.project`
    would alone with `seed` (its own w, noise buffers, Adam state, w noise); the last
    batch is padded by repeating its last image, so one program serves every batch.
    The distance and the images are rendered with the final w and optimised noise
    buffers, as the loss renders them. `stats`: the generator's (w_avg, w_std)
    (`projection.w_stats`) when a caller projecting again and again already has them.
    """
    projection.check_generator(module)
    projection.check_steps(num_steps, "steps")
    _check_positive(batch_size, "batch size")
    targets = np.asarray(targets)
    if targets.ndim == 4 and len(targets) == 0:
        raise ValueError("no images to project")
    projection.check_target_shape(module, targets)
    if targets.dtype != np.uint8:
        raise ValueError(f"targets must be uint8, got {targets.dtype}")
    n = len(targets)
    size = min(batch_size, n)
    stats = stats or projection.w_stats(module, g_vars, settings.w_avg_samples)
    ws, dists, imgs = [], [], []
    with tqdm(total=num_steps * math.ceil(n / size), desc=f"project ({distance.name})",
              unit="step", disable=not progress) as bar:
        for start in range(0, n, size):
            part = targets[start:start + size]
            padded = np.concatenate([part, np.repeat(part[-1:], size - len(part), 0)])
            state, feats, _ = projection.optimize(
                module, g_vars, distance.name, distance.lpips_vars, padded, num_steps, seed,
                settings, stats=stats, bar=bar if progress else None)
            d, img = projection.rendered_distance(module, distance.name, g_vars,
                                                  distance.lpips_vars, feats, state)
            ws.append(np.asarray(state.w[: len(part), 0], np.float32))
            dists.append(np.asarray(d[: len(part)], np.float64))
            imgs.append(images.to_uint8(img[: len(part)]))
    return Projected(np.concatenate(ws), np.concatenate(dists), np.concatenate(imgs))


def generated_images(module, g_vars, seeds) -> np.ndarray:
    """uint8 images of the seeds' z (official seeding), psi 1, the generator's own noise:
    `generate`'s images."""
    projection.check_generator(module)
    return generate_images(Network(module, g_vars), list(seeds))


def verdict(distance: float, threshold: float) -> str:
    """'generated' when the distance is at most the threshold, else 'real'."""
    return "generated" if distance <= threshold else "real"


def _scores(generated, real) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(generated, np.float64).ravel()
    r = np.asarray(real, np.float64).ravel()
    if not len(g) or not len(r):
        raise ValueError(f"need distances of both groups, got {len(g)} generated and "
                         f"{len(r)} real")
    if not (np.isfinite(g).all() and np.isfinite(r).all()):
        raise ValueError("distances must be finite")
    return g, r


def roc_auc(generated: np.ndarray, real: np.ndarray) -> float:
    """Area under the ROC curve with generated images as positives and a smaller distance
    meaning 'generated': P(d_gen < d_real) + 0.5 P(d_gen = d_real) (Mann-Whitney U / nm)."""
    g, r = _scores(generated, real)
    r = np.sort(r)
    above = len(r) - np.searchsorted(r, g, side="right")
    ties = np.searchsorted(r, g, side="right") - np.searchsorted(r, g, side="left")
    return float((above.sum() + 0.5 * ties.sum()) / (len(g) * len(r)))


def choose_threshold(generated, real) -> tuple[float, float]:
    """(threshold, balanced accuracy): the cut maximising balanced accuracy, the mean of the
    fraction of generated images at or below it and of real images above it (balanced, so
    that unequal group sizes do not pull it), placed midway to the next larger distance.
    Among equal accuracies the smallest cut wins."""
    g, r = _scores(generated, real)
    cuts = np.unique(np.concatenate([g, r]))
    g_sorted, r_sorted = np.sort(g), np.sort(r)
    tpr = np.searchsorted(g_sorted, cuts, side="right") / len(g)
    tnr = 1.0 - np.searchsorted(r_sorted, cuts, side="right") / len(r)
    acc = 0.5 * (tpr + tnr)
    k = int(np.argmax(acc))  # >= 0.5: the largest cut calls every image generated
    threshold = cuts[k] if k + 1 == len(cuts) else 0.5 * (cuts[k] + cuts[k + 1])
    return float(threshold), float(acc[k])


def self_threshold(module, g_vars, distance: Distance, num_images: int = 16,
                   num_steps: int = OFFICIAL_STEPS, seed: int = 303, batch_size: int = 8,
                   progress: bool = False) -> float:
    """One-class threshold when no real images are given: the SELF_QUANTILE quantile
    (linear interpolation) of the distances of the generator's own images of seeds
    0..num_images-1 (psi 1) after projection. `seed` is the projection's."""
    _check_positive(num_images, "number of generated images")
    d = project_batch(module, g_vars, generated_images(module, g_vars, range(num_images)),
                      num_steps, distance, seed, batch_size, progress=progress).distance
    return self_threshold_of(d)


def self_threshold_of(distances) -> float:
    """The self-calibration rule on the distances of the generator's own images."""
    return float(np.quantile(np.asarray(distances, np.float64), SELF_QUANTILE))


SELF_RULE = f"the {SELF_QUANTILE:.0%} quantile of their distances"


@dataclass
class Calibration:
    """A threshold and the distances it was chosen from."""

    threshold: float
    threshold_rule: str
    distance: str  # the distance's name
    num_steps: int
    auc: float
    accuracy: float  # balanced accuracy of the threshold on the two groups
    generated: list[float]
    real: list[float]
    network: str
    seed: int = 303  # the projection's
    generated_seeds: list[int] = field(default_factory=list)  # the generated images' seeds
    real_files: list[str] = field(default_factory=list)  # the real images, as `real`


def calibrate(generated, real, distance_name: str, num_steps: int, network: str,
              seed: int = 303, generated_seeds=(), real_files=()) -> Calibration:
    """The Calibration of two groups of distances."""
    threshold, accuracy = choose_threshold(generated, real)
    return Calibration(threshold, THRESHOLD_RULE, distance_name, int(num_steps),
                       roc_auc(generated, real), accuracy,
                       [float(x) for x in generated], [float(x) for x in real], str(network),
                       int(seed), [int(s) for s in generated_seeds],
                       [str(f) for f in real_files])


def save_calibration(path, cal: Calibration) -> Path:
    """Writes the calibration as JSON (atomically)."""
    path = Path(path)
    try:
        atomic.replace_file(path, json.dumps(asdict(cal), indent=1) + "\n")
    except OSError as e:
        raise atomic.write_error(f"calibration {path}", e) from None
    return path


_KINDS = {"threshold": float, "threshold_rule": str, "distance": str, "num_steps": int,
          "auc": float, "accuracy": float, "generated": list, "real": list, "network": str,
          "seed": int, "generated_seeds": list, "real_files": list}


def load_calibration(path) -> Calibration:
    """A calibration written by `save_calibration`; errors name the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"calibration {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"calibration {path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"calibration {path}: expected a JSON object")
    out = {}
    for f in fields(Calibration):
        if f.name not in data:
            if f.default is not MISSING or f.default_factory is not MISSING:  # optional
                continue
            raise ValueError(f"calibration {path}: field {f.name!r} is missing")
        value, kind = data[f.name], _KINDS[f.name]
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value)) if kind is float else (
            isinstance(value, kind) and not isinstance(value, bool))
        if kind is list and ok:
            item = str if f.name == "real_files" else (int if f.name == "generated_seeds"
                                                       else (int, float))
            ok = all(isinstance(x, item) and not isinstance(x, bool) for x in value)
        if not ok:
            raise ValueError(f"calibration {path}: field {f.name!r} is {value!r}, expected "
                             f"{'a list of numbers' if kind is list else kind.__name__}")
        out[f.name] = float(value) if kind is float else value
    if out["distance"] not in projection.DISTANCES:
        raise ValueError(f"calibration {path}: field 'distance' is {out['distance']!r}, "
                         f"expected one of {projection.DISTANCES}")
    return Calibration(**out)


def histogram_png(path, generated, real, threshold: float, distance_name: str) -> Path:
    """The paper's figure 10: histograms of the distances of generated and real images after
    projection, and the threshold between them."""
    g, r = _scores(generated, real)
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.add_subplot()
    bins = np.linspace(min(g.min(), r.min(), threshold), max(g.max(), r.max(), threshold), 31)
    ax.hist(g, bins=bins, alpha=0.6, color="tab:blue", label=f"generated ({len(g)})")
    ax.hist(r, bins=bins, alpha=0.6, color="tab:orange", label=f"real ({len(r)})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel(f"{distance_name} distance after projection")
    ax.set_ylabel("images")
    ax.set_title(f"Attribution by projection ({distance_name}), AUC {roc_auc(g, r):.3f}")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    path = Path(path)
    try:
        atomic.replace_file(path, buf.getvalue())
    except OSError as e:
        raise atomic.write_error(f"histogram {path}", e) from None
    return path
