"""Reference files of the metrics' feature networks and the rule that rebuilds their weights.

The weights behind tests/data/feature_nets/*.npz are not stored: they follow a rule
(see the README there) applied to every state-dict entry the file's meta lists.
"""

from __future__ import annotations

import functools
import os
import zlib
from pathlib import Path

import numpy as np
from official_fixtures import DATA, load, read_meta, subdict

BUNDLED = DATA / "feature_nets"


def rule_weight(key: str, shape) -> np.ndarray:
    """The fixture's weight for state-dict entry `key` (README of tests/data/feature_nets)."""
    shape = tuple(shape)
    z = np.random.default_rng(zlib.crc32(key.encode())).standard_normal(shape)
    if key.endswith("running_var"):
        w = 1 + 0.1 * np.abs(z)
    elif key.endswith("running_mean") or key.endswith("bias"):
        w = 0.1 * z
    elif key.endswith("bn.weight"):
        w = 1 + 0.1 * z
    else:
        w = z * np.sqrt(2 / np.prod(shape[1:]))
    return w.astype(np.float32)


def rule_state_dict(keys_and_shapes) -> dict[str, np.ndarray]:
    """{key: rule_weight} for the meta's [[key, shape], ...], `num_batches_tracked` as int64 0."""
    out = {}
    for key, shape in keys_and_shapes:
        if key.endswith("num_batches_tracked"):
            out[key] = np.zeros((), np.int64)
        else:
            out[key] = rule_weight(key, shape)
    return out


def files_of(family: str) -> list[Path]:
    """Files of `family` (meta.family) in tests/data/feature_nets and $SGJ_REFERENCE_DIR."""
    files = [p for p in sorted(BUNDLED.glob("*.npz")) if read_meta(p).get("family") == family]
    extra = os.environ.get("SGJ_REFERENCE_DIR")
    if extra:
        for path in sorted(Path(extra).rglob("*.npz")):
            if path not in files and read_meta(path).get("family") == family:
                files.append(path)
    return files


@functools.cache
def lpips_stand_in() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(VGG16 trunk state dict by the rule, LPIPS linear layers) of the recorded vgg16_lpips
    fixture: the stand-in weight files the projector and attribution tests write."""
    meta, arrays = load(files_of("vgg16_lpips")[0])
    trunk = rule_state_dict([(k, s) for k, s in meta["vgg16_state_dict_keys"]
                             if k.startswith("features.")])
    return trunk, subdict(arrays, "lpips_lin/")
