"""LPIPS 0.1 with the VGG16 trunk (`lpips.LPIPS(net='vgg', version='0.1')`), NHWC.

The perceptual path length measures image change with this distance. Images in
[-1, 1] are shifted and scaled per channel (the package's ScalingLayer), run through
torchvision's VGG16 conv layers; each of the five relu*_* maps is normalised to unit
length over channels, the squared differences are weighted per channel by the
released linear layer (`weights/v0.1/vgg.pth`: `lin<k>.model.1.weight`), averaged
over space and summed over the five layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.metrics import vgg
from stylegan_jax.metrics.net_utils import check_params
from stylegan_jax.metrics.torch_weights import load_state_dict

SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
CHANNELS = (64, 128, 256, 512, 512)
NORM_EPS = 1e-10


def _unit(x):
    return x / (jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True)) + NORM_EPS)


class LPIPS(nn.Module):
    """Two float image batches [N, H, W, 3] in [-1, 1] -> distances [N]."""

    @nn.compact
    def __call__(self, a, b):
        trunk = vgg.VGG16Features(name="vgg")
        n = a.shape[0]
        taps, _ = trunk((jnp.concatenate([a, b]) - SHIFT) / SCALE)
        total = jnp.zeros((n,), jnp.float32)
        for k, (feat, ch) in enumerate(zip(taps, CHANNELS, strict=True)):
            w = self.param(f"lin{k}", nn.initializers.ones, (ch,))
            diff = jnp.square(_unit(feat[:n]) - _unit(feat[n:]))
            total = total + jnp.mean(jnp.einsum("nhwc,c->nhw", diff, w,
                                                precision=jax.lax.Precision.HIGHEST),
                                     axis=(1, 2))
        return total


def lin_weights(sd: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """The five [C] weights from a v0.1 state dict (`lin<k>.…` or `lins.<k>.…` names)."""
    out = {}
    for k, ch in enumerate(CHANNELS):
        for key in (f"lin{k}.model.1.weight", f"lins.{k}.model.1.weight"):
            if key in sd:
                w = np.asarray(sd[key], np.float32)
                if w.size != ch:
                    raise ValueError(
                        f"{source}: {key} has shape {w.shape}, expected (1, {ch}, 1, 1)")
                out[f"lin{k}"] = w.reshape(ch)
                break
        else:
            raise ValueError(f"{source}: no lin{k}.model.1.weight: not an LPIPS v0.1 vgg "
                             "state dict (the lpips package's weights/v0.1/vgg.pth)")
    return out


def params_from_state_dicts(vgg_sd: Mapping[str, np.ndarray], lin_sd: Mapping[str, np.ndarray],
                            vgg_source: str = "vgg16 state dict",
                            lin_source: str = "lpips state dict") -> dict:
    """torchvision VGG16 conv layers + LPIPS linear layers -> LPIPS variables."""
    missing = [k for k in vgg.feature_keys(classifier=False) if k not in vgg_sd]
    if missing:
        raise ValueError(
            f"{vgg_source}: not a torchvision vgg16 state dict (missing {missing[:4]})")
    params = {"vgg": vgg.features_params(vgg_sd), **lin_weights(lin_sd, lin_source)}
    example = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    return check_params({"params": params}, LPIPS(), (example, example),
                        f"{vgg_source} + {lin_source}",
                        "torchvision vgg16-*.pth + LPIPS v0.1 vgg.pth", vgg.torch_name)


def load_lpips(vgg16_path: str | Path, lpips_path: str | Path) -> dict:
    """LPIPS variables from torchvision's `vgg16-*.pth` and LPIPS's v0.1 `vgg.pth`."""
    vgg_sd = load_state_dict(vgg16_path, vgg.feature_keys(classifier=False))
    return params_from_state_dicts(vgg_sd, load_state_dict(lpips_path), str(vgg16_path),
                                   str(lpips_path))
