"""Metrics while training: the official metrics of G EMA on the training data, every N kimg.

Built once per run, so the feature networks are loaded once and the real images'
statistics are computed once (then read from the on-disk cache, also by later runs
and by `stylegan-jax metrics` on the same data). Real images come from the run's own
data source at its final resolution, in one pass without mirroring, as NVIDIA's
metrics read a dataset; conditional generators get labels drawn from the dataset's.
Every process takes part (each its share of the images).
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from stylegan_jax.data.real_images import training_images
from stylegan_jax.metrics import feature_stats, weight_files
from stylegan_jax.metrics.detectors import Detectors
from stylegan_jax.metrics.runner import MetricResult, compute_metrics
from stylegan_jax.train import config as config_lib


class Evaluator:
    """`evaluator(G)` -> {metric name: MetricResult} for the run's `metrics.names`."""

    def __init__(self, config: ml_collections.ConfigDict, c_dim: int,
                 detectors: Detectors | None = None):
        m = config.metrics
        self.specs = config_lib.metric_specs(config)
        self.detectors = detectors or Detectors(
            weights={n: m[f"{n}_weights"] or None for n in weight_files.FILES})
        for detector in sorted({s.detector for s in self.specs if s.detector}):
            try:
                self.detectors.check_available(detector)
            except FileNotFoundError as e:
                raise FileNotFoundError(
                    f"config.metrics.names={m.names!r}: {e} While training: "
                    "--config.metrics.<inception|vgg16|lpips>_weights=PATH, or train without "
                    "metrics: --config.metrics.names=''") from None
        self.real = training_images(config)
        self.label_fn = self.real.label_fn(c_dim) if c_dim else None
        self.cache_dir = feature_stats.cache_dir(m.cache_dir or None)
        self.batch_size = m.batch_size
        self.swd_reals: dict = {}  # the reals' SWD descriptors, drawn once per run

    def __call__(self, G, progress: bool = False) -> dict[str, MetricResult]:
        real_batches: Callable = lambda: self.real.batches(self.batch_size)  # noqa: E731
        return compute_metrics(
            self.specs, G, real_batches, self.cache_dir, dataset_key=self.real.key,
            data_identity=self.real.identity, swd_reals=self.swd_reals,
            num_real=self.real.count, label_fn=self.label_fn, detectors=self.detectors,
            batch_size=self.batch_size, seed=0, progress=progress)
