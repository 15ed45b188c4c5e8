"""How a score was made, recorded beside it: a number without its settings, counts, detector
file, real data and software cannot be compared with another (the FFHQ-256 resize filter
alone moves FID from 4.3 to 5.3: stylegan2-ada-pytorch #283).

`record` builds the dict every metric result carries (metric-*.jsonl lines, the `metrics`
command's output, the checkpoint a training run evaluated); `digest` turns such a dict into
the part of a cache key that must change whenever any of it does.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import jax

from stylegan_jax.metrics.registry import MetricSpec


@functools.cache
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file (cached per path, size and modification time)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: str | Path) -> str:
    st = Path(path).stat()
    return file_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.cache
def software() -> dict[str, Any]:
    """This package's version and, in a git checkout, its commit (`dirty`: tracked files
    changed since), plus the JAX version."""
    try:
        version = metadata.version("stylegan_jax")
    except metadata.PackageNotFoundError:
        version = None
    root = Path(__file__).resolve().parents[2]
    commit = dirty = None
    if (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                    capture_output=True, text=True, timeout=10).stdout.strip()
            changes = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                      "--untracked-files=no"], check=True, capture_output=True,
                                     text=True, timeout=10).stdout
            dirty = bool(changes.strip())
        except (OSError, subprocess.SubprocessError):
            commit = dirty = None
    return dict(stylegan_jax=version, commit=commit, dirty=dirty, jax=jax.__version__)


def settings(spec: MetricSpec) -> dict[str, Any]:
    """The metric's definition, only the fields its kind uses."""
    shared = ("name", "kind", "num_gen", "max_real")
    used = {"kid": ("num_subsets", "max_subset_size"),
            "pr": ("nhood_size", "row_batch_size", "col_batch_size"),
            "is": ("num_splits",), "ppl": ("space", "sampling", "crop", "epsilon"),
            "eq": ("mode",)}.get(spec.kind, ())
    values = dataclasses.asdict(spec)
    return {k: values[k] for k in (*shared, *used)}


def record(spec: MetricSpec, *, num_real: int | None, detector: dict | None,
           data: dict | None, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Everything that made one metric result (see the module doc)."""
    return dict(settings=settings(spec),
                counts=dict(generated=spec.num_gen, real=num_real),
                detector=detector, data=data, evaluation=evaluation, software=software())


def digest(parts: Any) -> str:
    """A short stable hash of JSON-able `parts` (cache keys)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
