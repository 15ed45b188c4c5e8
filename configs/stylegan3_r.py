"""Official `--cfg=stylegan3-r`, the recommended configuration for a resolution.

`--config configs/stylegan3_r.py:res=1024` (default 256; gamma 0.5 * (res / 128)^2 as in
NVIDIA's table, or `:res=512,gamma=8.2`), then point it at your data with e.g.
`--config.data.source=tfrecord --config.data.path=DIR`. See stylegan3_base.py.
"""

from stylegan_jax.configs.stylegan3_base import official_config


def get_config(arg: str | None = None):
    return official_config("r", arg)
