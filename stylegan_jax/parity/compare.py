"""The verdict of a parity run: per evaluation point, each side's mean and spread over seeds,
whether this project's mean lies within the official seeds' band, and a Welch test at the end.

Pass rule (issue #24): at every point after `skip_kimg`, |mean(ours) - mean(official)| <=
`band` standard deviations of the official seeds (ddof 1), and the final points do not
differ by Welch's unequal-variance t-test at level `alpha`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import stats

# side -> seed -> kimg -> value
Curves = Mapping[str, Mapping[int, Mapping[float, float]]]


def summarise(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    return dict(n=int(v.size), mean=float(v.mean()),
                std=float(v.std(ddof=1)) if v.size > 1 else math.nan)


def welch(a: list[float], b: list[float]) -> dict[str, float]:
    """Welch's t-test of two samples: t, degrees of freedom and the two-sided p-value."""
    if len(a) < 2 or len(b) < 2:
        return dict(t=math.nan, df=math.nan, p=math.nan)
    res = stats.ttest_ind(np.asarray(a, np.float64), np.asarray(b, np.float64),
                          equal_var=False)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb else math.nan
    return dict(t=float(res.statistic), df=float(df), p=float(res.pvalue))


def points(curves: Curves, side: str) -> list[float]:
    return sorted({k for per_seed in curves.get(side, {}).values() for k in per_seed})


def compare(curves: Curves, reference: str = "official", candidate: str = "ours",
            skip_kimg: float = 4.0, band: float = 2.0, alpha: float = 0.05) -> dict:
    """Rows per evaluation point both sides reached with every seed, and the verdict."""
    rows = []
    ref, cand = curves.get(reference, {}), curves.get(candidate, {})
    for kimg in points(curves, reference):
        a = [per[kimg] for per in ref.values() if kimg in per]
        b = [per[kimg] for per in cand.values() if kimg in per]
        if len(a) != len(ref) or len(b) != len(cand) or not a or not b:
            continue  # a point not every seed of both sides reached yet
        sa, sb = summarise(a), summarise(b)
        gap = abs(sb["mean"] - sa["mean"])
        within = bool(gap <= band * sa["std"]) if not math.isnan(sa["std"]) else None
        rows.append(dict(kimg=kimg, **{f"{reference}_{k}": v for k, v in sa.items()},
                         **{f"{candidate}_{k}": v for k, v in sb.items()},
                         gap=gap, gap_in_std=gap / sa["std"] if sa["std"] else math.inf,
                         checked=kimg > skip_kimg, within=within))
    verdict: dict = dict(rule=f"after {skip_kimg:g} kimg: |mean {candidate} - mean {reference}|"
                         f" <= {band:g} std of the {reference} seeds; final points: Welch "
                         f"p >= {alpha:g}", rows=rows)
    checked = [r for r in rows if r["checked"]]
    verdict["band_pass"] = bool(checked) and all(r["within"] for r in checked)
    if rows:
        last = rows[-1]["kimg"]
        a = [per[last] for per in ref.values()]
        b = [per[last] for per in cand.values()]
        verdict["final"] = dict(kimg=last, **welch(a, b))
        p = verdict["final"]["p"]
        verdict["welch_pass"] = bool(not math.isnan(p) and p >= alpha)
    else:
        verdict["final"], verdict["welch_pass"] = None, False
    verdict["pass"] = verdict["band_pass"] and verdict["welch_pass"]
    # One seed on a side has no spread: neither the band nor Welch's test can say anything.
    verdict["decided"] = min(len(ref), len(cand)) >= 2
    return verdict


def outcome(verdict: dict) -> str:
    """PASS, FAIL or UNDECIDED (fewer than two seeds on a side)."""
    if not verdict.get("decided", True):
        return "UNDECIDED"
    return "PASS" if verdict["pass"] else "FAIL"
