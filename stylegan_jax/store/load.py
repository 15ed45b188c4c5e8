"""The one "load from anything": a network directory, a training run (its newest, a chosen
or its best checkpoint) or an official pickle (PyTorch or TensorFlow, converted in memory
by the converters `stylegan-jax convert` uses), and which of its networks is the generator.
"""

from __future__ import annotations

from pathlib import Path

from stylegan_jax.convert.pickle_reader import UnsafePickleError
from stylegan_jax.convert.pickles import read_official_pickle
from stylegan_jax.models.registry import Network
from stylegan_jax.store import runs
from stylegan_jax.store.networks import load_network_dir, network_dir_info


def read_pickle(source: Path) -> tuple[dict[str, Network], dict | None]:
    """The networks of an official .pkl, and a PyTorch pickle's records (else None)."""
    if not source.is_file():
        raise FileNotFoundError(f"--network: {source} is not a file")
    try:
        return read_official_pickle(source)
    except UnsafePickleError as e:
        raise ValueError(f"{source}: {e}") from None


def read_networks(source: str | Path) -> tuple[dict[str, Network], dict | None]:
    """`load_networks`, and a PyTorch pickle's records (else None): what a caller needs
    of a snapshot beyond its networks (its augment pipe) without reading it twice."""
    source = Path(source)
    if source.suffix == ".pkl":
        return read_pickle(source)
    found = runs.checkpoint_path(source)
    if found is not None:
        return runs.networks_from_workdir(*found), None
    return load_network_dir(source), None


def load_networks(source: str | Path) -> dict[str, Network]:
    """The networks of a network directory, a training workdir (its newest checkpoint, or a
    checkpoint path: `runs/x/checkpoints/120000`, `runs/x/checkpoints/best`) or an official
    .pkl."""
    return read_networks(source)[0]


def generator_name(networks: dict[str, Network], which: str | None = None,
                   source: str | Path = "") -> str:
    """`which`, or by default G_ema if present, else G (the official tools' rule)."""
    which = which or ("G_ema" if "G_ema" in networks else "G")
    if which not in networks:
        raise ValueError(f"{source} has no network {which!r}; it has {sorted(networks)}")
    return which


def load_generator(source: str | Path, which: str | None = None) -> Network:
    """The generator of `load_networks(source)`: `which`, default G_ema if present, else G."""
    nets = load_networks(source)
    return nets[generator_name(nets, which, source)]


def _label_record(source: str | Path) -> dict:
    """What a generator's source records about its labels: a training workdir's checkpoint
    metadata (c_dim, class_names, label_kind), a converted directory's info (class_names,
    label_kind); {} for an official pickle, which carries neither."""
    source = Path(source)
    if source.suffix == ".pkl":
        return {}
    found = runs.checkpoint_path(source)
    return (runs.meta_at(*found) or {}) if found is not None else network_dir_info(source)


def class_names(source: str | Path) -> tuple[str, ...] | None:
    """The names of a conditional generator's classes where its source records them, else
    None (official pickles carry no names)."""
    names = _label_record(source).get("class_names")
    return tuple(names) if names else None


def label_kind(source: str | Path) -> str | None:
    """'vector' where a conditional generator's source records that it was trained on label
    vectors, 'class' where it records classes (runs and directories from before label vectors:
    a c_dim or class names), else None (unconditional, or unknown: official pickles and
    directories converted from them say nothing)."""
    record = _label_record(source)
    return record.get("label_kind") or (
        "class" if record.get("c_dim") or record.get("class_names") else None)
