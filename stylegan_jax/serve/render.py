"""One traceable render per network: z, labels, ψ, seeds, input transforms and w offsets
per sample -> images in [-1, 1].

ψ is data here (not a static argument as in `generate`), so one compiled program serves
every truncation. Each family truncates with its own official formula, and ψ = 1 keeps
the untruncated ws exactly, so a served image is the image `stylegan-jax generate`
makes for the same seed, ψ, class or label vector (c is data too: one float32 row per
sample), noise mode (and StyleGAN3 translate / rotate).

Batch-independence: in the `const` and `none` modes a StyleGAN2 / StyleGAN / ProGAN image
does not depend on the rest of its batch, so a batch is one call. In `random` mode every
sample is drawn as its own batch of one with the key `PRNGKey(seed)`: seed N always gives
the image of `generate --seeds N`, whatever else shares its batch. StyleGAN3 samples are
always rendered one by one: its modulated convolutions normalise the styles over the whole
batch (the official `modulated_conv2d`); demodulation cancels that scale, but only up to
rounding, so a shared batch could move a pixel by a level.

StyleGAN3's input transform (the buffer `generate --translate/--rotate` sets) is data per
sample too: each request may move its image. So is a latent edit: an offset [num_ws, w_dim]
added to the ws after mapping and truncation (zeros without an edit), which makes the image
`images_from_ws(net, ws + offset)`, as the edit tool renders it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from stylegan_jax.models import stylegan2
from stylegan_jax.models.registry import Network, family_of
from stylegan_jax.models.sampling import mapping, synthesis, w_shape, with_input_transform


@dataclass(frozen=True)
class Spec:
    """What a client may ask of a network (reported by /api/info)."""

    family: str
    resolution: int  # the shorter side (a square's side)
    channels: int
    z_dim: int
    c_dim: int
    truncates: bool  # ProGAN has no w_avg: ψ must be 1
    moves: bool = False  # StyleGAN3: its input can be translated and rotated
    class_names: tuple[str, ...] = ()  # label k's name, where the network's source records it
    aspect: tuple[int, int] = (1, 1)  # (height, width) multiples of `resolution`
    vector_labels: bool = False  # trained on label vectors: c is a `label`, never a class

    @property
    def height(self) -> int:
        return self.resolution * self.aspect[0]

    @property
    def width(self) -> int:
        return self.resolution * self.aspect[1]


def spec(net: Network, class_names: tuple[str, ...] | None = None,
         label_kind: str | None = None) -> Spec:
    """`label_kind`: what the network's source says it was trained on ('class', 'vector' or
    None: unknown / unconditional, as `store.load.label_kind` reads it)."""
    G = net.module
    family = family_of(G)
    vector = bool(G.c_dim) and label_kind == "vector"
    names = () if vector else tuple(class_names or ())
    if names and len(names) != G.c_dim:
        raise ValueError(f"{len(names)} class names for a generator of {G.c_dim} classes")
    return Spec(family.name, family.resolution(G), family.channels(G), G.z_dim, G.c_dim,
                family.truncation, family.input_transform, names, family.image_shape(G).aspect,
                vector)


def ws_shape(net: Network) -> tuple[int, int]:
    """(num_ws, w_dim) of the ws an edit offsets; (0, 0) for ProGAN, which has none."""
    return w_shape(net.module) if family_of(net.module).w_space else (0, 0)


def _render_batch(net: Network, noise_mode: str, variables, z, c, psi, offsets, key):
    G, psi = net.module, psi[:, None, None]
    family = family_of(G)
    if not family.w_space:  # ProGAN: z straight to images
        return G.apply(variables, z, c, jnp.float32(net.lod))
    ws = mapping(G, variables, z, c, psi)  # ψ per sample, through the family's formula
    return synthesis(G, variables, ws + offsets, key, net.lod, noise_mode)


def make_render(net: Network, noise_mode: str = "const") -> Callable:
    """render(variables, z [N, z_dim], c [N, c_dim], psi [N], seeds [N] uint32,
    transforms [N, 3, 3], offsets [N, num_ws, w_dim]) -> NHWC. `transforms` (StyleGAN3's
    input transform, as `models.sampling.stylegan3_transform` makes it) is ignored by the
    other families, `offsets` (added to the truncated ws) by ProGAN, whose offsets are
    [N, 0, 0]."""
    if noise_mode not in stylegan2.NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {stylegan2.NOISE_MODES}, got {noise_mode!r}")
    moves = family_of(net.module).input_transform

    def render(variables, z, c, psi, seeds, transforms, offsets):
        if noise_mode != "random" and not moves:
            return _render_batch(net, noise_mode, variables, z, c, psi, offsets,
                                 jax.random.PRNGKey(0))

        def one(z1, c1, psi1, seed, transform, offset):
            v = with_input_transform(variables, transform) if moves else variables
            return _render_batch(net, noise_mode, v, z1[None], c1[None], psi1[None],
                                 offset[None], jax.random.PRNGKey(seed))[0]

        return jax.vmap(one)(z, c, psi, seeds, transforms, offsets)

    return render
