"""Sampling any generator: latents for seeds, labels, the mapping / synthesis halves, and
StyleGAN3's input transform.

Every caller (generate, the training grids, metrics, serve, the tools) renders through
these functions, which ask the family table how each family is called.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.models import stylegan
from stylegan_jax.models.registry import Network, family_label, family_of


def latents_for_seeds(seeds: list[int], z_dim: int) -> np.ndarray:
    """z for each seed: RandomState(seed).randn(z_dim), the official generate.py rule."""
    return np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)


def labels_for(class_idx: int | None, c_dim: int, n: int) -> np.ndarray:
    if c_dim == 0:
        if class_idx is not None:
            raise ValueError("--class given, but the generator is unconditional")
        return np.zeros((n, 0), np.float32)
    if class_idx is None or not 0 <= class_idx < c_dim:
        raise ValueError(f"a conditional generator needs --class in [0, {c_dim}), got {class_idx}")
    c = np.zeros((n, c_dim), np.float32)
    c[:, class_idx] = 1
    return c


def resolve_class(value: str | int | None, c_dim: int,
                  names: tuple[str, ...] | None = None) -> int | None:
    """--class NAME|INDEX -> the class index: a name of `names` (the classes the network
    was trained with), else an integer in [0, c_dim). None stays None."""
    if value is None or isinstance(value, int):
        return value
    text = value.strip()
    if names and text in names:
        return names.index(text)
    try:
        return int(text)
    except ValueError:
        known = (f"one of {', '.join(names)} or an index in [0, {c_dim})" if names else
                 f"an index in [0, {c_dim}) (this network records no class names)")
        raise ValueError(f"--class {value!r}: no such class; expected {known}") from None


def synthesize(module, variables, z, c, key, lod=0.0, psi=1.0, cutoff=None,
               noise_mode="const"):
    """Images in [-1, 1] from any generator family: the one call generation, training
    grids and metrics share. Traceable; `lod` is data (ProGAN / StyleGAN v1; one compile
    for every level of detail), `psi`, `cutoff` and `noise_mode` are static."""
    family = family_of(module)
    if not family.lod:
        return module.apply(variables, z, c, psi, cutoff, noise_mode, rngs={"noise": key})
    lod = jnp.asarray(lod, jnp.float32)
    if not family.truncation:  # ProGAN: no truncation, no noise inputs
        return module.apply(variables, z, c, lod)
    return module.apply(variables, z, c, lod, psi, cutoff, noise_mode, rngs={"noise": key})


synthesize_jit = jax.jit(synthesize, static_argnames=("module", "psi", "cutoff", "noise_mode"))


def w_shape(module) -> tuple[int, int]:
    """(num_ws, w_dim): one w per synthesis layer, for the families that map z to w."""
    family = family_of(module)
    if not family.w_space:
        raise ValueError(f"a {family_label(module)} has no w space (ProGAN maps z straight to "
                         "images); this needs a StyleGAN2 or StyleGAN generator")
    if family.lod:
        return module.num_layers, module.dlatent_size
    return module.num_ws, module.w_dim


def mapping(module, variables, z, c, psi=1.0, cutoff=None):
    """ws [N, num_ws, w_dim] from z (and labels c), truncated toward the average w as the
    official generators truncate. Traceable; `psi` and `cutoff` are static."""
    w_shape(module)
    if not family_of(module).lod:
        return module.apply(variables, z, c, psi, cutoff, method=type(module).mapping_fn)
    ws = module.apply(variables, z, c, method=stylegan.Generator.mapping_fn)
    return module.apply(variables, ws, psi, cutoff, method=stylegan.Generator.truncate_fn)


def synthesis(module, variables, ws, key, lod=0.0, noise_mode="const"):
    """Images in [-1, 1] from ws [N, num_ws, w_dim]. Traceable; `lod` is data (StyleGAN v1),
    `noise_mode` static."""
    w_shape(module)
    if not family_of(module).lod:
        return module.apply(variables, ws, noise_mode, rngs={"noise": key},
                            method=type(module).synthesis_fn)
    return module.apply(variables, ws, jnp.asarray(lod, jnp.float32), noise_mode,
                        rngs={"noise": key}, method=stylegan.Generator.synthesis_fn)


mapping_jit = jax.jit(mapping, static_argnames=("module", "psi", "cutoff"))
synthesis_jit = jax.jit(synthesis, static_argnames=("module", "noise_mode"))


def check_lod(net: Network, lod: float | None) -> float:
    """The level of detail to render at (default: the network's own), validated."""
    G = net.module
    lod = net.lod if lod is None else lod
    if not family_of(G).lod:
        if lod != 0:
            raise ValueError(f"--lod {lod}: StyleGAN2/3 generators have no level of detail")
    elif not 0 <= lod <= G.max_lod:
        raise ValueError(f"--lod must be in [0, {G.max_lod}] for this generator, got {lod}")
    return float(lod)


def stylegan3_transform(translate=(0.0, 0.0), rotate: float = 0.0) -> np.ndarray:
    """The `synthesis.input.transform` that shows the image translated by `translate`
    (fractions of the image's shorter side, the input's unit: of the image on a square) and
    rotated by `rotate` degrees: the inverse of that
    rotation-and-translation, as the official gen_images.py sets it."""
    a = np.deg2rad(rotate)
    m = np.array([[np.cos(a), np.sin(a), translate[0]],
                  [-np.sin(a), np.cos(a), translate[1]],
                  [0.0, 0.0, 1.0]])
    return np.linalg.inv(m).astype(np.float32)


def with_transform(net: Network, translate=(0.0, 0.0), rotate: float = 0.0) -> Network:
    """`net` showing its images translated and rotated (StyleGAN3's input transform)."""
    if not family_of(net.module).input_transform:
        if tuple(translate) != (0.0, 0.0) or rotate != 0.0:
            raise ValueError("--translate / --rotate move StyleGAN3 generators' input; this "
                             f"is a {type(net.module).__module__.rsplit('.', 1)[-1]} generator")
        return net
    matrix = jnp.asarray(stylegan3_transform(translate, rotate))
    return Network(net.module, with_input_transform(net.variables, matrix), net.lod)


def with_input_transform(variables: dict, transform: jax.Array) -> dict:
    """StyleGAN3 `variables` whose input transform buffer is `transform` [3, 3]
    (traceable: serve passes one per sample as data)."""
    buffers = dict(variables["buffers"])
    synthesis = dict(buffers["synthesis"])
    synthesis["input"] = {**synthesis["input"], "transform": transform}
    buffers["synthesis"] = synthesis
    return {**variables, "buffers": buffers}
