"""The ADA augmentation pipe: official operations, named pipes, key or recorded draws."""

from stylegan_jax.augment.config import PIPES, AugmentConfig, make_config, named_pipe
from stylegan_jax.augment.draws import DrawSource, KeyDraws, RecordedDraws
from stylegan_jax.augment.pipe import augment, draw_plan

__all__ = ["PIPES", "AugmentConfig", "DrawSource", "KeyDraws", "RecordedDraws", "augment",
           "draw_plan", "make_config", "named_pipe"]
