"""What a parity run shows: a markdown table and a plot of both sides' curves with their seed
bands (matplotlib, no display needed)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from stylegan_jax.atomic import replace_file
from stylegan_jax.parity import compare
from stylegan_jax.parity.compare import Curves


def _fmt(x: float, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(verdict: dict, metric: str, command: str, reference: str = "official",
             candidate: str = "ours") -> str:
    """The table of one metric: per point each side's mean ± std over seeds and the gap."""
    lines = [f"`{command}`", "",
             f"Metric `{metric}` (mean ± std over seeds). Rule: {verdict['rule']}.", "",
             f"| kimg | {reference} | {candidate} | gap / {reference} std | within |",
             "|---:|---:|---:|---:|:---:|"]
    for r in verdict["rows"]:
        mark = "" if not r["checked"] else ("yes" if r["within"] else "**no**")
        lines.append(
            f"| {r['kimg']:g} | {_fmt(r[f'{reference}_mean'])} ± {_fmt(r[f'{reference}_std'])}"
            f" | {_fmt(r[f'{candidate}_mean'])} ± {_fmt(r[f'{candidate}_std'])}"
            f" | {_fmt(r['gap_in_std'])} | {mark} |")
    final = verdict.get("final")
    if final:
        lines += ["", f"Final point ({final['kimg']:g} kimg): Welch t = {_fmt(final['t'])}, "
                  f"df = {_fmt(final['df'], 1)}, p = {_fmt(final['p'], 3)}."]
    if compare.outcome(verdict) == "UNDECIDED":
        lines += ["", "**UNDECIDED**: the band and Welch's test need at least two seeds a "
                  "side (`--seeds 0,1,2,3`)", ""]
    else:
        lines += ["", f"**{compare.outcome(verdict)}** (band: "
                  f"{'pass' if verdict['band_pass'] else 'fail'}, Welch: "
                  f"{'pass' if verdict['welch_pass'] else 'fail'})", ""]
    return "\n".join(lines)


def plot(curves: Curves, metric: str, path: str | Path, title: str) -> None:
    """Each side's mean curve over kimg with a ±1 std band over its seeds, and each seed
    as a thin line."""
    # Function-level: matplotlib is only needed for the picture (and picks its backend here).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    colours = {"official": "tab:green", "ours": "tab:blue", "ours_from_official": "tab:orange"}
    for side, per_seed in curves.items():
        colour = colours.get(side, None)
        kimgs = sorted({k for per in per_seed.values() for k in per})
        full = [k for k in kimgs if all(k in per for per in per_seed.values())]
        for per in per_seed.values():
            ks = sorted(per)
            ax.plot(ks, [per[k] for k in ks], color=colour, alpha=0.25, linewidth=0.8)
        if full:
            values = np.array([[per[k] for k in full] for per in per_seed.values()])
            mean = values.mean(axis=0)
            ax.plot(full, mean, color=colour, linewidth=2,
                    label=f"{side} (mean of {values.shape[0]} seeds)")
            if values.shape[0] > 1:
                std = values.std(axis=0, ddof=1)
                ax.fill_between(full, mean - std, mean + std, color=colour, alpha=0.2)
    ax.set_xlabel("kimg")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    replace_file(path, out.getvalue())
