"""Discovery of official reference fixtures (tests/data/official and $SGJ_REFERENCE_DIR)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


def fixture_files(family: str, bundled: Path) -> list[Path]:
    """Every *.npz in `bundled`, plus those of `family` under $SGJ_REFERENCE_DIR (recursive).

    Raises FileNotFoundError when `bundled` holds none: a test parametrized by an empty
    list is skipped, so a missing fixture directory would otherwise pass unnoticed."""
    files = sorted(bundled.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"no *.npz reference fixtures in {bundled}: the tests "
                                f"against the official {family!r} code would not run")
    extra = os.environ.get("SGJ_REFERENCE_DIR")
    if extra:
        for path in sorted(Path(extra).rglob("*.npz")):
            if read_meta(path).get("family") == family and path not in files:
                files.append(path)
    return files


def read_meta(path: Path) -> dict:
    with np.load(path) as data:
        if "meta" not in data.files:
            return {}
        return json.loads(str(data["meta"]))


def load(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "meta"}
        return json.loads(str(data["meta"])), arrays


def subdict(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 2, 3, 1))


def official_init_kwargs(meta: dict) -> tuple[dict, dict]:
    """The official constructor kwargs the fixture's meta describes."""
    g = dict(
        z_dim=meta["z_dim"], c_dim=meta["c_dim"], w_dim=meta["w_dim"],
        img_resolution=meta["img_resolution"], img_channels=meta["img_channels"],
        mapping_kwargs=dict(num_layers=meta["mapping_layers"]),
        synthesis_kwargs=dict(
            channel_base=meta["channel_base"], channel_max=meta["channel_max"],
            num_fp16_res=0, conv_clamp=meta["conv_clamp"],
            architecture=meta["g_architecture"],
        ),
    )
    d = dict(
        c_dim=meta["c_dim"], img_resolution=meta["img_resolution"],
        img_channels=meta["img_channels"], architecture=meta["d_architecture"],
        channel_base=meta["channel_base"], channel_max=meta["channel_max"],
        num_fp16_res=0, conv_clamp=meta["conv_clamp"],
        epilogue_kwargs=dict(
            mbstd_group_size=meta["mbstd_group_size"],
            mbstd_num_channels=meta.get("mbstd_num_channels", 1),
        ),
    )
    return g, d


def official_networks(arrays: dict[str, np.ndarray], meta: dict):
    """(G, D, G variables, D variables) of a `stylegan2_ada` reference file, via the
    project's converter."""
    from stylegan_jax.convert import torch_stylegan2
    from stylegan_jax.models import stylegan2

    g_init, d_init = official_init_kwargs(meta)
    G = stylegan2.Generator(**torch_stylegan2.generator_kwargs(g_init))
    D = stylegan2.Discriminator(**torch_stylegan2.discriminator_kwargs(d_init))
    g_vars = torch_stylegan2.state_dict_to_variables(subdict(arrays, "G/"), G, "G")
    d_vars = torch_stylegan2.state_dict_to_variables(subdict(arrays, "D/"), D, "D")
    return G, D, g_vars, d_vars


def assert_close(name, ours, ref, rel):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != {ref.shape}"
    err = np.max(np.abs(ours - ref))
    bound = rel * np.max(np.abs(ref))
    assert err <= bound, f"{name}: max|ours-ref| = {err:.3e} > {bound:.3e}"
