"""The pipeline benchmark runs end to end on temporary shards and reports images/s."""

import re

from stylegan_jax.data import benchmark


def test_benchmark_prints_images_per_second(capsys):
    argv = ["--resolutions", "4", "16", "--seconds", "0.2", "--batch", "8", "--dataset-mb", "1"]
    assert benchmark.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("input pipeline, ") and "batch 8" in lines[0]
    rates = [re.fullmatch(r"\s*(\d+)x(\d+)\s+([\d,]+) img/s", line) for line in lines[1:]]
    assert [m.group(1) for m in rates] == ["4", "16"]
    assert all(int(m.group(3).replace(",", "")) > 0 for m in rates)
