"""A directory of networks: `networks.json` (family, class, kwargs) + one msgpack per network.

This is what `stylegan-jax convert` writes and `store.load` reads. Directories are
written beside their destination and renamed into place when complete, and an existing
destination is never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from stylegan_jax.atomic import new_directory
from stylegan_jax.models.registry import Network, build_module, module_kwargs

FORMAT = "stylegan_jax.networks/1"


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


def is_network_dir(path: str | Path) -> bool:
    return (Path(path) / "networks.json").is_file()


def load_network_dir(path: str | Path) -> dict[str, Network]:
    """Reads a directory written by `save_networks`."""
    path = Path(path)
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


def network_dir_info(path: str | Path) -> dict[str, Any]:
    """The `info` of a directory written by `save_networks` (what made it, class names)."""
    manifest_path = Path(path) / "networks.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{path} holds no networks.json: not a converted model directory")
    info = json.loads(manifest_path.read_text()).get("info") or {}
    return info if isinstance(info, dict) else {}
