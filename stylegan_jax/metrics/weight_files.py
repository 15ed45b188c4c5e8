"""Where the feature networks' released weight files are found, and what to do when they are not.

They cannot be downloaded by this code (and the machines running it may have no
internet): users fetch them once. Lookup order for each file: an explicit path (a
flag or config field), its environment variable, then the directory
`$SGJ_METRICS_WEIGHTS` (default `~/.cache/stylegan_jax/metrics`) by file name.
A file named like torch hub's `<name>-<sha256 prefix>.pth` is checked against that
prefix, so a truncated download fails here rather than as a wrong FID.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

DIR_ENV = "SGJ_METRICS_WEIGHTS"
DEFAULT_DIR = Path("~/.cache/stylegan_jax/metrics")


@dataclass(frozen=True)
class WeightFile:
    name: str  # key used in configs: inception / vgg16 / lpips
    env: str
    patterns: tuple[str, ...]  # file names looked for in the weights directory
    url: str
    what: str


FILES = {
    "inception": WeightFile(
        "inception", "SGJ_INCEPTION_WEIGHTS", ("pt_inception-2015-12-05-*.pth",),
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
        "the FID Inception-v3 (pytorch-fid's port of inception-2015-12-05), for FID, KID, IS"),
    "vgg16": WeightFile(
        "vgg16", "SGJ_VGG16_WEIGHTS", ("vgg16-*.pth",),
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "torchvision's VGG16, for precision/recall and (with LPIPS) perceptual path length"),
    "lpips": WeightFile(
        "lpips", "SGJ_LPIPS_WEIGHTS", ("lpips_vgg_v0.1.pth", "lpips*vgg*.pth", "vgg.pth"),
        "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
        "the LPIPS v0.1 linear layers for VGG (lpips package, weights/v0.1/vgg.pth), for PPL"),
}


def weights_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR).expanduser()


def resolve(name: str, explicit: str | os.PathLike | None = None) -> Path:
    """The path of weight file `name` (inception / vgg16 / lpips); FileNotFoundError says how
    to get it."""
    if name not in FILES:
        raise ValueError(f"unknown weight file {name!r}; expected one of {sorted(FILES)}")
    spec = FILES[name]
    tried = []
    for source, value in (("given path", explicit), (f"${spec.env}", os.environ.get(spec.env))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{spec.name} weights: {source} {path} is not a file. "
                                        + _howto(spec))
            return _checked(path)
    directory = weights_dir()
    for pattern in spec.patterns:
        found = sorted(directory.glob(pattern))
        if found:
            return _checked(found[-1])
        tried.append(str(directory / pattern))
    raise FileNotFoundError(f"{spec.name} weights not found (looked for {', '.join(tried)}). "
                            + _howto(spec))


def _howto(spec: WeightFile) -> str:
    return (f"This is {spec.what}. Download {spec.url} and pass its path "
            f"(--{spec.name}-weights, or the metrics config), set ${spec.env}, or put it in "
            f"${DIR_ENV} (default {DEFAULT_DIR}).")


_HASHED = re.compile(r"-([0-9a-f]{8,64})\.pth$")


def _checked(path: Path) -> Path:
    match = _HASHED.search(path.name)
    if match:
        prefix = match.group(1)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if not digest.hexdigest().startswith(prefix):
            raise ValueError(f"{path}: its SHA-256 does not start with {prefix} as its name says: "
                             "the download is incomplete or a different file; fetch it again")
    return path


def identity(path: Path) -> str:
    """A short id of a weight file for cache keys: its name without the extension."""
    return Path(path).stem
