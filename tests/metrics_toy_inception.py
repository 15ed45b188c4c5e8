"""A toy Inception for the metrics CLI's tests: the real FID Inception weight file, loaded by
the real loader, run through its first layer only.

`toy_pool3` stands in for the FID Inception's forward pass (its 299x299 forward takes
~30 s on the test machines): the images scaled to [-1, 1] as pytorch-fid scales them,
the file's `Conv2d_1a_3x3` (3x3 stride-2 convolution, inference batch norm, ReLU) run by
stylegan_jax's own layer on the variables `inception.load_inception` made of the file,
then averaged over the image: 32 features. `np_toy_pool3` is the same in NumPy, in
float64, from the torch state dict that was written (OIHW kernel, torchvision
BasicConv2d's batch norm, eps 1e-3), without stylegan_jax.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from stylegan_jax.metrics import inception

LAYER = "Conv2d_1a_3x3"
BN_EPS = 1e-3  # torchvision's BasicConv2d, which pytorch-fid's Inception uses


def toy_pool3(variables, images):
    """uint8 [N, H, W, 3] -> {"pool3": [N, 32]} (a `detectors.FEATURES` function)."""
    x = images.astype(jnp.float32) / 255.0 * 2.0 - 1.0
    y = inception.BasicConv(32, (3, 3), stride=2).apply(
        {"params": variables["params"][LAYER]}, x)
    return {"pool3": jnp.mean(y, axis=(1, 2))}


def np_toy_pool3(state_dict, images: np.ndarray) -> np.ndarray:
    """The same from the torch state dict, in NumPy: uint8 NHWC -> [N, 32] float64."""
    x = images.astype(np.float64) / 255.0 * 2.0 - 1.0
    w = np.float64(state_dict[f"{LAYER}.conv.weight"])  # [out, in, kh, kw]
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2]
    y = np.einsum("nijckl,ockl->nijo", win, w)  # torch's conv2d: cross-correlation
    bn = {k: np.float64(state_dict[f"{LAYER}.bn.{k}"])
          for k in ("weight", "bias", "running_mean", "running_var")}
    y = (y - bn["running_mean"]) / np.sqrt(bn["running_var"] + BN_EPS) * bn["weight"] + bn["bias"]
    return np.maximum(y, 0.0).mean(axis=(1, 2))


def np_quantize(img: np.ndarray) -> np.ndarray:
    """stylegan2-ada-pytorch metric_utils: (img * 127.5 + 128).clamp(0, 255).to(uint8)."""
    return np.clip(np.asarray(img, np.float64) * 127.5 + 128, 0, 255).astype(np.uint8)


def np_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """stylegan2-ada-pytorch frechet_inception_distance.py: FeatureStats.get_mean_cov (the
    biased covariance: raw_cov / n - mean mean^T) and sqrtm of sigma_gen @ sigma_real."""
    import scipy.linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False, bias=True), np.cov(f2, rowvar=False, bias=True)
    s = scipy.linalg.sqrtm(s1 @ s2)  # (the official passes disp=False, deprecated in SciPy)
    return float(np.real(np.square(mu1 - mu2).sum() + np.trace(s1 + s2 - s * 2)))
