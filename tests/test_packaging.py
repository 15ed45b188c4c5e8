"""The project is a real package: a built wheel, installed into a fresh virtualenv, runs
`train`, `generate` and `serve` with their defaults from a directory outside the clone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_of_the_tree_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "stylegan_jax").rglob("*.py") if p.parent.name != "__pycache__"}
    for name in found:  # regular packages: namespace ones are left out of wheels
        assert (ROOT / name.replace(".", "/") / "__init__.py").is_file(), name
    assert (ROOT / "configs" / "__init__.py").is_file()
    assert listed == found | {"stylegan_jax.configs"}


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """(bin dir, a working directory outside the clone) of a fresh venv holding the wheel.

    The venv sees the machine's packages (jax, tensorflow, ...: installing them again would
    download gigabytes), but not the clone: the wheel is the only stylegan_jax in it."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp / "dist"), str(ROOT)], check=True, timeout=600)
    wheel = next((tmp / "dist").glob("stylegan_jax-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("stylegan_jax/configs/quickstart.py", "stylegan_jax/configs/paper256.py",
                   "stylegan_jax/pretrained/faces32/networks.json",
                   "stylegan_jax/pretrained/faces32/G_ema.msgpack",
                   "stylegan_jax/serve/page.html"):
        assert needed in names, f"the wheel lacks {needed}"
    venv.create(tmp / "venv", system_site_packages=True, with_pip=True)
    bin_dir = tmp / "venv" / "bin"
    subprocess.run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True, timeout=600)
    work = tmp / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [bin_dir / "python", "-c", "import stylegan_jax.configs as c; print(c.__file__)"],
        cwd=work, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(tmp / "venv")), where  # not the clone's editable install
    return bin_dir, work


def _run(bin_dir, work, *args, timeout=600):
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([bin_dir / "stylegan-jax", *args], cwd=work, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.slow
def test_wheel_generates_with_the_shipped_network(wheel_env):
    bin_dir, work = wheel_env
    _run(bin_dir, work, "generate", "--seeds", "0-1")
    assert sorted(p.name for p in (work / "out").iterdir()) == [
        "grid.png", "seed0000.png", "seed0001.png"]


@pytest.mark.slow
def test_wheel_trains_the_default_config(wheel_env):
    bin_dir, work = wheel_env
    # The quickstart (bundled faces) with small networks and no lazy regularisers: one
    # program to compile; what is checked is that the installed configs and data are found.
    out = _run(bin_dir, work, "train", "--stop-at-step", "1", "--config.data.resolution=16",
               "--config.model.channel_max=8", "--config.model.channel_base=128",
               "--config.train.pl_weight=0", "--config.train.r1_gamma=0")
    assert "Finished" in out
    config = json.loads((work / "runs" / "quickstart" / "config.json").read_text())
    assert config["data"]["source"] == "bundled"


@pytest.mark.slow
def test_wheel_serves_the_shipped_network(wheel_env):
    bin_dir, work = wheel_env
    proc = subprocess.Popen([bin_dir / "stylegan-jax", "serve", "--port", "0", "--max-batch",
                             "2"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        url = None
        for line in proc.stdout:
            if m := re.search(r"serving on (http://\S+)", line):
                url = m.group(1)
                break
        assert url, "serve did not print its URL"
        info = json.loads(urllib.request.urlopen(url + "api/info", timeout=60).read())
        assert info["resolution"] == 32 and info["channels"] == 1
        png = urllib.request.urlopen(url + "api/image?seed=3", timeout=60).read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
