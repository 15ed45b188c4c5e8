"""Which trainer trains a family: one per lineage of NVIDIA's training loops."""

from __future__ import annotations

from stylegan_jax.models.registry import family_named
from stylegan_jax.train.progressive.trainer import ProgressiveTrainer
from stylegan_jax.train.stylegan2.trainer import StyleGAN2Trainer

# models.registry.Family.lineage -> its trainer.
TRAINERS = {"stylegan2": StyleGAN2Trainer, "progressive": ProgressiveTrainer}


def trainer_class(family: str):
    """The trainer of `config.family` (ValueError naming the field for an unknown one)."""
    return TRAINERS[family_named(family).lineage]
