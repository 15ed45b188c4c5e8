"""The FID Inception-v3 (TF graph `inception-2015-12-05`, as pytorch-fid ports it), NHWC.

FID is defined with this network's 2048-d pool3 features; the Inception Score with
its 1008-way classifier. The FID variant differs from torchvision's Inception-v3:
branch average pools exclude the zero padding (`count_include_pad=False`, as
TensorFlow pools) and the last block's pool branch max-pools. Inputs are uint8
images, resized to 299x299 bilinearly (align_corners=False, no antialiasing) and
scaled to [-1, 1] exactly as pytorch-fid does; weights come from its released
state dict `pt_inception-2015-12-05-6726825d.pth` (module names below are its keys).
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
BN_EPS = 1e-3  # torchvision's BasicConv2d
INPUT_SIZE = 299
NUM_FEATURES = 2048
NUM_CLASSES = 1008


class BasicConv(nn.Module):
    """Conv (no bias) + inference batch norm + ReLU; params in the state dict's units."""

    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        w = self.param("kernel", nn.initializers.lecun_normal(),
                       (*self.kernel, x.shape[-1], self.features))
        x = jax.lax.conv_general_dilated(
            x, w, (self.stride, self.stride),
            [(self.padding[0], self.padding[0]), (self.padding[1], self.padding[1])],
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST,
        )
        c = (self.features,)
        gamma = self.param("bn_weight", nn.initializers.ones, c)
        beta = self.param("bn_bias", nn.initializers.zeros, c)
        mean = self.param("bn_mean", nn.initializers.zeros, c)
        var = self.param("bn_var", nn.initializers.ones, c)
        scale = gamma * jax.lax.rsqrt(var + BN_EPS)
        return jax.nn.relu(x * scale + (beta - mean * scale))


def avg_pool_exclude_pad(x):
    """3x3 stride-1 average over the valid pixels only (TF's SAME average pool)."""
    p = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), p)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), p)
    return total / count


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, max_pool(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        row, col = dict(padding=(0, 3)), dict(padding=(3, 0))
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c7, (1, 7), **row, name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), **col, name="branch7x7_3")(b7)
        bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, (7, 1), **col, name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, (1, 7), **row, name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, (7, 1), **col, name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), **row, name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, max_pool(x)], axis=-1)


class InceptionE(nn.Module):
    """`max_pool_branch`: the FID graph's last block max-pools its pool branch."""

    max_pool_branch: bool = False

    @nn.compact
    def __call__(self, x):
        row, col = dict(padding=(0, 1)), dict(padding=(1, 0))
        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv(384, (1, 3), **row, name="branch3x3_2a")(b3),
                              BasicConv(384, (3, 1), **col, name="branch3x3_2b")(b3)], -1)
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv(384, (1, 3), **row, name="branch3x3dbl_3a")(bd),
                              BasicConv(384, (3, 1), **col, name="branch3x3dbl_3b")(bd)], -1)
        pooled = max_pool(x, 3, 1, 1) if self.max_pool_branch else avg_pool_exclude_pad(x)
        bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """uint8 [N, H, W, C] (any size; C = 1 is repeated) -> (pool3 [N, 2048], logits [N, 1008])."""

    @nn.compact
    def __call__(self, images):
        x = image_ops.to_rgb(images.astype(jnp.float32) / 255.0)
        x = image_ops.resize_bilinear(x, (INPUT_SIZE, INPUT_SIZE))
        x = 2.0 * x - 1.0
        x = BasicConv(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = max_pool(x)
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = max_pool(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool_branch=True, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(NUM_CLASSES, precision=HIGHEST, name="fc")(pool3)
        return pool3, logits


_LEAVES = {
    "conv.weight": "kernel", "bn.weight": "bn_weight", "bn.bias": "bn_bias",
    "bn.running_mean": "bn_mean", "bn.running_var": "bn_var",
}


def params_from_state_dict(sd: Mapping[str, np.ndarray], source: str = "state dict") -> dict:
    """pytorch-fid state dict (OIHW) -> FIDInceptionV3 variables (HWIO), shapes checked."""
    params: dict = {}
    for key, value in sd.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key in ("fc.weight", "fc.bias"):
            path, leaf = ["fc"], "kernel" if key == "fc.weight" else "bias"
            value = value.T if leaf == "kernel" else value
        else:
            parts = key.split(".")
            leaf_key = ".".join(parts[-2:])
            if leaf_key not in _LEAVES:
                raise ValueError(f"{source}: unexpected entry {key!r} for the FID Inception")
            path, leaf = parts[:-2], _LEAVES[leaf_key]
            if leaf == "kernel":
                value = np.transpose(value, (2, 3, 1, 0))
        node = params
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = np.asarray(value, np.float32)
    example = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.uint8)
    return check_params({"params": params}, FIDInceptionV3(), (example,), source,
                        "pytorch-fid pt_inception-2015-12-05-*.pth", torch_name)


def torch_name(path: str) -> str:
    """'params/Mixed_5b/branch1x1/kernel' -> 'Mixed_5b.branch1x1.conv.weight'."""
    *modules, leaf = path.split("/")[1:]
    if modules == ["fc"]:
        return f"fc.{'weight' if leaf == 'kernel' else leaf}"
    inverse = {v: k for k, v in _LEAVES.items()}
    return ".".join([*modules, inverse.get(leaf, leaf)])


def load_inception(path: str | Path) -> dict:
    """Variables of FIDInceptionV3 from pytorch-fid's released `.pth` file."""
    return params_from_state_dict(load_state_dict(path), str(path))
