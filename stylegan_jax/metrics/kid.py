"""Kernel Inception Distance: unbiased MMD² with the cubic polynomial kernel, over subsets.

k(x, y) = (x·y / D + 1)³ on D-dim features. As stylegan2-ada-pytorch computes it:
`num_subsets` times draw m = min(N_real, N_gen, max_subset_size) rows of each set
without replacement and average the unbiased MMD² estimate
  1/(m(m−1)) Σ_{i≠j} [k(x_i, x_j) + k(y_i, y_j)] − 2/m² Σ_{i,j} k(x_i, y_j).
"""

from __future__ import annotations

import numpy as np


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two equally sized feature sets [m, D] (float64)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, d = x.shape
    if y.shape != (m, d) or m < 2:
        raise ValueError(f"need two [m, D] sets with m >= 2, got {x.shape} and {y.shape}")
    a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
    b = (x @ y.T / d + 1) ** 3
    return float((a.sum() - np.trace(a)) / (m * (m - 1)) - 2 * b.sum() / m**2)


def kernel_inception_distance(real: np.ndarray, gen: np.ndarray, num_subsets: int = 100,
                              max_subset_size: int = 1000,
                              rng: np.random.Generator | None = None) -> float:
    """KID of generated features `gen` [N_gen, D] against `real` [N_real, D]."""
    rng = np.random.default_rng(0) if rng is None else rng
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        total += polynomial_mmd2(x, y)
    return total / num_subsets
