"""A directory of networks: `networks.json` (family, class, kwargs) + one msgpack per network.

This is what `stylegan-jax convert` writes and what `generate` (and later the
training code's exports) read. Directories are written beside their destination and
renamed into place when complete, and an existing destination is never overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import serialization

from stylegan_jax.atomic import new_directory
from stylegan_jax.models import progan, stylegan, stylegan2, stylegan3

FORMAT = "stylegan_jax.networks/1"
_CLASSES: dict[str, type[nn.Module]] = {
    "stylegan2.Generator": stylegan2.Generator,
    "stylegan2.Discriminator": stylegan2.Discriminator,
    "stylegan3.Generator": stylegan3.Generator,
    "stylegan.Generator": stylegan.Generator,
    "stylegan.Discriminator": stylegan.Discriminator,
    "progan.Generator": progan.Generator,
    "progan.Discriminator": progan.Discriminator,
}


@dataclass
class Network:
    """A module definition with its variables (`params` and `buffers`).

    `lod` is the level of detail a progressively grown network was left at (the official
    ProGAN / StyleGAN v1 networks keep it as a variable; ours take it per call): 0 is full
    resolution, and a snapshot taken mid-growth renders as it did in training.
    """

    module: nn.Module
    variables: dict
    lod: float = 0.0

    @property
    def class_key(self) -> str:
        for key, cls in _CLASSES.items():
            if type(self.module) is cls:
                return key
        raise TypeError(f"no stored class for {type(self.module).__name__}")


def module_kwargs(module: nn.Module) -> dict[str, Any]:
    """The dataclass fields that define a module (no Flax bookkeeping)."""
    return {
        f: getattr(module, f)
        for f in module.__dataclass_fields__
        if f not in ("parent", "name")
    }


def build_module(class_key: str, kwargs: dict[str, Any]) -> nn.Module:
    if class_key not in _CLASSES:
        raise ValueError(f"unknown network class {class_key!r}; expected one of {sorted(_CLASSES)}")
    cls = _CLASSES[class_key]
    known = set(cls.__dataclass_fields__) - {"parent", "name"}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"{class_key}: unknown kwargs {sorted(unknown)}")
    # JSON turns tuples (e.g. filter taps) into lists; modules need hashable fields.
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})


def save_networks(
    dest: str | Path, networks: dict[str, Network], info: dict[str, Any] | None = None
) -> Path:
    """Writes networks to a new directory `dest`, atomically; refuses an existing one."""
    with new_directory(dest) as tmp:
        manifest = {"format": FORMAT, "networks": {}, "info": info or {}}
        for name, net in networks.items():
            manifest["networks"][name] = {
                "class": net.class_key,
                "kwargs": module_kwargs(net.module),
                "file": f"{name}.msgpack",
            }
            if net.lod:
                manifest["networks"][name]["lod"] = float(net.lod)
            host = jax.tree_util.tree_map(np.asarray, net.variables)
            (tmp / f"{name}.msgpack").write_bytes(serialization.msgpack_serialize(host))
        (tmp / "networks.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(dest).absolute()


def load_networks(path: str | Path) -> dict[str, Network]:
    """Reads a directory written by `save_networks`, or a training workdir's checkpoint:
    the newest (`runs/x`), a chosen one (`runs/x/checkpoints/120000`) or the best by the
    run's metric (`runs/x/checkpoints/best`)."""
    from stylegan_jax.train.export import checkpoint_path, networks_from_workdir

    path = Path(path)
    found = checkpoint_path(path)
    if found is not None:
        return networks_from_workdir(*found)
    manifest_path = path / "networks.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{path} holds no networks.json: not a converted model directory")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    out = {}
    for name, entry in manifest["networks"].items():
        module = build_module(entry["class"], entry["kwargs"])
        blob = (path / entry["file"]).read_bytes()
        variables = jax.tree_util.tree_map(
            jax.numpy.asarray, serialization.msgpack_restore(blob)
        )
        out[name] = Network(module, variables, float(entry.get("lod", 0.0)))
    return out
