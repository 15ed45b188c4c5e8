"""An exported generator's calling convention: one pure function of arrays to uint8 images,
with the network's variables inside it as constants.

Convention version 1 (the inputs present depend on the generator; `export.json` lists them
in call order):

  z           [batch, z_dim]  float32   latents (input "z"; `generate` draws them per seed)
  c           [batch, c_dim]  float32   one-hot labels, only for conditional generators
  psi         []              float32   truncation ψ (1 = none), not for ProGAN
  noise_seed  []              uint32    only with noise mode "random": the batch's noise is
                                        drawn from PRNGKey(noise_seed), as `generate` draws a
                                        batch's from its first seed
  ws          [batch, num_ws, w_dim] float32   instead of z, c, psi for input "w"
  -> images   [batch, H, W, C] uint8  NHWC, rounded as the official tools round

The batch dimension is symbolic where the format allows it. Inputs of zero width (c of an
unconditional generator) are left out because several runtimes cannot hold them. A
progressively grown generator is exported at its own level of detail; a StyleGAN3
generator with its own input transform, each image computed as if rendered alone (its
styles are normalised per image, `models.registry.Family.each_image_alone`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax import images
from stylegan_jax.models.registry import Network, family_of
from stylegan_jax.models.sampling import check_lod, synthesis, synthesize, w_shape
from stylegan_jax.nn.layers import NOISE_MODES

CONVENTION = 1
BATCH = "batch"  # the symbolic dimension's name in shapes
INPUTS = ("z", "w")


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int | str, ...]  # BATCH where any batch size goes
    dtype: str


@dataclass(frozen=True, eq=False)  # hashed by identity: jax.jit takes its bound `fn`
class Program:
    """`fn(*arrays)` in the order of `inputs` -> `output`; `details` go into export.json.

    The weights are constants of the program. With `barrier` they sit behind an
    optimization barrier, so XLA computes with them as with arguments: the images round as
    `generate`'s do and do not move with the batch size (folded constants round
    differently per compiled shape). TFLite needs them foldable (its float16 weights are
    the constants it finds), so its converter gets the program without.
    """

    apply: Callable  # (variables, *arrays) -> uint8 images
    variables: Any
    inputs: tuple[Tensor, ...]
    output: Tensor
    details: dict[str, Any]
    barrier: bool = True

    def fn(self, *arrays):
        v = jax.lax.optimization_barrier(self.variables) if self.barrier else self.variables
        return self.apply(v, *arrays)

    def describe(self) -> dict[str, Any]:
        return dict(calling_convention=CONVENTION,
                    inputs=[_tensor_json(t) for t in self.inputs],
                    output=_tensor_json(self.output), **self.details)


def arguments(inputs, z, c=None, psi=1.0, noise_seed=0) -> dict[str, Any]:
    """The named arguments of a call with this convention: of z, c, psi and noise_seed,
    those that `inputs` (Tensors, or export.json's input records) name."""
    given = dict(z=z, c=c, psi=np.float32(psi), noise_seed=np.uint32(noise_seed))
    names = [t.name if isinstance(t, Tensor) else t["name"] for t in inputs]
    return {name: given[name] for name in names}


def _tensor_json(t: Tensor) -> dict[str, Any]:
    d = asdict(t)
    d["shape"] = list(t.shape)
    return d


def build(net: Network, input: str = "z", noise_mode: str = "const") -> Program:
    """The program of `net`'s generator taking `input` ("z": latents, labels and ψ; "w":
    ws, the synthesis network alone) with noise mode `noise_mode`."""
    family = family_of(net.module)
    G = family.each_image_alone(net.module)
    if input not in INPUTS:
        raise ValueError(f"--input {input!r}: expected one of {', '.join(INPUTS)}")
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"--noise-mode {noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
    if noise_mode == "random" and not family.noise:
        raise ValueError(f"--noise-mode random: a {family.name} generator has no noise inputs")
    lod = check_lod(net, None)
    res, channels = family.resolution(G), family.channels(G)
    height, width = family.image_shape(G).at(res)
    seeded = noise_mode == "random"

    def key_of(seed):
        return jax.random.PRNGKey(seed if seeded else 0)

    if input == "w":
        num_ws, w_dim = w_shape(G)  # raises for ProGAN, which has no w space
        inputs = [Tensor("ws", (BATCH, num_ws, w_dim), "float32")]

        def render(variables, ws, seed):
            return synthesis(G, variables, ws, key_of(seed), lod, noise_mode)

    else:
        inputs = [Tensor("z", (BATCH, G.z_dim), "float32")]
        if G.c_dim:
            inputs.append(Tensor("c", (BATCH, G.c_dim), "float32"))
        if family.truncation:
            inputs.append(Tensor("psi", (), "float32"))

        def render(variables, z, c, psi, seed):
            return synthesize(G, variables, z, c, key_of(seed), lod, psi=psi,
                              noise_mode=noise_mode)

    if seeded:
        inputs.append(Tensor("noise_seed", (), "uint32"))
    names = [t.name for t in inputs]

    def apply(variables, *arrays):
        given = dict(zip(names, arrays, strict=True))
        batch = given[names[0]].shape[0]
        if input == "z":
            given.setdefault("c", jnp.zeros((batch, 0), jnp.float32))
            given.setdefault("psi", jnp.float32(1))
        given.setdefault("noise_seed", jnp.uint32(0))
        order = ("ws",) if input == "w" else ("z", "c", "psi")
        x = render(variables, *(given[k] for k in order), given["noise_seed"])
        return images.to_uint8(x, xp=jnp)

    details = dict(family=family.name, resolution=res, height=height, width=width,
                   channels=channels, z_dim=int(G.z_dim),
                   c_dim=int(G.c_dim), input=input, noise_mode=noise_mode, lod=lod,
                   truncation=family.truncation)
    if input == "w":
        details.update(num_ws=inputs[0].shape[1], w_dim=inputs[0].shape[2])
    return Program(apply, net.variables, tuple(inputs),
                   Tensor("images", (BATCH, height, width, channels), "uint8"), details)
