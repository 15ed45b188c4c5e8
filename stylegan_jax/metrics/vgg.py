"""torchvision's VGG16 (`vgg16-397923af.pth` layout) in NHWC: fc2 features and conv taps.

Precision/recall embeds images with VGG16's second fully connected layer (4096-d,
after its ReLU); LPIPS compares the five `relu*_*` activations before each max
pool. Module names follow the state dict (`features.<i>` -> `features_<i>`). The
first classifier layer's weight is reordered once at load time because torchvision
flattens the 7x7x512 map channel-first and this network flattens NHWC.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.metrics import image_ops
from stylegan_jax.metrics.net_utils import check_params, max_pool
from stylegan_jax.metrics.torch_weights import load_state_dict

HIGHEST = jax.lax.Precision.HIGHEST
INPUT_SIZE = 224
# torchvision's VGG16 "D" config: conv widths, "M" = 2x2 max pool; conv layers are
# features.<i> at these indices (each followed by a ReLU).
CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def conv_indices() -> list[int]:
    out, i = [], 0
    for v in CONFIG:
        if v == "M":
            i += 1
        else:
            out.append(i)
            i += 2
    return out


class VGG16Features(nn.Module):
    """[N, H, W, 3] normalised float -> the activations before each max pool (relu1_2 … relu5_3)
    and the final pooled map."""

    @nn.compact
    def __call__(self, x):
        taps, i = [], 0
        for v in CONFIG:
            if v == "M":
                taps.append(x)
                x = max_pool(x, 2, 2)
                i += 1
                continue
            w = self.param(f"features_{i}_kernel", nn.initializers.lecun_normal(),
                           (3, 3, x.shape[-1], v))
            b = self.param(f"features_{i}_bias", nn.initializers.zeros, (v,))
            x = jax.lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)],
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                             precision=HIGHEST)
            x = jax.nn.relu(x + b)
            i += 2
        return taps, x


class VGG16(nn.Module):
    """ImageNet-normalised float [N, 224, 224, 3] -> (fc2 [N, 4096] before ReLU, after ReLU)."""

    @nn.compact
    def __call__(self, x):
        _, x = VGG16Features(name="features")(x)
        x = image_ops.resize_area(x, (7, 7))  # torchvision's AdaptiveAvgPool2d((7, 7))
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(nn.Dense(4096, precision=HIGHEST, name="classifier_0")(x))
        fc2 = nn.Dense(4096, precision=HIGHEST, name="classifier_3")(x)
        return fc2, jax.nn.relu(fc2)


def preprocess(images: jax.Array) -> jax.Array:
    """uint8 [N, H, W, C] -> ImageNet-normalised float at 224x224 (area resampling)."""
    x = image_ops.to_rgb(images.astype(jnp.float32) / 255.0)
    x = image_ops.resize_area(x, (INPUT_SIZE, INPUT_SIZE))
    return (x - IMAGENET_MEAN) / IMAGENET_STD


def vgg16_features(variables: dict, images: jax.Array) -> jax.Array:
    """The precision/recall embedding: uint8 images -> fc2 features after ReLU [N, 4096]."""
    return VGG16().apply(variables, preprocess(images))[1]


def features_params(sd: Mapping[str, np.ndarray]) -> dict:
    """The conv layers of a torchvision VGG16 state dict as VGG16Features params (HWIO)."""
    out = {}
    for i in conv_indices():
        out[f"features_{i}_kernel"] = np.transpose(sd[f"features.{i}.weight"], (2, 3, 1, 0))
        out[f"features_{i}_bias"] = np.asarray(sd[f"features.{i}.bias"])
    return out


def feature_keys(classifier: bool) -> list[str]:
    keys = [f"features.{i}.{p}" for i in conv_indices() for p in ("weight", "bias")]
    if classifier:
        keys += [f"classifier.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")]
    return keys


def params_from_state_dict(sd: Mapping[str, np.ndarray], source: str = "state dict") -> dict:
    """torchvision VGG16 state dict -> VGG16 variables (classifier.6 is not needed)."""
    missing = [k for k in feature_keys(classifier=True) if k not in sd]
    if missing:
        raise ValueError(f"{source}: not a torchvision vgg16 state dict (missing {missing[:4]})")
    w0 = np.asarray(sd["classifier.0.weight"])
    if w0.shape != (4096, 512 * 7 * 7):
        raise ValueError(f"{source}: classifier.0.weight has shape {w0.shape}, "
                         "expected (4096, 25088) as in torchvision's vgg16")
    # torch flattens (C, 7, 7); rows of our kernel are indexed NHWC-flat (7, 7, C).
    w0 = w0.reshape(4096, 512, 7, 7).transpose(2, 3, 1, 0).reshape(-1, 4096)
    params = {
        "features": features_params(sd),
        "classifier_0": {"kernel": w0, "bias": np.asarray(sd["classifier.0.bias"])},
        "classifier_3": {"kernel": np.asarray(sd["classifier.3.weight"]).T,
                         "bias": np.asarray(sd["classifier.3.bias"])},
    }
    example = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return check_params({"params": params}, VGG16(), (example,), source,
                        "torchvision vgg16-*.pth", torch_name)


def torch_name(path: str) -> str:
    """'params/features/features_0_kernel' -> 'features.0.weight', 'params/classifier_3/bias'
    -> 'classifier.3.bias' (LPIPS: 'params/vgg/…' the same, 'params/lin0' its own key)."""
    parts = path.split("/")[1:]
    if parts[0] in ("features", "vgg"):
        _, index, leaf = parts[1].split("_")
        return f"features.{index}.{'weight' if leaf == 'kernel' else leaf}"
    if parts[0].startswith("lin"):
        return f"{parts[0]}.model.1.weight"
    index = parts[0].split("_")[1]
    return f"classifier.{index}.{'weight' if parts[1] == 'kernel' else parts[1]}"


def load_vgg16(path: str | Path) -> dict:
    """VGG16 variables (conv layers, fc1, fc2) from torchvision's `vgg16-*.pth`."""
    return params_from_state_dict(load_state_dict(path, feature_keys(classifier=True)), str(path))
