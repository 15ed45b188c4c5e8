"""Discovery of official reference fixtures (tests/data/official and $SGJ_REFERENCE_DIR)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


def fixture_files(family: str, bundled: Path) -> list[Path]:
    """Every *.npz in `bundled`, plus those of `family` under $SGJ_REFERENCE_DIR (recursive)."""
    files = sorted(bundled.glob("*.npz"))
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
