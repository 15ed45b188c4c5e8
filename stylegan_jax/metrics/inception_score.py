"""Inception Score: exp(E_x KL(p(y|x) || p(y))), mean and std over splits.

As the original TF code and stylegan2-ada-pytorch: class probabilities are the
softmax of pool3 · W over the 1008 classes of the FID Inception, *without* the
output bias (`no_output_bias=True`); the N samples are cut into `num_splits`
consecutive parts, each scored with its own marginal p(y).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def class_probabilities(pool3: jax.Array, fc_kernel: jax.Array) -> jax.Array:
    """[N, 2048] pool3 features, [2048, 1008] classifier weight -> [N, 1008] probabilities."""
    logits = jnp.dot(pool3, fc_kernel, precision=jax.lax.Precision.HIGHEST)
    return jax.nn.softmax(logits, axis=-1)


def inception_score(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the per-split scores of [N, C] class probabilities."""
    probs = np.asarray(probs, np.float64)
    n = probs.shape[0]
    if n < num_splits:
        raise ValueError(f"{n} samples cannot be cut into {num_splits} splits")
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits : (i + 1) * n // num_splits]
        marginal = np.mean(part, axis=0, keepdims=True)
        # 0 · log 0 = 0: a class a sample rules out adds nothing.
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))
