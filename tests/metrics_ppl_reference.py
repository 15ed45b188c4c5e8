"""A generator whose images are a known function of w, an LPIPS stand-in whose distance is
a known function of the images, and perceptual path length recomputed in NumPy from them.

The NumPy side follows stylegan2-ada-pytorch `metrics/perceptual_path_length.py`
(PPLSampler.forward and compute_ppl) step by step, in float64: slerp of z (space 'z') or
lerp of w (space 'w') at t and t + epsilon, the face crop (rows 3/8..7/8, columns
2/8..6/8), box-downsampling by img_resolution // 256, the dynamic range [-1, 1] ->
[0, 255], grayscale repeated to RGB, distance / epsilon**2, then the mean between the 1st
('lower') and 99th ('higher') percentiles. It uses nothing of stylegan_jax.

The official code hands [0, 255] images to NVIDIA's vgg16.pt; stylegan_jax's LPIPS
(lpips package layout, `detectors.lpips_distance`) takes [-1, 1], i.e. x / 127.5 - 1 of
those. The stand-in (`weighted_sq_l2`) is therefore a function of images in [-1, 1]: the
reference maps the official [0, 255] image there, and any other range reaching the
distance (the raw [0, 255] image, [0, 1], a clipped or quantised image) changes it.
Like VGG16, the stand-in takes RGB only.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.metrics.detectors import Detectors
from stylegan_jax.models import registry

NUM_WS = 2
NOISE_RES = 8


class ClosedFormGenerator(nn.Module):
    """mapping: w = z @ M + m, the same w for each of NUM_WS layers.
    synthesis: x = the flattened ws, f = [x @ A, (x @ B)**2] ([N, 2K]); image =
    sum_k f_k * U_k[h] * V_k[w] * C_k[c] (a separable pattern per feature, different on
    every row and column, so that a crop or a downsampling shows) + strength * noise_const.
    Images are not clipped: they leave [-1, 1], as a real generator's do."""

    z_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    c_dim: int = 0

    @property
    def num_ws(self) -> int:
        return NUM_WS

    def mapping_fn(self, z, c, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
        p = self.variables["params"]
        w = jnp.dot(z, p["M"], precision=jax.lax.Precision.HIGHEST) + p["m"]
        return jnp.broadcast_to(w[:, None, :], (w.shape[0], NUM_WS, self.w_dim))

    def synthesis_fn(self, ws, noise_mode="random", update_emas=False):
        assert noise_mode == "const", noise_mode  # PPL: the pair's shared noise buffers
        p = self.variables["params"]
        x = ws.reshape(ws.shape[0], -1)
        hi = jax.lax.Precision.HIGHEST
        f = jnp.concatenate([jnp.dot(x, p["A"], precision=hi),
                             jnp.square(jnp.dot(x, p["B"], precision=hi))], axis=-1)
        # sum_k f_k U_k[h] V_k[w] C_k[c] as one matmul: [N, H, K] @ [K, W * C]
        rows = f[:, None, :] * p["U"].T[None]
        vc = (p["V"][:, :, None] * p["C"][:, None, :]).reshape(f.shape[1], -1)
        img = jnp.dot(rows, vc, precision=hi).reshape(
            ws.shape[0], self.img_resolution, self.img_resolution, self.img_channels)
        # noise_const is NOISE_RES² (drawing res² noise per pair is slow on the tests' 8 CPU
        # devices), spread over the image in blocks
        r = self.img_resolution // NOISE_RES
        noise = jnp.repeat(jnp.repeat(self.variables["buffers"]["noise_const"], r, 0), r, 1)
        return img + p["noise_strength"] * noise[None, :, :, None]


def closed_form_variables(G: ClosedFormGenerator, seed: int = 0, k: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    res, x_dim = G.img_resolution, NUM_WS * G.w_dim
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    params = dict(
        M=f32(rng.standard_normal((G.z_dim, G.w_dim)) / np.sqrt(G.z_dim)),
        m=f32(0.3 * rng.standard_normal(G.w_dim)),
        A=f32(0.5 * rng.standard_normal((x_dim, k))),
        B=f32(0.6 * rng.standard_normal((x_dim, k))),
        U=f32(rng.uniform(-1.0, 1.5, (2 * k, res))),
        V=f32(rng.uniform(-1.0, 1.5, (2 * k, res))),
        C=f32(rng.uniform(0.2, 1.0, (2 * k, G.img_channels))),
        noise_strength=np.float32(0.7),
    )
    buffers = {"noise_const": f32(rng.standard_normal((NOISE_RES, NOISE_RES)))}
    return {"params": params, "buffers": buffers}


def register_as_stylegan2(monkeypatch) -> None:
    """Lets the metrics take ClosedFormGenerator for a StyleGAN2 generator (PPL accepts
    only those: it needs the z -> w split and the noise_const buffers, which it has)."""
    family = dataclasses.replace(registry.FAMILIES["stylegan2"], generator=ClosedFormGenerator)
    monkeypatch.setitem(registry.FAMILIES, "closed_form_test", family)


LIN = np.array([0.5, 1.0, 2.0])  # the stand-in's per-channel weights ("lin" layer)


def weighted_sq_l2(variables, a, b):
    """LPIPS stand-in on [N, H, W, 3] images in [-1, 1]: the mean over pixels of the
    channel-weighted squared difference (LPIPS's shape: weights per channel, a spatial
    mean, one number an image)."""
    assert a.shape[-1] == b.shape[-1] == 3, (a.shape, b.shape)  # VGG16 takes RGB
    return jnp.mean(jnp.einsum("nhwc,c->nhw", jnp.square(a - b), variables["lin"],
                               precision=jax.lax.Precision.HIGHEST), axis=(1, 2))


def stand_in_detectors() -> Detectors:
    return Detectors(preloaded={"lpips": {"lin": LIN.astype(np.float32)}},
                     functions={"lpips": weighted_sq_l2}, ids={"lpips": "weighted_sq_l2"})


# --- the NumPy reference (float64) -------------------------------------------------------

def np_mapping(p, z):
    w = z @ np.float64(p["M"]) + np.float64(p["m"])
    return np.repeat(w[:, None, :], NUM_WS, axis=1)


def np_synthesis(p, ws):
    """NCHW images, as the official code holds them, without the noise term: it is the
    same in both images of a pair, so it cancels in their difference."""
    x = ws.reshape(ws.shape[0], -1)
    f = np.concatenate([x @ np.float64(p["A"]), np.square(x @ np.float64(p["B"]))], axis=-1)
    U, V, C = (np.float64(p[k]) for k in "UVC")
    img = (f[:, None, :] * U.T[None]) @ (V[:, :, None] * C[:, None, :]).reshape(len(U), -1)
    n, h = img.shape[:2]
    return img.reshape(n, h, V.shape[1], C.shape[1]).transpose(0, 3, 1, 2)


def np_slerp(a, b, t):
    """stylegan2-ada-pytorch metrics/perceptual_path_length.py slerp, in NumPy."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    d = (a * b).sum(axis=-1, keepdims=True)
    p = t * np.arccos(d)
    c = b - d * a
    c = c / np.linalg.norm(c, axis=-1, keepdims=True)
    d = a * np.cos(p) + c * np.sin(p)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def np_pair_lengths(p, z0, z1, t, *, space, crop, img_resolution, img_channels,
                    epsilon=1e-4):
    """PPLSampler.forward for one batch of pairs (z0, z1 [n, z_dim], t [n])."""
    if space == "w":
        w = np_mapping(p, np.concatenate([z0, z1]))
        w0, w1 = np.split(w, 2)
        tt = t[:, None, None]
        wt0, wt1 = w0 + (w1 - w0) * tt, w0 + (w1 - w0) * (tt + epsilon)  # torch lerp
    else:
        zt0 = np_slerp(z0, z1, t[:, None])
        zt1 = np_slerp(z0, z1, t[:, None] + epsilon)
        wt0, wt1 = np.split(np_mapping(p, np.concatenate([zt0, zt1])), 2)
    img = np_synthesis(p, np.concatenate([wt0, wt1]))  # [2n, C, H, W]
    if crop:
        assert img.shape[2] == img.shape[3]
        c = img.shape[2] // 8
        img = img[:, :, c * 3 : c * 7, c * 2 : c * 6]
    factor = img_resolution // 256
    if factor > 1:
        img = img.reshape([-1, img.shape[1], img.shape[2] // factor, factor,
                           img.shape[3] // factor, factor]).mean((3, 5))
    img = (img + 1) * (255 / 2)  # the official dynamic range for vgg16.pt
    if img_channels == 1:
        img = np.repeat(img, 3, axis=1)
    x = img / 127.5 - 1  # what stylegan_jax's LPIPS (and so the stand-in) takes
    a, b = np.split(x, 2)
    dist = np.mean(np.einsum("nchw,c->nhw", np.square(a - b), LIN), axis=(1, 2))
    return dist / epsilon**2


def np_ppl(dist) -> float:
    """compute_ppl's aggregation."""
    dist = np.asarray(dist)
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(np.extract(np.logical_and(dist >= lo, dist <= hi), dist).mean())
