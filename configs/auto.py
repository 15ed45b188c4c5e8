"""Official preset `auto`: hyperparameters derived from resolution and device count.

The official rule (train.py, cfg `auto`): batch = max(min(gpus * min(4096 // res, 32), 64),
gpus), mbstd group = min(batch // gpus, 4), fmaps = 1 at >= 512 else 0.5, lr = 0.002 at
1024 else 0.0025, gamma = 0.0002 * res**2 / batch, ema = batch * 10 / 32 kimg, rampup
0.05, mapping depth 2. Choose them with `get_config("res=256,gpus=8")`.
"""

from stylegan_jax.configs.stylegan2_base import apply_official_preset, base


def get_config(arg: str | None = None):
    opts = dict(res="256", gpus="8")
    for item in (arg or "").split(","):
        if item:
            key, _, value = item.partition("=")
            if key not in opts:
                raise ValueError(f"configs/auto.py: unknown option {key!r}; expected res=, gpus=")
            opts[key] = value
    res, gpus = int(opts["res"]), int(opts["gpus"])
    mb = max(min(gpus * min(4096 // res, 32), 64), gpus)
    c = base()
    apply_official_preset(
        c, res=res, mb=mb, mbstd=min(mb // gpus, 4), fmaps=1 if res >= 512 else 0.5,
        lrate=0.002 if res >= 1024 else 0.0025, gamma=0.0002 * res**2 / mb,
        ema=mb * 10 / 32, ramp=0.05, mapping=2)
    c.data.source = "tfrecord"
    c.data.channels = 3
    return c
