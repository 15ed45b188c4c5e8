"""The latent directions behind the page's sliders and the API's `edit`.

From `serve --directions FILE.npz` (made by `stylegan-jax directions`, checked against the
network at start-up), else SeFa computed at start-up (closed form: the style affines'
eigenvectors, well under a second). An edit k:s adds s * sigma_k * v_k to the ws of
direction k's layers (`latent_directions.edit_offset`), after mapping and truncation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylegan_jax.models.registry import Network, family_of
from stylegan_jax.models.sampling import w_shape
from stylegan_jax.serve import params
from stylegan_jax.tools import latent_directions as ld

DEFAULT_SLIDERS = 5


@dataclass(frozen=True)
class Sliders:
    directions: tuple[ld.Direction, ...]
    ws_shape: tuple[int, int]  # (num_ws, w_dim), (0, 0) without a w space
    source: str  # where the directions came from, or why there are none

    @property
    def rule(self) -> params.EditRule:
        if self.directions:
            return params.EditRule(len(self.directions))
        return params.EditRule(0, self.source)

    def offset(self, edits: params.Edits) -> np.ndarray | None:
        """float32 [num_ws, w_dim] to add to the ws, None for no edit."""
        if not edits:
            return None
        return ld.edit_offset(self.directions, edits, *self.ws_shape)

    def describe(self) -> list[dict]:
        return [{"index": k, "name": d.name, "method": d.method, "layers": list(d.layers),
                 "score": d.score, "sigma": d.sigma} for k, d in enumerate(self.directions)]


def none(reason: str) -> Sliders:
    return Sliders((), (0, 0), reason)


def for_network(net: Network, directions: str | Path | None = None,
                count: int | None = None) -> Sliders:
    """The sliders of `net`: the first `count` directions of the file `directions`
    (default: all), else the top `count` SeFa directions (default DEFAULT_SLIDERS);
    count 0 turns them off."""
    if count is not None and count < 0:
        raise ValueError(f"--sliders must be >= 0 (0 turns the sliders off), got {count}")
    G = net.module
    if not family_of(G).w_space:
        if directions is not None or count:
            raise ValueError(f"--directions / --sliders: a {family_of(G).name} generator has "
                             "no w space to edit")
        return none(f"a {family_of(G).name} generator has no w space to edit")
    if count == 0:
        return none("sliders are off on this server (serve --sliders 0)")
    shape = w_shape(G)
    if directions is not None:
        try:
            found = ld.load_directions(directions, *shape)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"--directions: {e}") from None
        except ValueError as e:
            raise ValueError(f"--directions: {e}") from None
        found = found[:count] if count is not None else found
        return Sliders(tuple(found), shape, f"file {Path(directions).name}")
    count = DEFAULT_SLIDERS if count is None else count
    if count > shape[1]:
        raise ValueError(f"--sliders {count}: SeFa gives at most w_dim = {shape[1]} "
                         "directions for this generator")
    try:
        found = ld.sefa(G, net.variables, num=count)
    except ValueError as e:
        raise ValueError(f"--sliders {count}: SeFa failed on this generator ({e}); "
                         "--sliders 0 serves without sliders") from None
    return Sliders(tuple(found), shape, "SeFa, computed at start-up")
