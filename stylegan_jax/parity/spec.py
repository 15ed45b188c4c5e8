"""A training config in the official loop's terms: the SPEC.json the official driver runs.

Both sides of a parity run must train the same networks with the same schedule, so the
official side's settings are derived from this project's config, never typed twice: the
networks through the same kwargs the converter writes into official pickles, the rest
field by field under the official `train.py` / `training_loop` names.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from stylegan_jax.augment.config import PIPES
from stylegan_jax.convert.torch_kwargs import official_init_kwargs
from stylegan_jax.models.registry import networks_from_config

# Set by the official loop from the dataset (common_kwargs), so not in the network kwargs.
_FROM_DATA = ("c_dim", "img_resolution", "img_channels")


def check_supported(config: ml_collections.ConfigDict) -> None:
    """Parity runs compare with NVIDIA's StyleGAN2-ADA loop: StyleGAN2 configs only."""
    if config.family != "stylegan2":
        raise ValueError(f"config.family={config.family!r}: parity runs train NVIDIA's "
                         "StyleGAN2-ADA beside this project, so they need a stylegan2 config")
    if config.model.num_bf16_res:
        raise ValueError(f"config.model.num_bf16_res={config.model.num_bf16_res}: parity runs "
                         "train in float32 on both sides (the official CPU path has no fp16); "
                         "set --config.model.num_bf16_res=0")
    if config.train.resume:
        raise ValueError("config.train.resume is set: a parity run starts both sides from "
                         "scratch (use --from-official K to start this project from an "
                         "official snapshot)")


def official_spec(config: ml_collections.ConfigDict, c_dim: int, seed: int,
                  snapshot_kimg: list[float]) -> dict[str, Any]:
    """The driver's SPEC.json for `config` trained with `seed`, snapshots at `snapshot_kimg`."""
    check_supported(config)
    nets = networks_from_config(config, c_dim)
    G_kwargs, D_kwargs = ({k: v for k, v in official_init_kwargs(m).items() if k not in _FROM_DATA}
                          for m in (nets.G, nets.D))
    t = config.train
    augment = None if t.aug == "noaug" else {op: 1 for op in PIPES[t.augpipe]}
    return dict(
        random_seed=int(seed),
        total_kimg=float(t.total_kimg),
        snapshot_kimg=[float(k) for k in snapshot_kimg],
        batch_size=int(t.batch_size),
        batch_gpu=int(t.batch_per_device or t.batch_size),
        G_kwargs=G_kwargs,
        D_kwargs=D_kwargs,
        G_opt_kwargs=dict(lr=float(t.g_lr), betas=[float(b) for b in t.betas], eps=float(t.eps)),
        D_opt_kwargs=dict(lr=float(t.d_lr), betas=[float(b) for b in t.betas], eps=float(t.eps)),
        loss_kwargs=dict(r1_gamma=float(t.r1_gamma), style_mixing_prob=float(t.style_mixing_prob),
                         pl_weight=float(t.pl_weight), pl_batch_shrink=int(t.pl_batch_shrink),
                         pl_decay=float(t.pl_decay)),
        G_reg_interval=int(t.g_reg_interval) if t.g_reg_interval else None,
        D_reg_interval=int(t.d_reg_interval) if t.d_reg_interval else None,
        ema_kimg=float(t.ema_kimg),
        ema_rampup=None if t.ema_rampup < 0 else float(t.ema_rampup),
        augment_kwargs=augment,
        augment_p=float(t.aug_p) if augment else 0.0,
        ada_target=float(t.ada_target) if t.aug == "ada" else None,
        ada_interval=int(t.ada_interval),
        ada_kimg=float(t.ada_kimg),
        xflip=bool(config.data.xflip),
        use_labels=bool(c_dim),
        kimg_per_tick=float(config.log.tick_kimg),
    )
