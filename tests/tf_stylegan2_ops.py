"""NVIDIA's TF StyleGAN2 networks, re-expressed with TensorFlow 2 ops (a test anchor).

Written from NVlabs/stylegan2 (commit bf0fe0b) `dnnlib/tflib/ops/upfirdn_2d.py`
(`_upfirdn_2d_ref`, `upsample_2d`, `upsample_conv_2d`, `conv_downsample_2d`),
`dnnlib/tflib/ops/fused_bias_act.py` (`_fused_bias_act_ref`) and
`training/networks_stylegan2.py` (`get_weight`, `dense_layer`, `conv2d_layer`,
`apply_bias_act`, `modulated_conv2d_layer`, `minibatch_stddev_layer`, `G_mapping`, the
truncation of `G_main`, `G_synthesis_stylegan2`, `D_stylegan2`), keeping their sequence of
TensorFlow operations: the same reshapes, kernel transposes and flips, strides, paddings,
filter normalisation and gains, so that the maths is TensorFlow's own and not a
transcription shared with stylegan_jax/convert or tests/tf_stylegan2_pickle.py.

Where this differs from NVIDIA's code, and why (none changes what is computed):

- TF 1 graph building -> TF 2 eager; `tf.get_variable` -> `Vars.get`, which creates each
  variable under the same scoped name and shape on first use (so the names and shapes of
  a pickle come from running these functions, as NVIDIA's Network templates do).
  Variables NVIDIA initialises to zero (biases, `mod_bias`, `noise_strength`,
  `dlatent_avg`) get random values here, so that each one changes the output.
- NVIDIA runs its convolutions in NCHW (`data_format='NCHW'`); TensorFlow's CPU kernels
  take NHWC only, so `_conv2d` / `_conv2d_transpose` transpose the data to NHWC around
  the op and back. Kernels are passed exactly as NVIDIA's code prepares them.
- TF's CPU kernel has no grouped transposed convolution (the fused modulated up-conv
  with minibatch > 1), so `_conv2d_transpose` runs each group through the op on its
  own slice of the input channels and of the kernel's `in_channels` axis and
  concatenates the outputs: the definition of a grouped convolution.
- Only the code paths the tests use: `randomize_noise=False`, no labels, float32.
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf


class Vars:
    """`tf.get_variable` stand-in: scoped name -> float32 array.

    Missing variables are created with `rng` (normal with the given std); `used` lists
    the names read, in order.
    """

    def __init__(self, values: dict | None = None, seed: int = 0, zero_std: float = 0.5):
        self.values = {} if values is None else dict(values)
        self.rng = np.random.default_rng(seed)
        self.zero_std = zero_std  # std of what NVIDIA initialises to zeros
        self.used: list[str] = []
        self._scope: list[str] = []

    @contextlib.contextmanager
    def scope(self, name: str):
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    def path(self, name: str = "") -> str:
        return "/".join([*self._scope, name] if name else self._scope)

    def get(self, name: str, shape, std: float | None = None) -> tf.Tensor:
        """`std` None: a variable NVIDIA initialises to zeros (gets `zero_std` here)."""
        full = self.path(name)
        shape = tuple(int(s) for s in shape)
        if full not in self.values:
            scale = self.zero_std if std is None else std
            self.values[full] = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        value = np.asarray(self.values[full], np.float32)
        assert value.shape == shape, (full, value.shape, shape)
        self.used.append(full)
        return tf.constant(value)


# ---------------------------------------------------------------------------------
# dnnlib/tflib/ops: NCHW convolutions on CPU, upfirdn_2d (ref), resampling convs


def _conv2d(x, w, strides, padding):
    """`tf.nn.conv2d(x, w, strides, padding, data_format='NCHW')`, run in NHWC."""
    y = tf.nn.conv2d(tf.transpose(x, [0, 2, 3, 1]), w,
                     strides=[1, strides[2], strides[3], 1], padding=padding)
    return tf.transpose(y, [0, 3, 1, 2])


def _conv2d_transpose(x, w, output_shape, strides, padding):
    """`tf.nn.conv2d_transpose(..., data_format='NCHW')` (w [kh, kw, out, in]), run in
    NHWC, one group at a time when the kernel's `out` axis holds one group's outputs."""
    n, c, h, wd = output_shape
    x = tf.transpose(x, [0, 2, 3, 1])
    nhwc_strides = [1, strides[2], strides[3], 1]
    groups = c // w.shape[2]
    cin = x.shape[3] // groups
    assert w.shape[3] == x.shape[3] and groups * w.shape[2] == c
    parts = [tf.nn.conv2d_transpose(x[..., g * cin:(g + 1) * cin], w[..., g * cin:(g + 1) * cin],
                                    output_shape=[n, h, wd, w.shape[2]], strides=nhwc_strides,
                                    padding=padding)
             for g in range(groups)]
    y = parts[0] if groups == 1 else tf.concat(parts, axis=3)
    return tf.transpose(y, [0, 3, 1, 2])


def upfirdn_2d_ref(x, k, upx=1, upy=1, downx=1, downy=1, padx0=0, padx1=0, pady0=0, pady1=0):
    """`_upfirdn_2d_ref`: x [major, H, W, minor]; pad, upsample, FIR filter, downsample."""
    k = np.asarray(k, dtype=np.float32)
    in_h, in_w, minor = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = k.shape
    # Upsample: a zero after each pixel.
    x = tf.reshape(x, [-1, in_h, 1, in_w, 1, minor])
    x = tf.pad(x, [[0, 0], [0, 0], [0, upy - 1], [0, 0], [0, upx - 1], [0, 0]])
    x = tf.reshape(x, [-1, in_h * upy, in_w * upx, minor])
    # Pad (crop where negative).
    x = tf.pad(x, [[0, 0], [max(pady0, 0), max(pady1, 0)], [max(padx0, 0), max(padx1, 0)],
                   [0, 0]])
    x = x[:, max(-pady0, 0):x.shape[1] - max(-pady1, 0),
          max(-padx0, 0):x.shape[2] - max(-padx1, 0), :]
    # Convolve with the filter (flipped: a true convolution by a correlation op).
    x = tf.transpose(x, [0, 3, 1, 2])
    ph, pw = in_h * upy + pady0 + pady1, in_w * upx + padx0 + padx1
    x = tf.reshape(x, [-1, 1, ph, pw])
    f = tf.constant(k[::-1, ::-1, np.newaxis, np.newaxis], dtype=x.dtype)
    x = _conv2d(x, f, strides=[1, 1, 1, 1], padding="VALID")
    x = tf.reshape(x, [-1, minor, ph - kh + 1, pw - kw + 1])
    x = tf.transpose(x, [0, 2, 3, 1])
    # Downsample: keep every down-th pixel.
    return x[:, ::downy, ::downx, :]


def setup_kernel(k) -> np.ndarray:
    k = np.asarray(k, dtype=np.float32)
    if k.ndim == 1:
        k = np.outer(k, k)
    return k / np.sum(k)


def simple_upfirdn_2d(x, k, up=1, down=1, pad0=0, pad1=0):
    """`_simple_upfirdn_2d` for NCHW x: each channel as its own image."""
    c = x.shape[1]
    y = tf.reshape(x, [-1, x.shape[2], x.shape[3], 1])
    y = upfirdn_2d_ref(y, k, upx=up, upy=up, downx=down, downy=down,
                       padx0=pad0, padx1=pad1, pady0=pad0, pady1=pad1)
    return tf.reshape(y, [-1, c, y.shape[1], y.shape[2]])


def upsample_2d(x, k, factor=2, gain=1):
    k = setup_kernel(k) * (gain * factor**2)
    p = k.shape[0] - factor
    return simple_upfirdn_2d(x, k, up=factor, pad0=(p + 1) // 2 + factor - 1, pad1=p // 2)


def downsample_2d(x, k, factor=2, gain=1):
    k = setup_kernel(k) * gain
    p = k.shape[0] - factor
    return simple_upfirdn_2d(x, k, down=factor, pad0=(p + 1) // 2, pad1=p // 2)


def upsample_conv_2d(x, w, k, factor=2, gain=1):
    """`upsample_conv_2d` (NCHW): w [kh, kw, in, out], grouped when x has more channels.

    The kernel is reshaped per group, flipped in both spatial axes and its in / out axes
    swapped for `conv2d_transpose` (stride `factor`, VALID), then the FIR filter pads.
    """
    conv_h, conv_w, in_c, out_c = w.shape
    assert conv_w == conv_h
    k = setup_kernel(k) * (gain * factor**2)
    p = (k.shape[0] - factor) - (conv_w - 1)
    stride = [1, 1, factor, factor]
    output_shape = [x.shape[0], out_c, (x.shape[2] - 1) * factor + conv_h,
                    (x.shape[3] - 1) * factor + conv_w]
    num_groups = x.shape[1] // in_c
    # Transpose weights.
    w = tf.reshape(w, [conv_h, conv_w, in_c, num_groups, -1])
    w = tf.transpose(w[::-1, ::-1], [0, 1, 4, 3, 2])
    w = tf.reshape(w, [conv_h, conv_w, -1, num_groups * in_c])
    x = _conv2d_transpose(x, w, output_shape=output_shape, strides=stride, padding="VALID")
    return simple_upfirdn_2d(x, k, pad0=(p + 1) // 2 + factor - 1, pad1=p // 2 + 1)


def conv_downsample_2d(x, w, k, factor=2, gain=1):
    """`conv_downsample_2d` (NCHW): the FIR filter pads, then a strided VALID conv."""
    conv_h, conv_w = w.shape[0], w.shape[1]
    assert conv_w == conv_h
    k = setup_kernel(k) * gain
    p = (k.shape[0] - factor) + (conv_w - 1)
    x = simple_upfirdn_2d(x, k, pad0=(p + 1) // 2, pad1=p // 2)
    return _conv2d(x, w, strides=[1, 1, factor, factor], padding="VALID")


ACTIVATIONS = {  # fused_bias_act: name -> (func, default alpha, default gain)
    "linear": (lambda x, alpha: x, None, 1.0),
    "lrelu": (lambda x, alpha: tf.nn.leaky_relu(x, alpha), 0.2, np.sqrt(2)),
}


def fused_bias_act(x, b=None, axis=1, act="linear", alpha=None, gain=None):
    """`_fused_bias_act_ref`: x + b (along `axis`), the activation, times the gain."""
    func, def_alpha, def_gain = ACTIVATIONS[act]
    alpha = def_alpha if alpha is None else alpha
    gain = def_gain if gain is None else gain
    if b is not None:
        x += tf.reshape(b, [-1 if i == axis else 1 for i in range(len(x.shape))])
    x = func(x, alpha=alpha)
    if gain != 1:
        x *= gain
    return x


# ---------------------------------------------------------------------------------
# training/networks_stylegan2.py: layers


def get_weight(v: Vars, shape, gain=1, lrmul=1, weight_var="weight"):
    """Equalized learning rate: stored at std 1 / lrmul, scaled by he_std * lrmul."""
    fan_in = np.prod(shape[:-1])
    he_std = gain / np.sqrt(fan_in)
    init_std, runtime_coef = 1.0 / lrmul, he_std * lrmul
    return v.get(weight_var, shape, std=init_std) * runtime_coef


def dense_layer(v: Vars, x, fmaps, gain=1, lrmul=1, weight_var="weight"):
    if len(x.shape) > 2:
        x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
    w = get_weight(v, [x.shape[1], fmaps], gain=gain, lrmul=lrmul, weight_var=weight_var)
    return tf.matmul(x, w)


def conv2d_layer(v: Vars, x, fmaps, kernel, up=False, down=False, resample_kernel=None,
                 gain=1, lrmul=1, weight_var="weight"):
    assert not (up and down) and kernel >= 1 and kernel % 2 == 1
    w = get_weight(v, [kernel, kernel, x.shape[1], fmaps], gain=gain, lrmul=lrmul,
                   weight_var=weight_var)
    if up:
        return upsample_conv_2d(x, w, k=resample_kernel)
    if down:
        return conv_downsample_2d(x, w, k=resample_kernel)
    return _conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME")


def apply_bias_act(v: Vars, x, act="linear", alpha=None, gain=None, lrmul=1, bias_var="bias"):
    b = v.get(bias_var, [x.shape[1]]) * lrmul
    return fused_bias_act(x, b=b, act=act, alpha=alpha, gain=gain)


def modulated_conv2d_layer(v: Vars, x, y, fmaps, kernel, up=False, down=False,
                           demodulate=True, resample_kernel=None, gain=1, lrmul=1,
                           fused_modconv=True, weight_var="weight",
                           mod_weight_var="mod_weight", mod_bias_var="mod_bias"):
    """x [N, I, H, W] (NCHW), y: this layer's dlatent [N, w_dim]."""
    assert not (up and down) and kernel >= 1 and kernel % 2 == 1
    w = get_weight(v, [kernel, kernel, x.shape[1], fmaps], gain=gain, lrmul=lrmul,
                   weight_var=weight_var)
    ww = w[np.newaxis]  # [BkkIO]
    # Modulate: style = dense(w) + mod_bias, + 1.
    s = dense_layer(v, y, fmaps=x.shape[1], weight_var=mod_weight_var)  # [BI]
    s = apply_bias_act(v, s, bias_var=mod_bias_var) + 1
    ww *= s[:, np.newaxis, np.newaxis, :, np.newaxis]
    # Demodulate.
    if demodulate:
        d = tf.math.rsqrt(tf.reduce_sum(tf.square(ww), axis=[1, 2, 3]) + 1e-8)  # [BO]
        ww *= d[:, np.newaxis, np.newaxis, np.newaxis, :]
    if fused_modconv:  # the minibatch as convolution groups
        x = tf.reshape(x, [1, -1, x.shape[2], x.shape[3]])
        w = tf.reshape(tf.transpose(ww, [1, 2, 3, 0, 4]),
                       [ww.shape[1], ww.shape[2], ww.shape[3], -1])
    else:
        x *= s[:, :, np.newaxis, np.newaxis]
    if up:
        x = upsample_conv_2d(x, w, k=resample_kernel)
    elif down:
        x = conv_downsample_2d(x, w, k=resample_kernel)
    else:
        x = _conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME")
    if fused_modconv:
        x = tf.reshape(x, [-1, fmaps, x.shape[2], x.shape[3]])
    elif demodulate:
        x *= d[:, :, np.newaxis, np.newaxis]
    return x


def minibatch_stddev_layer(x, group_size=4, num_new_features=1):
    group_size = min(group_size, x.shape[0])
    s = x.shape  # [NCHW]
    y = tf.reshape(x, [group_size, -1, num_new_features, s[1] // num_new_features, s[2], s[3]])
    y -= tf.reduce_mean(y, axis=0, keepdims=True)
    y = tf.reduce_mean(tf.square(y), axis=0)
    y = tf.sqrt(y + 1e-8)
    y = tf.reduce_mean(y, axis=[2, 3, 4], keepdims=True)
    y = tf.reduce_mean(y, axis=[2])
    y = tf.tile(y, [group_size, 1, s[2], s[3]])
    return tf.concat([x, y], axis=1)


# ---------------------------------------------------------------------------------
# training/networks_stylegan2.py: networks (no labels, randomize_noise=False)


def _nf(fmap_base, fmap_max, fmap_decay=1.0, fmap_min=1):
    return lambda stage: int(np.clip(int(fmap_base / (2.0 ** (stage * fmap_decay))),
                                     fmap_min, fmap_max))


def G_mapping(v: Vars, latents, dlatent_size, mapping_layers, mapping_fmaps,
              dlatent_broadcast, mapping_lrmul=0.01):
    x = latents
    x *= tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=1, keepdims=True) + 1e-8)
    for layer_idx in range(mapping_layers):
        with v.scope(f"Dense{layer_idx}"):
            fmaps = dlatent_size if layer_idx == mapping_layers - 1 else mapping_fmaps
            x = apply_bias_act(v, dense_layer(v, x, fmaps=fmaps, lrmul=mapping_lrmul),
                               act="lrelu", lrmul=mapping_lrmul)
    return tf.tile(x[:, np.newaxis], [1, dlatent_broadcast, 1])


def truncation(dlatents, dlatent_avg, truncation_psi, truncation_cutoff=None):
    """G_main's truncation trick: lerp(dlatent_avg, dlatents, per-layer psi)."""
    layer_idx = np.arange(dlatents.shape[1])[np.newaxis, :, np.newaxis]
    layer_psi = np.ones(layer_idx.shape, dtype=np.float32)
    if truncation_cutoff is None:
        layer_psi *= truncation_psi
    else:
        layer_psi = np.where(layer_idx < truncation_cutoff, layer_psi * truncation_psi,
                             layer_psi).astype(np.float32)
    return dlatent_avg + (dlatents - dlatent_avg) * layer_psi  # tflib.lerp


def G_synthesis_stylegan2(v: Vars, dlatents, dlatent_size, num_channels, resolution,
                          fmap_base, fmap_max, architecture="skip",
                          resample_kernel=(1, 3, 3, 1), fused_modconv=True):
    """(images [N, C, H, W], {scope of each noise layer: (noise variable, its output)})."""
    resolution_log2 = int(np.log2(resolution))
    nf = _nf(fmap_base, fmap_max)
    num_layers = resolution_log2 * 2 - 2
    assert tuple(dlatents.shape[1:]) == (num_layers, dlatent_size)
    kernel = list(resample_kernel)
    layers = {}

    noise_inputs = []
    for layer_idx in range(num_layers - 1):
        res = (layer_idx + 5) // 2
        name = f"noise{layer_idx}"
        noise_inputs.append((v.path(name), v.get(name, [1, 1, 2**res, 2**res], std=1.0)))

    def layer(x, layer_idx, fmaps, kernel_size, up=False):
        x = modulated_conv2d_layer(v, x, dlatents[:, layer_idx], fmaps=fmaps, kernel=kernel_size,
                                   up=up, resample_kernel=kernel, fused_modconv=fused_modconv)
        noise_name, noise = noise_inputs[layer_idx]
        noise_strength = v.get("noise_strength", [])
        x += noise * noise_strength
        x = apply_bias_act(v, x, act="lrelu")
        layers[v.path()] = (noise_name, x)
        return x

    def block(x, res):
        t = x
        with v.scope("Conv0_up"):
            x = layer(x, layer_idx=res * 2 - 5, fmaps=nf(res - 1), kernel_size=3, up=True)
        with v.scope("Conv1"):
            x = layer(x, layer_idx=res * 2 - 4, fmaps=nf(res - 1), kernel_size=3)
        if architecture == "resnet":
            with v.scope("Skip"):
                t = conv2d_layer(v, t, fmaps=nf(res - 1), kernel=1, up=True,
                                 resample_kernel=kernel)
                x = (x + t) * (1 / np.sqrt(2))
        return x

    def torgb(x, y, res):
        with v.scope("ToRGB"):
            t = apply_bias_act(v, modulated_conv2d_layer(
                v, x, dlatents[:, res * 2 - 3], fmaps=num_channels, kernel=1, demodulate=False,
                fused_modconv=fused_modconv))
            return t if y is None else y + t

    y = None
    with v.scope("4x4"):
        with v.scope("Const"):
            x = v.get("const", [1, nf(1), 4, 4], std=1.0)
            x = tf.tile(x, [dlatents.shape[0], 1, 1, 1])
        with v.scope("Conv"):
            x = layer(x, layer_idx=0, fmaps=nf(1), kernel_size=3)
        if architecture == "skip":
            y = torgb(x, y, 2)
    for res in range(3, resolution_log2 + 1):
        with v.scope(f"{2**res}x{2**res}"):
            x = block(x, res)
            if architecture == "skip":
                y = upsample_2d(y, k=kernel)
            if architecture == "skip" or res == resolution_log2:
                y = torgb(x, y, res)
    return y, layers


def D_stylegan2(v: Vars, images, resolution, fmap_base, fmap_max, architecture="resnet",
                mbstd_group_size=4, mbstd_num_features=1, resample_kernel=(1, 3, 3, 1)):
    """images [N, C, H, W] -> scores [N, 1] (no labels)."""
    resolution_log2 = int(np.log2(resolution))
    nf = _nf(fmap_base, fmap_max)
    kernel = list(resample_kernel)

    def fromrgb(x, y, res):
        with v.scope("FromRGB"):
            t = apply_bias_act(v, conv2d_layer(v, y, fmaps=nf(res - 1), kernel=1), act="lrelu")
            return t if x is None else x + t

    def block(x, res):
        t = x
        with v.scope("Conv0"):
            x = apply_bias_act(v, conv2d_layer(v, x, fmaps=nf(res - 1), kernel=3), act="lrelu")
        with v.scope("Conv1_down"):
            x = apply_bias_act(v, conv2d_layer(v, x, fmaps=nf(res - 2), kernel=3, down=True,
                                               resample_kernel=kernel), act="lrelu")
        if architecture == "resnet":
            with v.scope("Skip"):
                t = conv2d_layer(v, t, fmaps=nf(res - 2), kernel=1, down=True,
                                 resample_kernel=kernel)
                x = (x + t) * (1 / np.sqrt(2))
        return x

    x, y = None, images
    for res in range(resolution_log2, 2, -1):
        with v.scope(f"{2**res}x{2**res}"):
            if architecture == "skip" or res == resolution_log2:
                x = fromrgb(x, y, res)
            x = block(x, res)
            if architecture == "skip":
                y = downsample_2d(y, k=kernel)
    with v.scope("4x4"):
        if architecture == "skip":
            x = fromrgb(x, y, 2)
        if mbstd_group_size > 1:
            x = minibatch_stddev_layer(x, mbstd_group_size, mbstd_num_features)
        with v.scope("Conv"):
            x = apply_bias_act(v, conv2d_layer(v, x, fmaps=nf(1), kernel=3), act="lrelu")
        with v.scope("Dense0"):
            x = apply_bias_act(v, dense_layer(v, x, fmaps=nf(0)), act="lrelu")
    with v.scope("Output"):
        x = apply_bias_act(v, dense_layer(v, x, fmaps=1))
    return x
