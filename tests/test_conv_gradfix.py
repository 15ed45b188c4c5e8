"""Resampling convolutions with their own VJPs (nn/conv.py).

Gradients, first and second order, equal those of plain `lax.conv_general_dilated` (the
independent reference); and no training program of any family contains the
"image-sized kernel" convolution that JAX's transpose rule makes of the weight gradient
of an input-dilated convolution (see nn/conv.py), which XLA's GPU backend cannot hand
to cuDNN.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_fixtures
from progressive_fixtures import tiny_config as progressive_config

from stylegan_jax.nn.conv import conv2d
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.progressive import trainer as progressive_trainer
from stylegan_jax.train.stylegan2 import trainer as stylegan2_trainer

# -- one convolution against lax.conv_general_dilated --------------------------------------

# name: (strides, padding, lhs_dilation, groups, kernel size, input H x W)
CONFIGS = {
    "3x3": ((1, 1), ((1, 1), (1, 1)), (1, 1), 1, 3, (6, 6)),
    "1x1": ((1, 1), ((0, 0), (0, 0)), (1, 1), 1, 1, (5, 5)),
    "3x3 stride 2, odd input, asymmetric pad": ((2, 2), ((1, 2), (0, 1)), (1, 1), 1, 3, (7, 6)),
    "4x4 stride 2 (fused down)": ((2, 2), ((1, 1), (1, 1)), (1, 1), 1, 4, (8, 8)),
    "3x3 transposed (FIR up)": ((1, 1), ((2, 3), (2, 3)), (2, 2), 1, 3, (4, 5)),
    "4x4 transposed, asymmetric pad": ((1, 1), ((2, 1), (3, 2)), (2, 2), 1, 4, (5, 5)),
    "stride 2 in H only": ((2, 1), ((0, 1), (1, 1)), (1, 1), 1, 3, (9, 8)),
    "dilated in W only": ((1, 1), ((1, 1), (2, 1)), (1, 2), 1, 3, (6, 4)),
    "cropping pad": ((1, 1), ((-1, 1), (0, 2)), (1, 1), 1, 3, (6, 6)),
    "3 groups": ((1, 1), ((1, 1), (1, 1)), (1, 1), 3, 3, (6, 6)),
    "2 groups, stride 2": ((2, 2), ((1, 1), (0, 1)), (1, 1), 2, 3, (7, 7)),
    "2 groups, transposed": ((1, 1), ((2, 3), (2, 3)), (2, 2), 2, 3, (4, 4)),
    # No padding (on XLA:CPU computed padded and cropped), and StyleGAN3's "full" 3x3
    # convolution, whose input gradient is such a convolution.
    "3x3 unpadded, 2 groups": ((1, 1), ((0, 0), (0, 0)), (1, 1), 2, 3, (7, 6)),
    "3x3 full (StyleGAN3)": ((1, 1), ((2, 2), (2, 2)), (1, 1), 1, 3, (6, 7)),
}
# float32: rounding only; bfloat16: the two formulations round differently (8-bit mantissa).
TOLERANCE = {jnp.float32: 2e-5, jnp.bfloat16: 3e-2}


def _reference(x, w, strides, padding, lhs_dilation, groups):
    return jax.lax.conv_general_dilated(
        x, w, strides, padding, lhs_dilation=lhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _problem(name, dtype, seed=0):
    """(custom conv, reference conv, x, w, output weights t) for one configuration."""
    strides, padding, dil, groups, k, (h, wd) = CONFIGS[name]
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, h, wd, 2 * groups)), dtype)
    w = jnp.asarray(rng.normal(size=(k, k, 2, 3 * groups)) / k, dtype)
    ours = lambda x, w: conv2d(x, w, strides, padding, dil, groups)  # noqa: E731
    ref = lambda x, w: _reference(x, w, strides, padding, dil, groups)  # noqa: E731
    t = jnp.asarray(rng.normal(size=ref(x, w).shape), dtype)
    return ours, ref, x, w, t


def _assert_close(got, want, dtype, what):
    for a, b, arg in zip(got, want, ("x", "w"), strict=True):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        scale = float(np.abs(b).max())
        assert scale > 0, f"{what} wrt {arg}: the reference is all zeros"
        np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE[dtype] * scale,
                                   err_msg=f"{what} wrt {arg}")


def _score(conv, t):
    """A scalar that is not linear in the conv's output (so second orders do not vanish)."""
    return lambda x, w: jnp.sum(jnp.tanh(conv(x, w)).astype(jnp.float32) * t)


def _r1(conv, t):
    """R1's shape: |d score / d input|^2, differentiated again (wrt input and weight)."""
    score = _score(conv, t)
    return lambda x, w: jnp.sum(jnp.square(jax.grad(score)(x, w).astype(jnp.float32)))


def _path_length(conv, t):
    """The path-length shape: styles scale the conv's input; |d score / d styles| is
    differentiated wrt the features and the weight."""
    def pl(x, w):
        def score(styles):
            return _score(conv, t)(x * styles, w)
        styles = jnp.ones(x.shape[-1:], x.dtype) * 0.7
        return jnp.sqrt(jnp.sum(jnp.square(jax.grad(score)(styles).astype(jnp.float32))))
    return pl


@functools.cache
def _gradients(name, dtype):
    """(ours, reference): forward, first-order, R1 and path-length second-order gradients,
    each implementation in one compiled function."""
    ours, ref, x, w, t = _problem(name, dtype)

    def everything(conv):
        return {"forward": conv(x, w),
                "gradient": jax.grad(_score(conv, t), argnums=(0, 1))(x, w),
                "R1 double backward": jax.grad(_r1(conv, t), argnums=(0, 1))(x, w),
                "path-length double backward": jax.grad(_path_length(conv, t),
                                                        argnums=(0, 1))(x, w)}

    return jax.jit(lambda: everything(ours))(), jax.jit(lambda: everything(ref))()


DTYPES = pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])


@pytest.mark.parametrize("name", CONFIGS)
def test_forward_is_the_plain_convolution(name):
    got, want = _gradients(name, jnp.float32)
    np.testing.assert_array_equal(got["forward"], want["forward"])


@DTYPES
@pytest.mark.parametrize("name", CONFIGS)
def test_first_order_gradients_equal_lax(name, dtype):
    got, want = _gradients(name, dtype)
    assert [g.dtype for g in got["gradient"]] == [dtype, dtype]
    _assert_close(got["gradient"], want["gradient"], dtype, "gradient")


@DTYPES
@pytest.mark.parametrize("name", CONFIGS)
def test_second_order_gradients_equal_lax(name, dtype):
    got, want = _gradients(name, dtype)
    for what in ("R1 double backward", "path-length double backward"):
        _assert_close(got[what], want[what], dtype, what)


def test_third_order_gradient_equals_lax():
    """The rule holds at every order: the gradient of R1's weight gradient."""
    ours, ref, x, w, t = _problem("3x3 transposed (FIR up)", jnp.float32, seed=2)

    def third(conv):
        loss = lambda x, w: jnp.sum(jnp.tanh(jax.grad(_r1(conv, t), 1)(x, w)))  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)

    _assert_close(third(ours), third(ref), jnp.float32, "third-order gradient")


@pytest.mark.parametrize("name", CONFIGS)
def test_gradients_never_use_an_image_as_an_input_dilated_kernel(name):
    """Up to second order, every input-dilated conv takes the weight's kernel size, and
    the weight gradient of a resampling conv is window-dilated (rhs_dilation)."""
    ours, _, x, w, t = _problem(name, jnp.float32)
    hlo = jax.jit(jax.grad(_r1(ours, t), argnums=(0, 1))).lower(x, w).as_text(dialect="hlo")
    convs = hlo_convolutions(hlo)
    for c in convs:
        if max(c["lhs_dilate"]) > 1:
            assert c["size"] == w.shape[:2], c["line"]
    strides, _, dil, *_ = CONFIGS[name]
    if max(strides + dil) > 1:
        assert any(max(c["rhs_dilate"]) > 1 for c in convs), "no window-dilated weight gradient"


@pytest.mark.parametrize("kwargs, match", [
    (dict(strides=(2, 2), lhs_dilation=(2, 2)), "up or down, not both"),
    (dict(groups=2), "groups=2"),
    (dict(padding=((1, 1),)), "two"),
    (dict(strides=(2,)), "strides"),
])
def test_bad_arguments_are_named(kwargs, match):
    x, w = jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 3, 4))
    with pytest.raises(ValueError, match=match):
        conv2d(x, w, **kwargs)


# -- the compiled training programs ------------------------------------------------------

_CONV = re.compile(r"= (\w+)\[([\d,]*)\][^ ]* convolution\(.*window=\{([^}]*)\}")


def hlo_convolutions(hlo: str) -> list[dict]:
    """Every convolution of an HLO module: output type and shape, window size, dilations."""
    convs = []
    for line in hlo.splitlines():
        m = _CONV.search(line)
        if not m:
            continue
        window = dict(part.split("=", 1) for part in m.group(3).split())
        convs.append({"line": line.strip(), **{
            key: tuple(int(v) for v in window.get(key, "1x1").split("x"))
            for key in ("size", "lhs_dilate", "rhs_dilate")}})
    return convs


def weight_windows(params) -> set[tuple[int, int]]:
    """Spatial sizes a convolution weight can have: the HWIO params' k x k and the TF
    networks' summed (k+1) x (k+1) kernels of the fused resampling convs."""
    sizes = set()
    for leaf in jax.tree_util.tree_leaves(params):
        if leaf.ndim == 4:
            h, w = leaf.shape[:2]
            sizes |= {(h, w), (h + 1, w + 1)}
    return sizes


def _abstract_batch(b, res, ch):
    return (jax.ShapeDtypeStruct((b, res, res, ch), jnp.uint8),
            jax.ShapeDtypeStruct((b, 0), jnp.float32), jax.ShapeDtypeStruct((1, 0), jnp.float32))


def _lowered_programs():
    """name -> (HLO text before XLA's passes - what every backend is handed -, the kernel
    sizes of the networks' weights), lowered for one device."""
    backend = Backend("shard_map", devices=jax.devices()[:1])
    programs = {}

    config = train_fixtures.tiny_config(batch_size=4)
    trainer = stylegan2_trainer.StyleGAN2Trainer(config, c_dim=0)
    state = jax.eval_shape(trainer.init_state, 0)
    windows = weight_windows((state.G, state.D))
    batch = _abstract_batch(4, config.data.resolution, config.data.channels)
    for flags, name in (((False, False), "main"), ((True, False), "main+Greg"),
                        ((False, True), "main+Dreg"), ((True, True), "main+Greg+Dreg")):
        fn = stylegan2_trainer.compiled_iteration(backend, trainer.nets, trainer.cfg, flags)
        programs[f"stylegan2 {name}"] = (fn.lower(state, *batch).as_text(dialect="hlo"),
                                         windows)

    for family in ("progan", "stylegan"):
        config = progressive_config(family, batch_size=4)
        if family == "stylegan":  # "auto" would fuse from 128x128 only (ProGAN: always)
            config.model.fused_scale = "True"
        trainer = progressive_trainer.ProgressiveTrainer(config, c_dim=0)
        state = jax.eval_shape(trainer.init_state, 0)
        stage = trainer.stage_at(10**9)  # the last stage: every layer is live
        fn = progressive_trainer.compiled_iteration(
            backend, trainer.nets, trainer.cfg, trainer.schedule,
            trainer.plans[stage.index], do_g=True)  # D and G
        batch = _abstract_batch(4, stage.resolution, config.data.channels)
        programs[f"{family} last stage"] = (fn.lower(state, *batch).as_text(dialect="hlo"),
                                            weight_windows((state.G, state.D)))
    return programs


@pytest.fixture(scope="module")
def lowered_programs():
    return _lowered_programs()


PROGRAMS = ["stylegan2 main", "stylegan2 main+Greg", "stylegan2 main+Dreg",
            "stylegan2 main+Greg+Dreg", "progan last stage", "stylegan last stage"]


@pytest.mark.parametrize("name", PROGRAMS)
def test_no_input_dilated_convolution_takes_an_image_as_its_kernel(lowered_programs, name):
    """An input-dilated conv must be an upsampling conv or an input gradient (kernel: a
    reversed weight), never a weight gradient (kernel: the cotangent image)."""
    hlo, windows = lowered_programs[name]
    convs = hlo_convolutions(hlo)
    dilated = [c for c in convs if max(c["lhs_dilate"]) > 1]
    # The scan must see the resampling convs at all, else it would pass vacuously.
    assert dilated, f"{name}: no input-dilated convolution among {len(convs)}"
    bad = [c["line"] for c in dilated if c["size"] not in windows]
    assert not bad, (f"{name}: {len(bad)} of {len(dilated)} input-dilated convolutions take a "
                     f"kernel that is no weight (sizes {sorted(windows)}):\n" + "\n".join(bad))
