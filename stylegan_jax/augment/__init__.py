"""The ADA augmentation pipe: official operations, named pipes, key or recorded draws.

NHWC images of any height and width; L, RGB or RGBA (alpha: see config.py).
"""

from stylegan_jax.augment.config import PIPES, AugmentConfig, make_config, named_pipe
from stylegan_jax.augment.draws import DrawSource, KeyDraws, RecordedDraws
from stylegan_jax.augment.pipe import augment, check_images, draw_plan

__all__ = ["PIPES", "AugmentConfig", "DrawSource", "KeyDraws", "RecordedDraws", "augment",
           "check_images", "draw_plan", "make_config", "named_pipe"]
