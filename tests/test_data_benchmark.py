"""The pipeline benchmark runs end to end on temporary shards and reports images/s per thread
count, each round measuring every count."""

import argparse
import re

import pytest

from stylegan_jax.data import benchmark


def test_benchmark_prints_images_per_second_per_thread_count(capsys):
    argv = ["--resolutions", "4", "16", "--seconds", "0.2", "--batch", "8", "--dataset-mb", "1"]
    argv += ["--threads", "1,2", "--rounds", "2"]
    assert benchmark.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("input pipeline, ") and "batch 8" in lines[0]
    assert "threads 1,2, 2 round(s)" in lines[0]
    pattern = r"\s*(\d+)x(\d+)\s+threads (\d+)\s+([\d,]+) img/s(\s+([\d.]+)x threads 1)?"
    rates = [re.fullmatch(pattern, line) for line in lines[1:]]
    assert all(rates), lines
    assert [(m.group(1), m.group(3)) for m in rates] == [
        ("4", "1"),
        ("4", "2"),
        ("16", "1"),
        ("16", "2"),
    ]
    value = [int(m.group(4).replace(",", "")) for m in rates]
    assert all(v > 0 for v in value)
    for k in (1, 3):  # the ratio printed is the ratio of the two rates (to rounding)
        assert float(rates[k].group(6)) == pytest.approx(value[k] / value[k - 1], abs=0.02)


def test_thread_counts_are_checked():
    assert benchmark.thread_counts("1,2,4,8") == [1, 2, 4, 8]
    for bad in ("", "1,,2", "0,1", "two"):
        with pytest.raises(argparse.ArgumentTypeError, match="--threads: expected"):
            benchmark.thread_counts(bad)
