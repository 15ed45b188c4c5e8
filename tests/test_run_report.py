"""`stylegan-jax report`: the picture of a run, from synthetic run directories (no training)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylegan_jax.tools import run_report

MAGENTA, CYAN = (255, 0, 255), (0, 255, 255)


def _tick(kimg: float, ts: float, **extra) -> dict:
    return {"kimg": kimg, "timestamp": ts, "Loss/G/loss": 1.0 + kimg / 100,
            "Loss/D/loss": 1.2, "Loss/G/reg": 0.04, "Loss/D/reg": 0.07,
            "Timing/sec_per_kimg": 25.0, **extra}


def _write_jsonl(path: Path, records: list[dict], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def _grid(path: Path, colour: tuple[int, int, int]) -> None:
    """A 192x192 grid (6x6 of 32x32, the quickstart's): `colour` checkered with black."""
    yy, xx = np.mgrid[:192, :192]
    image = np.zeros((192, 192, 3), np.uint8)
    image[(yy // 4 + xx // 4) % 2 == 0] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _finished_run(root: Path) -> Path:
    """A run with every optional file: a rollback, ADA p with an alarm, memory, a metric."""
    run = root / "run"
    run.mkdir()
    ticks = [_tick(k, 100.0 + k, **{"Progress/augment": k / 100, "Health/ada_alarm": int(k == 4),
                                    "Resources/device_peak_gib": 3.0,
                                    "Resources/host_rss_gib": 5.0})
             for k in (1, 2, 3, 4)]
    ticks += [_tick(k, 200.0 + k) for k in (3, 4, 5, 6)]
    _write_jsonl(run / "stats.jsonl", ticks)
    _write_jsonl(run / "rollbacks.jsonl", [
        {"rollback": 1, "kimg": 4.5, "to_kimg": 2.0, "reason": "non-finite loss Loss/G/loss=nan",
         "kind": "non-finite", "lr_scale": 1.0, "timestamp": 150.0}])
    _write_jsonl(run / "metric-swd1k.jsonl", [
        {"results": {"swd1k": 44.3, "swd1k_16": 40.0}, "metric": "swd1k",
         "snapshot_pkl": f"checkpoints/{n}", "timestamp": t} for n, t in ((2000, 102.5),
                                                                          (6000, 206.5))])
    (run / "config.json").write_text(json.dumps(
        {"family": "stylegan2", "data": {"resolution": 32}, "train": {"total_kimg": 6}}))
    Image.fromarray(np.full((64, 64, 3), 40, np.uint8)).save(run / "reals.png")
    _grid(run / "samples" / "fakes000002.png", CYAN)
    _grid(run / "samples" / "fakes000006.png", MAGENTA)
    return run


def _pixels(path: Path, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(np.asarray(Image.open(path).convert("RGB")) == colour, axis=-1)


def test_kept_path_drops_the_stretch_a_rollback_trained_again():
    old = [{"kimg": k, "timestamp": t} for k, t in ((1, 1), (2, 2), (2.7, 3), (3.5, 4))]
    new = [{"kimg": k, "timestamp": t} for k, t in ((3.0, 6), (4.0, 7))]
    rollback = {"kimg": 3.6, "to_kimg": 2.5, "timestamp": 5}
    kept, abandoned = run_report.split_kept(old + new, [rollback])
    assert [r["kimg"] for r in kept] == [1, 2, 3.0, 4.0]
    assert abandoned == [old[2:]]
    # The tick at the restored checkpoint's kimg came before that checkpoint: kept.
    kept, abandoned = run_report.split_kept(old + new, [{**rollback, "to_kimg": 2.0}])
    assert [r["kimg"] for r in kept] == [1, 2, 3.0, 4.0] and abandoned == [old[2:]]
    # Without rollbacks.jsonl only what a later, lower kimg supersedes is known to be gone.
    kept, abandoned = run_report.split_kept(old + new, [])
    assert [r["kimg"] for r in kept] == [1, 2, 2.7, 3.0, 4.0]
    assert abandoned == [[old[3]]]
    assert run_report.split_kept(old, []) == (old, [])


@pytest.mark.parametrize("snapshot, kimg", [
    ("checkpoints/20000", 20.0), ("/runs/a/checkpoints/1500", 1.5),
    ("network-snapshot-000020.pkl", 20.0), (None, None), ("model.pkl", None)])
def test_metric_kimg(snapshot, kimg):
    assert run_report.metric_kimg(snapshot) == kimg


def test_report_of_a_finished_run_shows_the_latest_grid_enlarged(tmp_path):
    run = _finished_run(tmp_path)
    png, page = run_report.render(run)
    assert (png, page) == (run / "report.png", run / "report.html")
    assert Image.open(png).size == (run_report.WIDTH, run_report.HEIGHT)
    magenta = _pixels(png, MAGENTA)
    ys, xs = np.nonzero(magenta)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 >= 768  # 192 px shown 4x
    assert magenta.sum() == 192 * 192 // 2 * 16  # every pixel of the grid, 4x4 each
    assert not _pixels(png, CYAN).any()  # the older grid is not shown
    text = page.read_text()
    assert 'src="report.png' in text and "http-equiv" not in text
    assert "kimg reached: 6.000 of 6" in text and "rollbacks: 1" in text
    assert "non-finite loss Loss/G/loss=nan" in text
    assert "swd1k: 44.3 at 6 kimg" in text and "img/s: 40.0" in text


def test_report_of_a_run_in_progress(tmp_path):
    """Half a last line (the trainer mid-write), no optional file, no grid yet."""
    run = tmp_path / "run"
    run.mkdir()
    _write_jsonl(run / "stats.jsonl", [_tick(1, 1), _tick(2, 2, **{"Timing/img_per_sec": 50.0})],
                 tail='{"kimg": 3.0, "timest')
    out = tmp_path / "elsewhere" / "r.png"
    png, page = run_report.render(run, out)
    assert (png, page) == (out, out.with_suffix(".html"))
    assert Image.open(png).size == (run_report.WIDTH, run_report.HEIGHT)
    text = page.read_text()
    assert 'src="r.png' in text and "kimg reached: 2.000" in text and "img/s: 50.0" in text
    assert "grid: no snapshot yet" in text


def test_bad_runs_are_refused_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        run_report.render(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="stats.jsonl: not found"):
        run_report.render(tmp_path)
    stats = tmp_path / "stats.jsonl"
    stats.write_text('{"kimg": 1')
    with pytest.raises(ValueError, match="no tick recorded yet"):
        run_report.render(tmp_path)
    _write_jsonl(stats, [_tick(1, 1)], tail="garbage\n" + json.dumps(_tick(2, 2)) + "\n")
    with pytest.raises(ValueError, match=r"stats\.jsonl:2: unreadable line"):
        run_report.render(tmp_path)


def test_watch_renders_again_when_the_run_writes_a_tick(tmp_path):
    run = _finished_run(tmp_path)
    seen = []

    def sleep(seconds):  # a tick arrives while the watcher waits
        seen.append((run / "report.png").read_bytes())
        with open(run / "stats.jsonl", "a") as f:
            f.write(json.dumps(_tick(7 + len(seen), 300.0 + len(seen))) + "\n")

    lines = []
    renders = run_report.watch(run, None, interval=5, rounds=3, sleep=sleep, say=lines.append)
    assert renders == 3 and len(lines) == 3 and len(seen) == 2
    assert (run / "report.png").read_bytes() not in seen
    page = (run / "report.html").read_text()
    assert '<meta http-equiv="refresh" content="5">' in page and "kimg reached: 9.000" in page
    # Nothing new: no render.
    assert run_report.watch(run, None, interval=5, rounds=2, sleep=lambda s: None,
                            say=lines.append) == 1


def test_cli(tmp_path, capsys):
    from stylegan_jax.cli import main

    run = _finished_run(tmp_path)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.split() == [str(run / "report.png"), str(run / "report.html")]
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stylegan-jax report: error: ") and "missing" in err


def test_cli_watch_stops_on_ctrl_c(tmp_path, capsys, monkeypatch):
    from stylegan_jax.cli import main

    def interrupt(seconds):
        assert seconds == 2
        raise KeyboardInterrupt

    run = _finished_run(tmp_path)
    monkeypatch.setattr(run_report.time, "sleep", interrupt)
    assert main(["report", str(run), "--watch", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "report: stopped watching"
    assert '<meta http-equiv="refresh" content="2">' in (run / "report.html").read_text()


def test_starts_without_jax():
    """The report runs beside a training process: it must not load jax or tensorflow."""
    code = ("import sys, stylegan_jax.tools.run_report; "
            "print(sorted(m for m in ('jax', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
