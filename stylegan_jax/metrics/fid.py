"""Fréchet distance between two Gaussians (FID when they model Inception pool3 features).

d² = |μ1 − μ2|² + tr(Σ1) + tr(Σ2) − 2 tr((Σ1 Σ2)^½). The trace of the matrix square
root is taken from eigenvalues: Σ1 Σ2 has the eigenvalues of the symmetric PSD
matrix Σ1^½ Σ2 Σ1^½, so tr((Σ1 Σ2)^½) = Σ √λ. This equals the official
`scipy.linalg.sqrtm` result (pytorch-fid, stylegan2-ada-pytorch) without its complex
round-off parts or its failures on singular covariances (fewer samples than dims).
"""

from __future__ import annotations

import numpy as np


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((Σ1 Σ2)^½) for symmetric positive semi-definite Σ1, Σ2."""
    root = _sqrt_psd(sigma1)
    vals = np.linalg.eigvalsh(root @ sigma2 @ root)
    return float(np.sum(np.sqrt(np.clip(vals, 0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched Gaussians: mu {mu1.shape} / {mu2.shape}, "
                         f"sigma {sigma1.shape} / {sigma2.shape}")
    diff = mu1 - mu2
    tr = np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + tr)
