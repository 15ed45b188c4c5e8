"""Networks that ship inside the package, so the tools work right after `pip install`.

Each is a network directory (`stylegan_jax.store.networks` format) trained by this project's
own `train` command; the README says how each was made.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT = "faces32"


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(p.name for p in here.iterdir() if (p / "networks.json").is_file())


def path(name: str = DEFAULT) -> Path:
    """The directory of a shipped network (load it with `store.load.load_networks`)."""
    found = Path(__file__).parent / name
    if not (found / "networks.json").is_file():
        raise FileNotFoundError(
            f"no shipped network {name!r} in {Path(__file__).parent}; shipped: {available()}"
        )
    return found
