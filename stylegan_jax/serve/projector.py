"""The projector behind `POST /api/attribute`, and its threshold, from `serve`'s flags.

Every projection runs as a batch of one (`attribution.project_batch`, batch size 1), so
the one program compiled by the warm-up serves the self-calibration and every request; the
self-calibration (run by the queue, an image at a time) then equals
`attribution.self_threshold(..., batch_size=1)`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylegan_jax.models.registry import Network, image_shape
from stylegan_jax.serve.attribution_queue import AttributionQueue, Threshold
from stylegan_jax.tools import attribution, projection

DEFAULT_STEPS = 100  # ~0.3 s for the shipped faces32 on a CPU core; the official 1000 is 10x
DEFAULT_QUEUE = 4
CALIBRATION_IMAGES = 16  # the network's own images (seeds 0-15) for self-calibration


@dataclass(frozen=True)
class NetworkProjector:
    """`attribution.project_batch` of one target on `net` (an unconditional StyleGAN2)."""

    net: Network
    distance: attribution.Distance
    steps: int
    seed: int = 303  # the official projector's
    calibration_images: int = CALIBRATION_IMAGES

    @property
    def distance_name(self) -> str:
        return self.distance.name

    @functools.cached_property
    def _w_stats(self) -> tuple[np.ndarray, float]:
        """The generator's w statistics: computed once, not per upload."""
        return projection.w_stats(self.net.module, self.net.variables)

    def _project(self, targets: np.ndarray, steps: int) -> np.ndarray:
        return attribution.project_batch(self.net.module, self.net.variables, targets, steps,
                                         self.distance, self.seed, batch_size=1,
                                         progress=False, stats=self._w_stats).distance

    def warm_up(self) -> None:
        G = self.net.module
        size = image_shape(G)
        self._project(np.zeros((1, size.height, size.width, G.img_channels), np.uint8), 1)

    def project(self, target: np.ndarray) -> float:
        return float(self._project(np.asarray(target, np.uint8)[None], self.steps)[0])

    def own_images(self) -> np.ndarray:
        """Seeds 0..N-1 at psi 1, as `attribution.self_threshold` calibrates on them."""
        return attribution.generated_images(self.net.module, self.net.variables,
                                            range(self.calibration_images))


def why_not(net: Network | None) -> str | None:
    """Why `net` cannot be attributed to, or None when it can."""
    if net is None:
        return "an exported artifact has no network to project into"
    try:
        projection.check_generator(net.module)
    except ValueError as e:
        return str(e)
    return None


def _threshold(value: float | None, calibration: Path | None, distance_name: str,
               steps: int | None) -> tuple[Threshold, int]:
    """The threshold and the step count (a calibration's own, unless --attribute-steps)."""
    if value is not None:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--attribute-threshold must be a finite distance >= 0, "
                             f"got {value}")
        steps = DEFAULT_STEPS if steps is None else steps
        return Threshold(value, "--attribute-threshold"), steps
    if calibration is not None:
        cal = attribution.load_calibration(calibration)
        if cal.distance != distance_name:
            raise ValueError(f"--attribute-calibration {calibration} was made with the "
                             f"{cal.distance} distance, but the distance here is "
                             f"{distance_name} (LPIPS needs the VGG16 and LPIPS weight "
                             "files); recalibrate or supply them")
        if steps is not None and steps != cal.num_steps:
            raise ValueError(f"--attribute-steps {steps}: calibration {calibration} was made "
                             f"with {cal.num_steps} steps, and distances depend on the step "
                             "count (leave --attribute-steps out to use its)")
        source = (f"calibration {Path(calibration).name} ({cal.threshold_rule}; ROC AUC "
                  f"{cal.auc:.3f}, balanced accuracy {cal.accuracy:.3f})")
        return Threshold(cal.threshold, source), cal.num_steps
    steps = DEFAULT_STEPS if steps is None else steps
    source = (f"self-calibration at start-up on the network's own images (seeds "
              f"0-{CALIBRATION_IMAGES - 1}, {steps} steps): {attribution.SELF_RULE}; "
              "one-class, no real image was seen")
    return Threshold(None, source), steps


def attribution_for(net: Network | None, steps: int | None = None, limit: int = DEFAULT_QUEUE,
                    threshold: float | None = None, calibration: Path | None = None,
                    vgg16: str | None = None, lpips: str | None = None
                    ) -> tuple[AttributionQueue | None, str]:
    """(the queue, '') or (None, why there is no attribution on this server)."""
    asked = threshold is not None or calibration is not None
    if limit < 0:
        raise ValueError(f"--attribute-queue must be >= 0 (0 turns attribution off), "
                         f"got {limit}")
    reason = why_not(net)
    if reason is not None:
        if asked:
            raise ValueError(f"--attribute-threshold / --attribute-calibration: {reason}")
        return None, reason
    if limit == 0:
        if asked:
            raise ValueError("--attribute-threshold / --attribute-calibration with "
                             "--attribute-queue 0 (attribution off)")
        return None, "attribution is off on this server (serve --attribute-queue 0)"
    if steps is not None:
        projection.check_steps(steps, "--attribute-steps")
    distance = attribution.load_distance(vgg16, lpips)
    thr, steps = _threshold(threshold, calibration, distance.name, steps)
    return AttributionQueue(NetworkProjector(net, distance, steps), thr, limit), ""
