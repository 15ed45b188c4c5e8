"""Pieces shared by the feature networks: pooling and checking imported parameters."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def max_pool(x: jax.Array, size: int = 3, stride: int = 2, pad: int = 0) -> jax.Array:
    """NHWC max pool; padding (if any) never wins, as in torch."""
    p = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1),
                                 (1, stride, stride, 1), p)


def _flat_shapes(tree) -> dict[str, tuple[int, ...]]:
    return {"/".join(str(k.key) for k in path): tuple(np.shape(leaf))
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """HWIO -> OIHW, [in, out] -> [out, in]: a kernel's shape as the state dict has it."""
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(reversed(shape))


def check_params(variables: dict, module: nn.Module, inputs: tuple[jax.ShapeDtypeStruct, ...],
                 source: str, expected: str,
                 torch_name: Callable[[str], str] | None = None) -> dict:
    """`variables` as device arrays; ValueError naming `source` and `expected` unless every
    parameter `module` (called on `inputs`) needs is there with its shape, and nothing else.

    `torch_name` maps a parameter path to its state-dict key, so that the error names
    the entries of the user's file (kernel shapes then shown in torch's layout).
    """
    want = _flat_shapes(jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs))
    have = _flat_shapes(variables)

    def name(k: str) -> str:
        return torch_name(k) if torch_name else k

    def shape(k: str, s: tuple[int, ...]) -> tuple[int, ...]:
        return torch_shape(s) if torch_name and k.endswith("kernel") else s

    missing = sorted(name(k) for k in set(want) - set(have))
    extra = sorted(name(k) for k in set(have) - set(want))
    wrong = [f"{name(k)} {shape(k, have[k])} != {shape(k, want[k])}"
             for k in sorted(set(want) & set(have)) if have[k] != want[k]]
    problems = [(label, items) for label, items in
                (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)) if items]
    if problems:
        detail = "; ".join(f"{label}: {items[:4]}{' …' if len(items) > 4 else ''}"
                           for label, items in problems)
        raise ValueError(f"{source}: not a {expected} state dict ({detail})")
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), variables)
