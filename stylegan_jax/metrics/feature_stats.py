"""Running feature statistics, as NVIDIA's metrics accumulate them, and their disk cache.

Mean and covariance are accumulated as float64 raw moments and the covariance is the
biased one (divided by N, not N - 1), exactly as `metric_utils.FeatureStats` of
stylegan2-ada-pytorch computes it; every feature can be kept too (KID, precision /
recall, IS). A dataset's statistics are cached as `.npz` files named by dataset and
detector, so the pass over the real images runs once per dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np


class FeatureStats:
    """Appends [n, D] feature batches up to `max_items`; keeps moments and/or every row."""

    def __init__(self, capture_all: bool = False, capture_mean_cov: bool = False,
                 max_items: int | None = None):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features: int | None = None
        self.raw_mean: np.ndarray | None = None
        self.raw_cov: np.ndarray | None = None
        self._chunks: list[np.ndarray] = []
        self._all: np.ndarray | None = None

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def remaining(self) -> int | None:
        return None if self.max_items is None else max(self.max_items - self.num_items, 0)

    def append(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32)
        if x.ndim != 2:
            raise ValueError(f"features must be [n, D], got shape {x.shape}")
        if self.max_items is not None:
            x = x[: self.max_items - self.num_items]
        if self.num_features is None:
            self.num_features = x.shape[1]
            self.raw_mean = np.zeros([x.shape[1]], np.float64)
            self.raw_cov = np.zeros([x.shape[1], x.shape[1]], np.float64)
        elif x.shape[1] != self.num_features:
            raise ValueError(f"features have {x.shape[1]} dims, earlier ones {self.num_features}")
        self.num_items += x.shape[0]
        if self.capture_all:
            self._chunks.append(x)
            self._all = None
        if self.capture_mean_cov and x.shape[0]:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def get_all(self) -> np.ndarray:
        if not self.capture_all:
            raise ValueError("these statistics did not keep every feature (capture_all=False)")
        if self._all is None:
            dims = self.num_features or 0
            self._all = (np.concatenate(self._chunks) if self._chunks
                         else np.zeros((0, dims), np.float32))
            self._chunks = [self._all]
        return self._all

    def get_mean_cov(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and biased covariance of all items, or of the first `n` (needs every feature)."""
        n = self.num_items if n is None else n
        if n <= 0 or n > self.num_items:
            raise ValueError(f"asked for statistics of {n} items, {self.num_items} collected")
        if self.capture_mean_cov and n == self.num_items:
            mean = self.raw_mean / n
            return mean, self.raw_cov / n - np.outer(mean, mean)
        x = self.get_all()[:n].astype(np.float64)
        mean = x.mean(axis=0)
        return mean, x.T @ x / n - np.outer(mean, mean)

    # --- cache -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Writes an .npz atomically (temp file + rename), as several processes may race."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"num_items": np.int64(self.num_items),
                  "max_items": np.int64(-1 if self.max_items is None else self.max_items),
                  "flags": np.array([self.capture_all, self.capture_mean_cov])}
        if self.capture_mean_cov and self.raw_mean is not None:
            arrays["raw_mean"], arrays["raw_cov"] = self.raw_mean, self.raw_cov
        if self.capture_all:
            arrays["all"] = self.get_all()
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        with np.load(path) as f:
            capture_all, capture_mean_cov = (bool(v) for v in f["flags"])
            max_items = int(f["max_items"])
            stats = cls(capture_all, capture_mean_cov, None if max_items < 0 else max_items)
            stats.num_items = int(f["num_items"])
            if capture_mean_cov and "raw_mean" in f.files:
                stats.raw_mean, stats.raw_cov = f["raw_mean"], f["raw_cov"]
                stats.num_features = stats.raw_mean.shape[0]
            if capture_all:
                stats._all = f["all"]
                stats._chunks = [stats._all]
                stats.num_features = stats._all.shape[1]
        return stats


CACHE_ENV = "SGJ_METRICS_CACHE"
DEFAULT_CACHE = Path("~/.cache/stylegan_jax/gan-metrics")


def cache_dir(explicit: str | Path | None = None) -> Path:
    """The statistics cache: an explicit directory, else $SGJ_METRICS_CACHE, else the default."""
    return Path(explicit or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def cache_path(cache_dir: str | Path, dataset_key: str, detector: str,
               max_items: int | None, data_identity: dict | None = None) -> Path:
    """`<cache_dir>/<dataset>-<detector>-<md5>.npz`; the md5 covers every input of the pass:
    the data (key and its recorded identity: source, count, manifest hash, resize filter),
    the detector (file names and content hashes) and the image count."""
    args = json.dumps({"dataset": dataset_key, "detector": detector, "max_items": max_items,
                       "data": data_identity}, sort_keys=True, default=str)
    md5 = hashlib.md5(args.encode()).hexdigest()
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in dataset_key)[-60:]
    return Path(cache_dir) / f"{name}-{detector}-{md5}.npz"
