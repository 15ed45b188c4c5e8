"""`stylegan-jax report RUN`: a training run as one picture, readable while it trains.

Plots losses, regularisers, ADA p (or lod), metrics, img/s and memory against kimg, marks
every rollback (a red dashed line where it happened, an arrow back to the kimg restored, the
stretch trained again in grey) and shows the latest snapshot grid enlarged with
nearest-neighbour pixels. Reads only the run's files (stats.jsonl, rollbacks.jsonl, metric-*.jsonl,
samples/, config.json) and never imports jax, so it starts fast beside a training process.
Writes RUN/report.png and report.html beside it, each atomically: a viewer never sees half a
file. --watch re-renders whenever those files change (the page then reloads itself).
"""

from __future__ import annotations

import argparse
import html
import io
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from stylegan_jax.atomic import replace_file, write_error

WIDTH, HEIGHT, DPI = 1920, 1080, 100  # pixels of report.png: a 16:9 screen
GRID_BOX = (1080, 60, 800, 850)  # x0, y0 (from the bottom), width, height of the grid panel
_GRID_NAME = re.compile(r"fakes(\d+)\.png$")
Getter = Callable[[dict], float | None]


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of `path`, one a line. A run still writing may have half a last line:
    that one is skipped; a bad line elsewhere is corruption and raises, naming the line."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(lines):
                break
            raise ValueError(f"{path}:{i}: unreadable line ({e})") from None
        records.append(record)
    return records


def _num(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def split_kept(records: list[dict], rollbacks: list[dict]) -> tuple[list[dict], list[list[dict]]]:
    """(the records of the path the run kept, the abandoned stretches in file order).

    A rollback restores the checkpoint at `to_kimg` and trains on from there, so every record
    written before it (timestamp) past to_kimg is superseded (one at to_kimg came before that
    checkpoint was saved: it is on the kept path). Without rollbacks.jsonl a later
    record at the same or a lower kimg still shows that an earlier one was superseded.
    """
    records = [r for r in records if _num(r.get("kimg"))]
    kept = [True] * len(records)
    for rb in rollbacks:
        to, when = rb.get("to_kimg"), rb.get("timestamp")
        if not (_num(to) and _num(when)):
            continue
        for i, r in enumerate(records):
            if r["kimg"] > to and _num(r.get("timestamp")) and r["timestamp"] < when:
                kept[i] = False
    lowest_later = math.inf
    for i in reversed(range(len(records))):
        kept[i] = kept[i] and records[i]["kimg"] < lowest_later
        lowest_later = min(lowest_later, records[i]["kimg"])
    abandoned: list[list[dict]] = []
    for i, r in enumerate(records):
        if not kept[i]:
            if i == 0 or kept[i - 1]:
                abandoned.append([])
            abandoned[-1].append(r)
    return [r for r, k in zip(records, kept, strict=True) if k], abandoned


def metric_kimg(snapshot_pkl: str | None) -> float | None:
    """kimg of a metric record's snapshot: `checkpoints/<nimg>` (this project) or an official
    `network-snapshot-<kimg>.pkl`; None where neither names one."""
    if not isinstance(snapshot_pkl, str):
        return None
    if m := re.search(r"checkpoints/(\d+)", snapshot_pkl):
        return int(m.group(1)) / 1000
    if m := re.search(r"network-snapshot-(\d+)", snapshot_pkl):
        return float(m.group(1))
    return None


@dataclass
class RunFiles:
    """What the report shows, read once per render."""

    run_dir: Path
    records: list[dict]
    rollbacks: list[dict] = field(default_factory=list)
    metrics: dict[str, list[dict]] = field(default_factory=dict)  # label -> {kimg, ts, value}
    grid: Path | None = None
    config: dict = field(default_factory=dict)


def read_run(run_dir: Path) -> RunFiles:
    """Everything the report shows; only stats.jsonl with one tick is required."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory (expected a training "
                                "workdir holding stats.jsonl)")
    stats = run_dir / "stats.jsonl"
    if not stats.is_file():
        raise FileNotFoundError(f"{stats}: not found; {run_dir} is not a training run, or it "
                                "has not finished its first tick")
    records = [r for r in read_jsonl(stats) if _num(r.get("kimg"))]
    if not records:
        raise ValueError(f"{stats}: no tick recorded yet")
    rb_path = run_dir / "rollbacks.jsonl"
    run = RunFiles(run_dir, records, read_jsonl(rb_path) if rb_path.is_file() else [])
    for path in sorted(run_dir.glob("metric-*.jsonl")):
        for rec in read_jsonl(path):
            kimg, results = metric_kimg(rec.get("snapshot_pkl")), rec.get("results")
            if kimg is None or not isinstance(results, dict):
                continue
            name = rec.get("metric", path.stem[len("metric-"):])
            shown = {name: results[name]} if name in results else results
            for key, value in shown.items():
                if _num(value):
                    run.metrics.setdefault(key, []).append(
                        {"kimg": kimg, "timestamp": rec.get("timestamp"), "value": value})
    grids = {int(m.group(1)): p for p in (run_dir / "samples").glob("fakes*.png")
             if (m := _GRID_NAME.search(p.name))}
    init = run_dir / "samples" / "fakes_init.png"
    run.grid = grids[max(grids)] if grids else (init if init.is_file() else None)
    try:  # only the title's words: a missing or half-written config costs nothing else
        config = json.loads((run_dir / "config.json").read_text())
        run.config = config if isinstance(config, dict) else {}
    except (OSError, ValueError):
        pass
    return run


def _config(run: RunFiles, section: str, key: str):
    value = run.config.get(section)
    return value.get(key) if isinstance(value, dict) else None


def img_per_sec(record: dict) -> float | None:
    """Measured img/s, else derived from sec/kimg (older runs record only that)."""
    if _num(record.get("Timing/img_per_sec")):
        return record["Timing/img_per_sec"]
    spk = record.get("Timing/sec_per_kimg")
    return 1000 / spk if _num(spk) and spk > 0 else None


def _first(*keys: str) -> Getter:
    return lambda r: next((r[k] for k in keys if _num(r.get(k))), None)


def _xy(records: list[dict], get: Getter) -> tuple[list[float], list[float]]:
    pairs = [(r["kimg"], v) for r in records if (v := get(r)) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _draw(ax, label: str, kept: list[dict], abandoned: list[list[dict]], get: Getter,
          marker: str | None = None) -> bool:
    """The kept path in colour, each abandoned stretch thin and grey; False if no values."""
    for seg in abandoned:
        ax.plot(*_xy(seg, get), color="0.65", lw=0.8, marker=marker, ms=3)
    xs, ys = _xy(kept, get)
    if xs:  # a lone point needs a marker to be seen at all
        ax.plot(xs, ys, lw=1.3, label=label, marker=marker or ("o" if len(xs) == 1 else None),
                ms=4)
    return bool(xs)


def _panel(ax, title: str, run: RunFiles, curves: list[tuple[str, Getter]], empty: str):
    """One plot of stats.jsonl keys: the kept path in colour, abandoned stretches grey."""
    kept, abandoned = split_kept(run.records, run.rollbacks)
    drawn = [_draw(ax, label, kept, abandoned, get) for label, get in curves]
    _finish(ax, title, any(drawn), empty, run.rollbacks)


def _finish(ax, title: str, drawn: bool, empty: str, rollbacks: list[dict]) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("kimg", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="0.4")
    t = ax.get_xaxis_transform()  # x in kimg, y in axes fractions
    for i, rb in enumerate(rollbacks):
        k, to = rb.get("kimg"), rb.get("to_kimg")
        if not _num(k):
            continue
        ax.axvline(k, color="tab:red", ls="--", lw=0.9)
        if _num(to):
            ax.annotate("", xy=(to, 0.9), xytext=(k, 0.9), xycoords=t,
                        arrowprops={"arrowstyle": "->", "color": "tab:red"})
        ax.text(k, 0.98, f"R{rb.get('rollback', i + 1)}", transform=t, color="tab:red",
                fontsize=7, ha="center", va="top")


def enlarge(image: np.ndarray, box: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(the grid scaled to fill `box` (w, h), the factor): whole-pixel nearest-neighbour
    upscaling, so a 32x32 face stays sharp; a grid larger than the box is shrunk."""
    h, w = image.shape[:2]
    scale = min(box[0] / w, box[1] / h)
    if scale >= 1:
        f = int(scale)
        return image.repeat(f, axis=0).repeat(f, axis=1), float(f)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS)), scale


def summary(run: RunFiles) -> list[str]:
    """The report's text: what a reader checks first."""
    kept, _ = split_kept(run.records, run.rollbacks)
    last = kept[-1] if kept else run.records[-1]
    total = _config(run, "train", "total_kimg")
    lines = [f"kimg reached: {last['kimg']:.3f}" + (f" of {total}" if _num(total) else "")]
    lines.append(f"rollbacks: {len(run.rollbacks)}")
    for rb in run.rollbacks[-3:]:
        lines.append(f"  R{rb.get('rollback', '?')}: {rb.get('kimg')} -> {rb.get('to_kimg')} "
                     f"kimg, {rb.get('kind', '?')}: {rb.get('reason', '')}")
    for name, points in run.metrics.items():
        p = (split_kept(points, run.rollbacks)[0] or points)[-1]
        lines.append(f"{name}: {p['value']:.4g} at {p['kimg']:g} kimg")
    ips = img_per_sec(last)
    lines.append(f"img/s: {ips:.1f}" if ips is not None else "img/s: not recorded")
    lines.append(f"grid: {run.grid.name if run.grid else 'no snapshot yet'}")
    return lines


def figure(run: RunFiles) -> Figure:
    """The report: six plots on the left, the latest grid enlarged on the right."""
    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    res, text = _config(run, "data", "resolution"), summary(run)
    fig.suptitle(f"{run.run_dir.resolve().name}  {run.config.get('family', '')} "
                 f"{f'{res}x{res}' if res else ''}  —  {text[0]}  "
                 f"({time.strftime('%Y-%m-%d %H:%M:%S')})",
                 x=0.02, ha="left", fontsize=14)
    axes = fig.add_gridspec(3, 2, left=0.04, right=0.535, top=0.9, bottom=0.14,
                            hspace=0.55, wspace=0.22).subplots().ravel()
    _panel(axes[0], "losses", run, [("G loss", _first("Loss/G/loss")),
                                    ("D loss", _first("Loss/D/loss"))], "no losses recorded")
    _panel(axes[1], "regularisers", run,
           [("G reg (PL)", _first("Loss/G/reg", "Loss/pl_penalty")),
            ("D reg (R1)", _first("Loss/D/reg", "Loss/r1_penalty"))], "no regulariser recorded")
    lod = not any("Progress/augment" in r for r in run.records) and any(
        "Loss/lod" in r for r in run.records)
    _panel(axes[2], "lod (progressive growing)" if lod else "ADA p (red ticks: leak alarm)",
           run, [("lod", _first("Loss/lod"))] if lod else [("p", _first("Progress/augment"))],
           "no ADA p recorded")
    alarms = [r["kimg"] for r in run.records if r.get("Health/ada_alarm")]  # kept or not
    if alarms:
        axes[2].plot(alarms, [0.03] * len(alarms), "|", color="tab:red", ms=14, mew=2,
                     transform=axes[2].get_xaxis_transform())
    drawn = [_draw(axes[3], name, *split_kept(points, run.rollbacks), lambda r: r["value"],
                   marker="o") for name, points in run.metrics.items()]
    _finish(axes[3], "metrics", any(drawn), "no metric yet", run.rollbacks)
    _panel(axes[4], "speed (img/s)", run, [("img/s", img_per_sec)], "speed not recorded")
    _panel(axes[5], "memory (GiB)", run,
           [("device peak", _first("Resources/device_peak_gib")),
            ("host RSS", _first("Resources/host_rss_gib"))], "memory not recorded")
    lines = [line for line in text if line.startswith(("rollbacks", "  R"))]
    fig.text(0.02, 0.015, "\n".join(lines), fontsize=8, va="bottom",
             color="tab:red" if run.rollbacks else "0.3")
    right = max([r["kimg"] for r in run.records]
                + [rb["kimg"] for rb in run.rollbacks if _num(rb.get("kimg"))])
    for ax in axes:  # one kimg scale for all, empty panels included
        ax.set_xlim(0, right * 1.03 or 1)
    _grid_panel(fig, run.grid)
    return fig


def _grid_panel(fig: Figure, grid: Path | None) -> None:
    x0, y0, bw, bh = GRID_BOX
    if grid is None:
        fig.text((x0 + bw / 2) / WIDTH, (y0 + bh / 2) / HEIGHT, "no snapshot yet",
                 ha="center", fontsize=16, color="0.4")
        return
    try:
        with Image.open(grid) as im:
            image = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:  # a grid being written right now
        fig.text(x0 / WIDTH, 0.5, f"cannot read {grid.name}: {e}", fontsize=9, wrap=True)
        return
    big, factor = enlarge(image, (bw, bh))
    h, w = big.shape[:2]
    xo, yo = x0 + (bw - w) // 2, y0 + (bh - h) // 2
    fig.figimage(big, xo, yo, origin="upper")  # drawn pixel for pixel, never resampled
    fig.text(xo / WIDTH, (yo + h + 8) / HEIGHT, f"{grid.name}  ({image.shape[1]}x"
             f"{image.shape[0]} shown at {factor:.3g}x)", fontsize=11)


def render(run_dir: Path, out: Path | None = None, refresh: float | None = None
           ) -> tuple[Path, Path]:
    """Writes the report PNG and its HTML page (reloading every `refresh` s) atomically."""
    run = read_run(Path(run_dir))
    out = Path(out) if out is not None else run.run_dir / "report.png"
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: expected a .png path (report.html goes beside it)")
    buf = io.BytesIO()
    figure(run).savefig(buf, format="png", dpi=DPI)
    page = out.with_suffix(".html")
    meta = f'<meta http-equiv="refresh" content="{refresh:g}">\n' if refresh else ""
    text = html.escape("\n".join(summary(run)))
    doc = (f"<!doctype html>\n<html><head><meta charset=\"utf-8\">\n{meta}"
           f"<title>{html.escape(run.run_dir.resolve().name)}: training report</title></head>\n"
           f"<body><pre>{text}</pre>\n<img src=\"{html.escape(out.name)}?t={time.time():.0f}\" "
           f"alt=\"training report\" style=\"max-width:100%\"></body></html>\n")
    for path, data in ((out, buf.getvalue()), (page, doc)):
        try:
            replace_file(path, data)
        except OSError as e:
            raise write_error(str(path), e) from None
    return out, page


def _signature(run_dir: Path) -> tuple:
    """(name, mtime, size) of every input: a change in any means a new render."""
    paths = [run_dir / n for n in ("stats.jsonl", "rollbacks.jsonl", "config.json")]
    paths += sorted(run_dir.glob("metric-*.jsonl")) + sorted(run_dir.glob("samples/*.png"))
    stats = [(p.name, p.stat()) for p in paths if p.exists()]
    return tuple((n, s.st_mtime_ns, s.st_size) for n, s in stats)


def watch(run_dir: Path, out: Path | None, interval: float, rounds: int | None = None,
          sleep: Callable[[float], None] | None = None, say: Callable[[str], None] = print
          ) -> int:
    """Re-renders whenever the run's files change, polling every `interval` s, for `rounds`
    polls (None: until interrupted). A render that fails (a run between ticks, a file being
    replaced) is reported and retried on the next change. Returns the number of renders."""
    run_dir, renders, last, n = Path(run_dir), 0, None, 0
    sleep = sleep or time.sleep
    if not run_dir.is_dir():
        read_run(run_dir)  # raises: no such run
    while rounds is None or n < rounds:
        n += 1
        sig = _signature(run_dir)
        if sig != last:
            last = sig
            try:
                png, page = render(run_dir, out, refresh=interval)
                renders += 1
                say(f"wrote {png} and {page}")
            except (ValueError, FileNotFoundError) as e:
                say(f"report: {e} (watching on)")
        if rounds is None or n < rounds:
            sleep(interval)
    return renders


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a training workdir")
    p.add_argument("--out", type=Path, default=None, metavar="PATH.png",
                   help="the report image (default: RUN/report.png); report.html goes beside it")
    p.add_argument("--watch", type=float, nargs="?", const=30.0, default=None,
                   metavar="SECONDS", help="re-render whenever the run's files change, checking "
                   "every SECONDS (default 30), until Ctrl-C; put it after RUN")


def run(args: argparse.Namespace) -> int:
    if args.watch is None:
        for path in render(args.run_dir, args.out):
            print(path)
        return 0
    if args.watch <= 0:
        raise ValueError(f"--watch {args.watch:g}: expected a positive number of seconds")
    try:
        watch(args.run_dir, args.out, args.watch)
    except KeyboardInterrupt:
        print("report: stopped watching")
    return 0
