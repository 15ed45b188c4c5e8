"""Low-pass filter design for the alias-free (StyleGAN3) generator, in numpy.

The official network designs its filters once, at construction, with
`scipy.signal.firwin` (a Kaiser-windowed sinc) or, for `stylegan3-r`, a radially
symmetric Kaiser-windowed jinc. scipy is not a runtime dependency here, so both are
written out from their definitions (Kaiser's empirical attenuation / beta formulas, the
windowed ideal low-pass normalised to unit DC gain); tests hold them to scipy.
"""

from __future__ import annotations

import numpy as np


def kaiser_atten(numtaps: int, width: float) -> float:
    """Kaiser's estimate of the stopband attenuation (dB) of a `numtaps` filter whose
    transition band is `width` (a fraction of the Nyquist frequency)."""
    return 2.285 * (numtaps - 1) * np.pi * width + 7.95


def kaiser_beta(atten: float) -> float:
    """Kaiser window shape parameter for an attenuation `atten` in dB."""
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def _check(numtaps: int, cutoff: float, width: float, fs: float) -> None:
    if not isinstance(numtaps, (int, np.integer)) or numtaps < 1:
        raise ValueError(f"numtaps must be a positive integer, got {numtaps!r}")
    if not 0 < cutoff < fs / 2:
        raise ValueError(f"cutoff must lie in (0, fs/2) = (0, {fs / 2:g}), got {cutoff!r}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width!r}")


def kaiser_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """1-D Kaiser-windowed sinc low-pass, unit DC gain (= `scipy.signal.firwin(numtaps,
    cutoff, width=width, fs=fs)`); float64 [numtaps]."""
    _check(numtaps, cutoff, width, fs)
    nyq = fs / 2
    beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))
    m = np.arange(numtaps, dtype=np.float64) - (numtaps - 1) / 2
    c = cutoff / nyq
    h = c * np.sinc(c * m) * np.kaiser(numtaps, beta)
    return h / np.sum(h)


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """Bessel function of the first kind, order 1, from its integral representation
    J1(x) = 1/(2 pi) int_{-pi}^{pi} cos(t - x sin t) dt.

    The integrand is smooth and 2pi-periodic, so the trapezoidal rule converges
    exponentially: 512 nodes give float64 accuracy for |x| up to ~400 (the filters
    here need |x| < ~50).
    """
    x = np.asarray(x, np.float64)
    if np.max(np.abs(x), initial=0.0) > 400:
        raise ValueError("bessel_j1: |x| > 400 is outside the accurate range")
    t = np.linspace(-np.pi, np.pi, 512, endpoint=False)
    return np.mean(np.cos(t - x[..., None] * np.sin(t)), axis=-1)


def jinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """2-D radially symmetric low-pass: jinc (J1(2 pi f_c r) / (pi r)) times the outer
    product of the Kaiser window the 1-D design would use, unit DC gain; float64
    [numtaps, numtaps]. The official `design_lowpass_filter(..., radial=True)`."""
    _check(numtaps, cutoff, width, fs)
    x = (np.arange(numtaps, dtype=np.float64) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    with np.errstate(divide="ignore", invalid="ignore"):
        f = bessel_j1(2 * cutoff * np.pi * r) / (np.pi * r)
    f = np.where(r == 0, cutoff, f)  # the limit at the centre (odd numtaps only)
    beta = kaiser_beta(kaiser_atten(numtaps, width / (fs / 2)))
    w = np.kaiser(numtaps, beta)
    f = f * np.outer(w, w)
    return f / np.sum(f)


def design_lowpass(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> np.ndarray | None:
    """The official layer filter: None for one tap (identity), else the 1-D Kaiser or
    the 2-D jinc design, rounded to float32 as the official buffers are."""
    if numtaps == 1:
        return None
    design = jinc_lowpass if radial else kaiser_lowpass
    return design(numtaps, cutoff, width, fs).astype(np.float32)
