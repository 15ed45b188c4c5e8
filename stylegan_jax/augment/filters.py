"""Wavelet low-pass filters of the ADA pipe and the 4-band filter bank built from them.

`SYM6` is the orthogonal low-pass filter of the geometric path (2x upsampling before the
resampling, 2x downsampling after it); `SYM2` (Daubechies-2, here in closed form) defines
the filter bank of image-space filtering. Both are the published Symlet coefficients.
"""

from __future__ import annotations

import numpy as np

_S3 = np.sqrt(3.0)
# Daubechies 2 / Symlet 2 low-pass (1 -/+ sqrt 3, 3 -/+ sqrt 3) / (4 sqrt 2).
SYM2 = np.array([1 - _S3, 3 - _S3, 3 + _S3, 1 + _S3]) / (4 * np.sqrt(2.0))
SYM6 = np.array([
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057,
    -0.048311742585633, 0.4910559419267466, 0.787641141030194,
    0.3379294217276218, -0.07263752278646252, -0.021060292512300564,
    0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
])

# Expected power of natural images in the four bands (a 1/f spectrum), used to keep the
# total power unchanged when one band is amplified.
BAND_POWER = np.array([10.0, 1.0, 1.0, 1.0]) / 13


def filter_bank(lowpass: np.ndarray = SYM2, bands: int = 4) -> np.ndarray:
    """[bands, taps] symmetric 1-D filters that split a signal into octave bands.

    Band 0 is the lowest octave, band `bands - 1` the highest; the rows sum to a unit
    impulse, so amplifying every band by 1 changes nothing. Built as the official pipe
    does: each step dilates the existing bands by 2 and smooths them with the low-pass
    power response H(z)H(1/z)/2, then adds the high-pass power response H(-z)H(-1/z)/2
    as the new band.
    """
    lo = np.asarray(lowpass, np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.zeros((bands, 1))
    bank[0, 0] = 1.0
    for band in range(1, bands):
        dilated = np.zeros((bands, 2 * bank.shape[1] - 1))
        dilated[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in dilated])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start:start + hi2.size] += hi2
    return bank
