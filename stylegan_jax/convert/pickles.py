"""Any official network pickle -> networks, its format and lineage told by the file itself.

    TensorFlow  G_paper / G_style (ProGAN, StyleGAN v1)  -> tf_progressive
                G_main (StyleGAN2, StyleGAN2-ADA TF)     -> tf_stylegan2
    PyTorch     stylegan2-ada-pytorch, stylegan3 code    -> torch_stylegan2 (its StyleGAN3
                                                            generators: torch_stylegan3)

Nothing pickled is ever executed (pickle_reader.py reads them as data).
"""

from __future__ import annotations

from pathlib import Path

from stylegan_jax.convert import tf_progressive, tf_stylegan2, torch_stylegan2
from stylegan_jax.convert.pickle_reader import is_tf_pickle, load_official_pickle, load_tf_pickle
from stylegan_jax.models.registry import Network


def networks_from_tf_pickle(path: str | Path) -> dict[str, Network]:
    """Official TF pickle (G, D, Gs) -> {'G', 'D', 'G_ema': Network}."""
    data = load_tf_pickle(path)
    if tf_stylegan2.is_stylegan2(data[0].build_func_name):
        return tf_stylegan2.networks_from_tf_stylegan2(data, path)
    return tf_progressive.networks_from_tf_records(data, path)


def read_official_pickle(path: str | Path) -> tuple[dict[str, Network], dict | None]:
    """The networks of an official .pkl, and a PyTorch pickle's records (else None: what
    a caller needs of a snapshot beyond its networks, e.g. its augment pipe)."""
    if is_tf_pickle(path):
        return networks_from_tf_pickle(path), None
    data = load_official_pickle(path)
    return torch_stylegan2.networks_from_pickle(path, data), data
