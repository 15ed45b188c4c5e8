"""upfirdn2d's hand-written gradient (the adjoint FIR) against JAX's transpose of the same
arithmetic, to first and second order."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_jax.nn import fir, ops


def _images(seed: int, shape) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), shape, jnp.float32, -1, 1)


@pytest.mark.parametrize("f,up,down,pad,shape,second_order", [
    (ops.setup_filter(), 2, 1, (2, 1, 2, 1), (8, 8), True),  # the networks' 2x upsampling
    (ops.setup_filter(), 1, 2, (1, 1, 1, 1), (16, 16), True),  # ... and downsampling
    (None, 2, 1, (6, 5, 6, 5), (9, 11), False),  # the ADA pipe's upsampling padding
    (None, 1, 2, (-1, -1, -1, -1), (26, 30), False),  # its downsampling with crop
    (None, 3, 2, (1, -1, 2, 0), (6, 7), True),  # odd factors, mixed padding
    ("dense", 2, 1, (1, 2, 2, 1), (5, 6), True),  # a non-separable filter
])
def test_gradient_equals_the_transpose_of_the_arithmetic(f, up, down, pad, shape, second_order):
    rng = np.random.default_rng(0)
    if f is None:
        f = np.outer(rng.normal(size=4), rng.normal(size=3))  # asymmetric, separable
    elif isinstance(f, str):
        f = rng.normal(size=(3, 4))
    x = _images(9, (2, *shape, 3))

    def ours(x):
        return fir.upfirdn2d(x, f, up, down, pad, 2.0)

    def reference(x):  # the same arithmetic, differentiated by JAX
        return fir._shifted_adds(x, f, up, down, pad, 2.0)

    ct = _images(10, jax.eval_shape(ours, x).shape)

    @functools.partial(jax.jit, static_argnums=0)
    def check(fn, x):
        out = (fn(x), jax.vjp(fn, x)[1](ct)[0])
        if second_order:  # differentiating the backward uses the adjoint's adjoint
            out += (jax.grad(lambda x: jnp.sum(jax.vjp(fn, x)[1](ct * fn(x))[0] ** 2))(x),)
        return out

    for a, b in zip(check(ours, x), check(reference, x), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
