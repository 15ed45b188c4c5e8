"""Metric names and definitions, as the official `metric_main.py` registers them.

Official names: fid50k_full, kid50k_full, pr50k3_full, ppl2_wend, is50k (primary);
eqt50k_int, eqt50k_frac, eqr50k (StyleGAN3's equivariance PSNRs); fid50k, kid50k,
pr50k3, ppl_zfull, ppl_wfull, ppl_zend, ppl_wend (legacy). The same patterns with other
sample counts give quick variants: `fid10k_full`, `kid1k`, `pr5k3_full`, `is1k`,
`eqt1k_int`, `eqr1k` and `ppl_wend_1k` (PPL's count as a `_<N>k` suffix); without the
`k` a count is in images (`fid64_full`, `is100`, `eqt64_frac`, `ppl_wend_64`: smoke tests).
`_full` compares against the whole dataset (KID: up to 1M images, PR: up to 200k);
without it, against the first N images, N the generated count.

ProGAN's network-free metrics: `swd16k` (sliced Wasserstein distance of Laplacian pyramids,
16384 generated against 16384 real images: ProGAN counts SWD images in 1024s, so `swd<N>k`
is N * 1024 images and `swd<N>` N images) and `msssim20k` (mean MS-SSIM of 10000 pairs of
20000 generated images; its `k` is 1000, as ProGAN's msssim-20k).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("fid", "kid", "pr", "is", "ppl", "eq", "swd", "msssim")


@dataclass(frozen=True)
class MetricSpec:
    """One metric's definition; `num_gen` is the generated (for PPL: path) sample count."""

    name: str
    kind: str
    num_gen: int
    max_real: int | None = None  # real images compared against; None = the whole dataset
    num_subsets: int = 100  # KID
    max_subset_size: int = 1000  # KID
    nhood_size: int = 3  # PR
    row_batch_size: int = 10000  # PR
    col_batch_size: int = 10000  # PR
    num_splits: int = 10  # IS
    space: str = "w"  # PPL
    sampling: str = "end"  # PPL
    crop: bool = True  # PPL
    epsilon: float = 1e-4  # PPL
    mode: str = "int"  # equivariance: int, frac (translation) or rot

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(
                f"metric {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.num_gen < 1:
            raise ValueError(f"metric {self.name!r}: num_gen must be >= 1, got {self.num_gen}")

    @property
    def detector(self) -> str | None:
        """The weight file its features come from: inception, vgg16, lpips, or None
        (equivariance compares images)."""
        return {"fid": "inception", "kid": "inception", "is": "inception",
                "pr": "vgg16", "ppl": "lpips"}.get(self.kind)

    @property
    def needs_real(self) -> bool:
        return self.kind in ("fid", "kid", "pr", "swd")

    @property
    def result_keys(self) -> tuple[str, ...]:
        if self.kind == "pr":
            return (f"{self.name}_precision", f"{self.name}_recall")
        if self.kind == "is":
            return (f"{self.name}_mean", f"{self.name}_std")
        return (self.name,)


_PATTERNS = [
    (re.compile(r"^fid(\d+k?)(_full)?$"), "fid"),
    (re.compile(r"^kid(\d+k?)(_full)?$"), "kid"),
    (re.compile(r"^pr(\d+)k(\d+)(_full)?$"), "pr"),
    (re.compile(r"^is(\d+k?)$"), "is"),
    (re.compile(r"^ppl(2?)_([zw])(full|end)(?:_(\d+k?))?$"), "ppl"),
    (re.compile(r"^eqt(\d+k?)_(int|frac)$"), "eq"),
    (re.compile(r"^eqr(\d+k?)$"), "eq"),
    (re.compile(r"^swd(\d+)(k?)$"), "swd"),
    (re.compile(r"^msssim(\d+k?)$"), "msssim"),
]


def _count(text: str) -> int:
    return int(text[:-1]) * 1000 if text.endswith("k") else int(text)

OFFICIAL = ("fid50k_full", "kid50k_full", "pr50k3_full", "ppl2_wend", "is50k",
            "eqt50k_int", "eqt50k_frac", "eqr50k", "swd16k", "msssim20k",
            "fid50k", "kid50k", "pr50k3", "ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend")


def parse_metric(name: str) -> MetricSpec:
    """A metric's definition from its name; ValueError listing the valid forms."""
    for pattern, kind in _PATTERNS:
        m = pattern.match(name)
        if not m:
            continue
        if kind in ("fid", "kid"):
            n, full = _count(m.group(1)), bool(m.group(2))
            if kind == "fid":
                return MetricSpec(name, "fid", n, None if full else n)
            return MetricSpec(name, "kid", n, 1_000_000 if full else n)
        if kind == "pr":
            n, k, full = int(m.group(1)) * 1000, int(m.group(2)), bool(m.group(3))
            return MetricSpec(name, "pr", n, 200_000 if full else n, nhood_size=k)
        if kind == "is":
            return MetricSpec(name, "is", _count(m.group(1)))
        if kind == "swd":  # ProGAN's swd-16k is 16384 images, as many real as generated
            n = int(m.group(1)) * (1024 if m.group(2) else 1)
            return MetricSpec(name, "swd", n, n)
        if kind == "msssim":
            n = _count(m.group(1))
            if n < 2 or n % 2:
                raise ValueError(f"metric {name!r}: MS-SSIM scores pairs, so its image count "
                                 f"must be even and at least 2, got {n}")
            return MetricSpec(name, "msssim", n)
        if kind == "eq":
            mode = m.group(2) if name.startswith("eqt") else "rot"
            return MetricSpec(name, "eq", _count(m.group(1)), mode=mode)
        v2, space, sampling, count = m.groups()
        n = _count(count) if count else 50_000
        return MetricSpec(name, "ppl", n, space=space, sampling=sampling, crop=not v2)
    raise ValueError(
        f"unknown metric {name!r}: expected one of {', '.join(OFFICIAL)}, or the same with "
        "another sample count (fid10k_full, kid1k, pr5k3_full, is1k, eqt1k_int, eqr1k, "
        "ppl_wend_1k, swd1k, swd256, msssim2k)")


def parse_metrics(names: str | list[str]) -> list[MetricSpec]:
    """'fid50k_full,kid50k_full' (or a list) -> specs, duplicates dropped."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ValueError("no metrics given")
    return [parse_metric(n) for n in dict.fromkeys(names)]
