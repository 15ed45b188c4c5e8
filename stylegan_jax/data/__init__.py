"""Face datasets: sources, the dataset tool's format, and the training input pipeline.

Nothing here imports tensorflow at import time; only TFDS sources and the dataset tool's
writer do, lazily, and they hide every GPU from it. See ``pipeline`` for the training API.
"""

from stylegan_jax.data.pipeline import (
    Batch,
    Pipeline,
    make_pipeline,
    to_global_array,
    to_pmap_layout,
)
from stylegan_jax.data.shards import DatasetError
from stylegan_jax.data.sources import SourceConfig, bundled_faces

__all__ = [
    "Batch",
    "DatasetError",
    "Pipeline",
    "SourceConfig",
    "bundled_faces",
    "make_pipeline",
    "to_global_array",
    "to_pmap_layout",
]
