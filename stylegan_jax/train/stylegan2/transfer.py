"""Starting a new StyleGAN2 run from trained networks (official `--resume`).

`train.resume` names a network directory, a training run (its newest checkpoint, or
RUN/checkpoints/N) or an official pickle. As the official `copy_params_and_buffers(...,
require_all=False)`, every G, D and G_ema tensor the source has replaces the fresh one
(a shape that differs is an error naming the tensor) and those it lacks stay as
initialised; a run's checkpoint, or an official snapshot pickle's `augment_pipe`, also
gives its ADA strength p. Only a new run takes
them: a rerun of the workdir resumes from its own checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.store import runs
from stylegan_jax.store.load import read_networks

# Resume networks -> the state fields their params and buffers replace.
_TARGETS = {"G": ("G", "G_buffers"), "G_ema": ("G_ema", "G_ema_buffers"), "D": ("D", None)}


def load_source(source: str | Path) -> tuple[dict, float | None]:
    """({'G', 'G_ema', 'D' that the source has: Network}, p or None)."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"train.resume={source}: no such file or directory")
    found = runs.checkpoint_path(path)
    if found is not None:
        checkpoint = runs.read_checkpoint(*found)
        return checkpoint.networks, checkpoint.augment_p
    nets, records = read_networks(path)
    usable = {k: v for k, v in nets.items() if k in _TARGETS}
    if not usable:
        raise ValueError(f"train.resume={source}: holds {sorted(nets)}, none of G, G_ema, D")
    return usable, None if records is None else _official_p(records)


def _official_p(records: dict) -> float | None:
    """The ADA strength a stylegan2-ada-pytorch snapshot keeps (its `augment_pipe.p`)."""
    pipe = records.get("augment_pipe")
    p = pipe.state_dict().get("p") if hasattr(pipe, "state_dict") else None
    return None if p is None or np.size(p) != 1 else float(np.asarray(p).reshape(()))


def apply_resume(state, networks: Mapping, p: float | None, source: str, log=print):
    """The fresh `state` with the source's tensors in place (see the module docstring)."""
    replaced: dict = {}
    missing: list[str] = []
    # A directory of one generator (e.g. a shipped G_ema) starts G and G_ema alike.
    networks = dict(networks)
    for a, b in (("G", "G_ema"), ("G_ema", "G")):
        if a not in networks and b in networks:
            networks[a] = networks[b]
    for name, (params_field, buffers_field) in _TARGETS.items():
        net = networks.get(name)
        if net is None:
            continue
        for field, collection in ((params_field, "params"), (buffers_field, "buffers")):
            if field is None:
                continue
            replaced[field] = _copy_into(getattr(state, field),
                                         net.variables.get(collection, {}),
                                         f"{name}.{collection}", source, missing)
    state = state.replace(**replaced)
    if p is not None and hasattr(state, "augment_p"):
        state = state.replace(augment_p=jnp.asarray(p, jnp.float32))
    log(f"Starting from {source}: {', '.join(sorted(networks))}"
        + (f", augment p {p:.3f}" if p is not None else "")
        + (f"; kept as initialised (not in the source): {', '.join(missing[:8])}"
           + (" ..." if len(missing) > 8 else "") if missing else ""))
    return state


def _copy_into(fresh, source, prefix: str, where: str, missing: list[str]):
    """`fresh` with every leaf that `source` has at the same path (shapes must agree)."""
    src = {_key(path): leaf for path, leaf in
           jax.tree_util.tree_flatten_with_path(source)[0]}

    def take(path, leaf):
        key = _key(path)
        if key not in src:
            missing.append(f"{prefix}.{key}")
            return leaf
        value = np.asarray(src[key])
        if value.shape != leaf.shape:
            raise ValueError(f"train.resume={where}: tensor {prefix}.{key} has shape "
                             f"{value.shape}, this config's network needs {leaf.shape}")
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(take, fresh)


def _key(path) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
