"""The `metrics` section every training config has: what to evaluate while training.

As in the official training loops, metrics run on G EMA at fixed intervals; here each
evaluation also writes a checkpoint carrying the results, so the best one can be kept.
"""

import ml_collections


def metrics_section(names: str = "", best: str = "") -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.names = names  # comma-separated, e.g. "fid50k_full,kid50k_full" ("" = none)
    m.every_kimg = 200.0  # official: every network snapshot (50 ticks x 4 kimg)
    m.best = best  # keep the best checkpoint by this result, e.g. "fid50k_full" ("" = off)
    m.keep_best = 1
    m.batch_size = 64  # images per metrics step on each process
    m.cache_dir = ""  # real-image statistics ("" = $SGJ_METRICS_CACHE or ~/.cache/...)
    # Feature-network weights ("" = $SGJ_<NAME>_WEIGHTS, or the file in $SGJ_METRICS_WEIGHTS).
    m.inception_weights = ""
    m.vgg16_weights = ""
    m.lpips_weights = ""
    return m
