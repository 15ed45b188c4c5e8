"""The feature networks as the metrics use them: functions plus lazily loaded variables.

Each feature function is `(variables, uint8 NHWC images) -> {name: [N, D]}` (LPIPS:
`(variables, a, b) -> [N]` on images in [-1, 1]). `Detectors` resolves and loads the
released weight files on first use, or takes ready variables and replacement
functions (tests, or a training loop that keeps them between evaluations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from stylegan_jax.metrics import inception, inception_score, lpips, provenance, vgg, weight_files

PRIMARY = {"inception": "pool3", "vgg16": "fc2"}  # the feature compared with real images


def inception_features(variables, images):
    pool3, _ = inception.FIDInceptionV3().apply(variables, images)
    probs = inception_score.class_probabilities(pool3, variables["params"]["fc"]["kernel"])
    return {"pool3": pool3, "probs": probs}


def vgg16_features(variables, images):
    return {"fc2": vgg.vgg16_features(variables, images)}


def lpips_distance(variables, a, b):
    """(variables, [N, H, W, 3] in [-1, 1] twice) -> [N]."""
    return lpips.LPIPS().apply(variables, a, b)


FEATURES = {"inception": inception_features, "vgg16": vgg16_features, "lpips": lpips_distance}


class Detectors:
    """The feature networks: functions and variables, loaded on first use.

    `weights` maps inception / vgg16 / lpips to weight files (None: environment or the
    default directory, see weight_files); `preloaded` to ready variables (a caller
    that keeps them between evaluations, or tests); `functions` replaces the feature
    functions (tests); `ids` names them in cache keys.
    """

    def __init__(self, weights: Mapping[str, str | Path | None] | None = None,
                 preloaded: Mapping[str, dict] | None = None,
                 functions: Mapping[str, Callable] | None = None,
                 ids: Mapping[str, str] | None = None):
        self._weights = dict(weights or {})
        self._vars: dict[str, dict] = dict(preloaded or {})
        self._fns = {**FEATURES, **(functions or {})}
        self._ids = dict(ids or {})
        self._files: dict[str, list[Path]] = {}

    def check_available(self, name: str) -> None:
        """Raises now, with where to get it, if a weight file `name` needs is missing (a
        training run checks before its first step rather than hours in)."""
        if name not in self._vars:
            for file in ("vgg16", "lpips") if name == "lpips" else (name,):
                weight_files.resolve(file, self._weights.get(file))

    def function(self, name: str) -> Callable:
        return self._fns[name]

    def variables(self, name: str) -> dict:
        if name not in self._vars:
            if name == "lpips":
                vgg_path = weight_files.resolve("vgg16", self._weights.get("vgg16"))
                lin_path = weight_files.resolve("lpips", self._weights.get("lpips"))
                self._vars[name] = lpips.load_lpips(vgg_path, lin_path)
                self._files[name] = [vgg_path, lin_path]
            else:
                path = weight_files.resolve(name, self._weights.get(name))
                load = inception.load_inception if name == "inception" else vgg.load_vgg16
                self._vars[name] = load(path)
                self._files[name] = [path]
            files = self._files[name]
            self._ids[name] = "+".join(f"{weight_files.identity(f)}-{provenance.sha256_of(f)[:12]}"
                                       for f in files)
        return self._vars[name]

    def identity(self, name: str) -> str:
        """Names the detector in cache keys: its files' names and content hashes."""
        self.variables(name)
        return self._ids.get(name, name)

    def describe(self, name: str) -> dict:
        """The detector as a score records it: each weight file's name and sha256 (or the
        id of variables handed over ready, which have no file)."""
        self.variables(name)
        if name not in self._files:
            return dict(name=name, preloaded=self._ids.get(name, name))
        return dict(name=name, files=[dict(file=Path(f).name, sha256=provenance.sha256_of(f))
                                      for f in self._files[name]])
