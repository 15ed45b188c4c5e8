"""Cheap stand-ins for Inception / VGG16 / LPIPS (4x4 box features, MSE), so that metric
values can be recomputed directly from the images; the real networks are checked in
test_metrics_feature_nets.py and test_metrics_cli.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.metrics import image_ops
from stylegan_jax.metrics.detectors import Detectors


def box_features(variables, images):
    """uint8 [N, H, W, C] -> [N, 48]: 4x4 box averages of the RGB image, scaled."""
    x = image_ops.to_rgb(images.astype(jnp.float32) / 255.0)
    f = image_ops.resize_area(x, (4, 4)).reshape(x.shape[0], -1) * variables["scale"]
    return {"pool3": f, "fc2": f, "probs": jax.nn.softmax(f[:, :10], axis=-1)}


def box_features_np(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float64) / 255.0
    n, h, w, c = x.shape
    return x.reshape(n, 4, h // 4, 4, w // 4, c).mean(axis=(2, 4)).reshape(n, -1) * 2.0


def toy_detectors() -> Detectors:
    def mse(variables, a, b):
        return jnp.mean(jnp.square(a - b), axis=(1, 2, 3))

    return Detectors(preloaded={k: {"scale": 2.0} for k in ("inception", "vgg16", "lpips")},
                     functions={"inception": box_features, "vgg16": box_features, "lpips": mse},
                     ids={"inception": "box", "vgg16": "box", "lpips": "mse"})
