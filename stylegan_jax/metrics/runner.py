"""Runs metrics for a generator: feature passes over real and generated images, then the maths.

`compute_metrics` takes the generator `Network`, a factory of real-image iterators
(uint8 NHWC NumPy batches; this process's share when several processes run) and a
cache directory. Passes are shared: one generator pass per feature network serves
every metric that needs it (FID, KID and IS use the same Inception features), and
real-image statistics are cached on disk by dataset, network and image count. PPL, the
equivariance PSNRs (StyleGAN3) and ProGAN's SWD and MS-SSIM run their own generator passes
(`ppl`, `equivariance`, `network_free`); a table maps each metric kind to its results. As in
the official code, generated images are quantised to uint8 before the feature
network (`floor(clip(x * 127.5 + 128, 0, 255))`) and grayscale is repeated to RGB.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from stylegan_jax.metrics import (
    equivariance,
    fid,
    inception_score,
    kid,
    network_free,
    ppl,
    precision_recall,
    provenance,
    swd,
)
from stylegan_jax.metrics.detectors import PRIMARY, Detectors
from stylegan_jax.metrics.feature_stats import FeatureStats, cache_path
from stylegan_jax.metrics.parallel import (
    LocalDevices,
    broadcast_flag,
    gather_rows,
    process_share,
)
from stylegan_jax.metrics.registry import MetricSpec, parse_metric
from stylegan_jax.metrics.sampler import LabelFn, Sampler, quantize
from stylegan_jax.models.sampling import synthesize

RealIterFactory = Callable[[], Iterable[np.ndarray]]


@dataclass
class MetricResult:
    metric: str
    results: dict[str, float]
    total_time: float
    num_devices: int
    provenance: dict | None = None  # how it was made: see metrics.provenance

    def to_json(self, snapshot: str | None = None) -> str:
        """One line in the official `metric-<name>.jsonl` format, plus `provenance`."""
        return json.dumps(dict(results=self.results, metric=self.metric,
                               total_time=self.total_time,
                               total_time_str=f"{self.total_time:.1f}s",
                               num_gpus=self.num_devices, snapshot_pkl=snapshot,
                               timestamp=time.time(), provenance=self.provenance))


def report_metric(result: MetricResult, run_dir: str | Path | None = None,
                  snapshot: str | None = None, log: Callable[[str], None] = print) -> str:
    """Logs the JSON line (process 0) and appends it to `<run_dir>/metric-<name>.jsonl`."""
    line = result.to_json(snapshot)
    if jax.process_index() == 0:
        log(line)
        if run_dir is not None:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            with open(Path(run_dir) / f"metric-{result.metric}.jsonl", "a") as f:
                f.write(line + "\n")
    return line


@functools.partial(jax.jit, static_argnums=(0,))
def _real_step(features, det_vars, images):
    return features(det_vars, images)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _gen_step(features, module, psi, noise_mode, det_vars, g_vars, z, c, key, lod):
    img = synthesize(module, g_vars, z, c, key, lod, psi=psi, noise_mode=noise_mode)
    return features(det_vars, quantize(img))


def _stats_from_rows(rows: np.ndarray, capture_all: bool, capture_mean_cov: bool) -> FeatureStats:
    stats = FeatureStats(capture_all, capture_mean_cov, max_items=rows.shape[0])
    for i in range(0, rows.shape[0], 4096):
        stats.append(rows[i : i + 4096])
    if rows.shape[0] == 0:
        raise ValueError("no features were collected: the image source is empty")
    return stats


class _Collector:
    """Per-output FeatureStats of this process; merged over processes at the end."""

    def __init__(self, needs: Mapping[str, tuple[bool, bool]], total: int | None):
        self.needs = dict(needs)
        multi = jax.process_count() > 1
        # Several processes: keep rows, gather them, then build the statistics.
        self.stats = {k: FeatureStats(a or multi, m and not multi, total)
                      for k, (a, m) in self.needs.items()}

    def add(self, feats: Mapping[str, jax.Array], n: int) -> None:
        for k, stats in self.stats.items():
            stats.append(np.asarray(feats[k])[:n])

    def finish(self) -> dict[str, FeatureStats]:
        if jax.process_count() == 1:
            return self.stats
        return {k: _stats_from_rows(gather_rows(s.get_all()), *self.needs[k])
                for k, s in self.stats.items()}


class MetricRunner:
    """Computes metrics for one generator; shares passes between them (see module doc)."""

    def __init__(self, G, real_iter_factory: RealIterFactory | None = None,
                 cache_dir: str | Path | None = None, *, dataset_key: str | None = None,
                 num_real: int | None = None, label_fn: LabelFn | None = None,
                 detectors: Detectors | None = None, batch_size: int = 64, seed: int = 0,
                 truncation_psi: float = 1.0, noise_mode: str = "random",
                 progress: bool = True, devices: LocalDevices | None = None,
                 data_identity: dict | None = None,
                 swd_reals: dict[tuple[int, int], list[np.ndarray]] | None = None):
        self.G = G
        self.data_identity = data_identity
        self.real_iter_factory = real_iter_factory
        self.cache_dir = cache_dir
        self.dataset_key = dataset_key
        self.num_real = num_real
        self.detectors = detectors or Detectors()
        self.devices = devices or LocalDevices()
        self.batch_size = self.devices.round_batch(batch_size)
        self.seed = seed
        self.sampler = Sampler(G, self.devices, self.batch_size, seed, float(truncation_psi),
                               noise_mode, label_fn, progress and jax.process_index() == 0)
        self._gen: dict[str, dict[str, FeatureStats]] = {}
        self._real: dict[tuple[str, int | None], FeatureStats] = {}
        self._plan_gen: dict[str, tuple[int, dict[str, tuple[bool, bool]]]] = {}
        self._plan_real: dict[tuple[str, int | None], tuple[bool, bool]] = {}
        self._plan_eq: dict[int, tuple[str, ...]] = {}  # sample count -> modes in one pass
        self._eq: dict[int, dict[str, float]] = {}
        # (count, seed) -> the reals' SWD descriptors; a caller evaluating the same data
        # again (a training run) passes one dict to keep them between runners.
        self._swd_real = {} if swd_reals is None else swd_reals

    # --- planning ----------------------------------------------------------------------
    def real_count(self, spec: MetricSpec) -> int | None:
        """The number of real images the metric compares with (None: all, count unknown)."""
        if self.num_real is None:
            return spec.max_real
        return self.num_real if spec.max_real is None else min(spec.max_real, self.num_real)

    def plan(self, specs: Sequence[MetricSpec]) -> None:
        """Decides the passes (and what each keeps) for all `specs` before any runs."""
        gen: dict[str, tuple[int, dict[str, tuple[bool, bool]]]] = {}
        for s in specs:
            if s.kind == "eq":
                modes = self._plan_eq.get(s.num_gen, ())
                self._plan_eq[s.num_gen] = modes + (s.mode,) * (s.mode not in modes)
            if s.kind in ("ppl", "eq", "swd", "msssim"):  # passes of their own
                continue
            out = "probs" if s.kind == "is" else PRIMARY[s.detector]
            num, outs = gen.get(s.detector, (0, {}))
            keep_all, mean_cov = outs.get(out, (False, False))
            outs[out] = (keep_all or s.kind != "fid", mean_cov or s.kind == "fid")
            gen[s.detector] = (max(num, s.num_gen), outs)
            if s.needs_real:
                key = (s.detector, self.real_count(s))
                a, m = self._plan_real.get(key, (False, False))
                self._plan_real[key] = (a or s.kind != "fid", m or s.kind == "fid")
        for det, (num, outs) in gen.items():
            fid_counts = {s.num_gen for s in specs if s.kind == "fid" and s.detector == det}
            if fid_counts and fid_counts != {num}:  # FID of a prefix needs every row
                outs["pool3"] = (True, outs["pool3"][1])
            self._plan_gen[det] = (num, outs)

    # --- passes ------------------------------------------------------------------------
    def generated(self, detector: str) -> dict[str, FeatureStats]:
        if detector not in self._gen:
            num, outs = self._plan_gen[detector]
            det_vars = self.devices.replicate(self.detectors.variables(detector))
            features = self.detectors.function(detector)
            g_vars = self.devices.replicate(self.G.variables)
            module = self.G.module
            count = process_share(num)
            collector = _Collector(outs, count)
            rng = self.sampler.process_rng()
            key = jax.random.fold_in(jax.random.PRNGKey(self.seed), jax.process_index())
            bar = self.sampler.bar(num, f"generated {detector}", "img")
            for i in range(math.ceil(count / self.batch_size)):
                z = rng.standard_normal((self.batch_size, module.z_dim)).astype(np.float32)
                (z, c), _ = self.devices.shard(z, self.sampler.labels(rng, self.batch_size))
                feats = _gen_step(features, module, self.sampler.psi, self.sampler.noise_mode,
                                  det_vars, g_vars, z, c, jax.random.fold_in(key, i),
                                  np.float32(self.G.lod))
                n = min(self.batch_size, count - i * self.batch_size)
                collector.add(feats, n)
                bar.update(n * jax.process_count())
            bar.close()
            self._gen[detector] = collector.finish()
        return self._gen[detector]

    def real(self, detector: str, count: int | None) -> FeatureStats:
        key = (detector, count)
        if key in self._real:
            return self._real[key]
        capture_all, mean_cov = self._plan_real[key]
        path = None
        if self.cache_dir is not None and self.dataset_key is not None:
            path = cache_path(self.cache_dir, self.dataset_key,
                              self.detectors.identity(detector), count, self.data_identity)
            if broadcast_flag(jax.process_index() == 0 and path.is_file()):
                stats = FeatureStats.load(path)
                if stats.capture_all or not capture_all:
                    self._real[key] = stats
                    return stats
        if self.real_iter_factory is None:
            raise ValueError("these metrics compare with real images: give real_iter_factory "
                             "(the CLI's --data)")
        det_vars = self.devices.replicate(self.detectors.variables(detector))
        out = PRIMARY[detector]
        mine = None if count is None else process_share(count)
        collector = _Collector({out: (capture_all, mean_cov)}, mine)
        bar = self.sampler.bar(count, f"dataset {detector}", "img")
        features = self.detectors.function(detector)
        for images in _rebatch(self.real_iter_factory(), self.batch_size):
            n = images.shape[0]
            if n < self.batch_size:  # one compiled shape: pad the last batch
                images = np.concatenate([images, np.repeat(images[-1:], self.batch_size - n, 0)])
            (x,), _ = self.devices.shard(images)
            collector.add(_real_step(features, det_vars, x), n)
            bar.update(n * jax.process_count())
            if collector.stats[out].is_full():
                break
        bar.close()
        stats = collector.finish()[out]
        if stats.num_items == 0:
            raise ValueError("the real-image source yielded no images")
        if path is not None and jax.process_index() == 0:
            stats.save(path)
        self._real[key] = stats
        return stats

    def equivariance(self, spec: MetricSpec) -> float:
        """One pass per sample count serves every equivariance metric planned with it."""
        if spec.mode not in self._eq.get(spec.num_gen, {}):
            modes = self._plan_eq.get(spec.num_gen, ())
            modes = modes if spec.mode in modes else (spec.mode,)
            self._eq.setdefault(spec.num_gen, {}).update(equivariance.generator_psnrs(
                spec.name, self.sampler, spec.num_gen, modes))
        return self._eq[spec.num_gen][spec.mode]

    def swd_real(self, count: int) -> list[np.ndarray]:
        """The real images' SWD descriptors (kept for every SWD metric of this count)."""
        key = (count, self.seed)
        if key not in self._swd_real:
            if self.real_iter_factory is None:
                raise ValueError("SWD compares with real images: give real_iter_factory "
                                 "(the CLI's --data)")
            self._swd_real[key] = network_free.real_swd_descriptors(
                self.real_iter_factory, count, network_free.generated_size(self.G),
                self.devices, self.seed, self.batch_size)
        return self._swd_real[key]

    # --- metrics -----------------------------------------------------------------------
    def compute(self, spec: MetricSpec) -> dict[str, float]:
        """Result key -> value of one metric (planned with `plan`)."""
        return _COMPUTE[spec.kind](self, spec)

    def provenance(self, spec: MetricSpec) -> dict:
        """How `spec`'s result (computed) was made: settings, counts, detector, data,
        evaluation settings and software."""
        num_real = None
        if spec.kind == "swd":
            num_real = spec.num_gen
        elif spec.needs_real:
            num_real = self._real[(spec.detector, self.real_count(spec))].num_items
        return provenance.record(
            spec, num_real=num_real,
            detector=self.detectors.describe(spec.detector) if spec.detector else None,
            data=self.data_identity,
            evaluation=dict(seed=self.seed, truncation_psi=self.sampler.psi,
                            noise_mode=self.sampler.noise_mode, batch_size=self.batch_size,
                            devices=self.devices.count, processes=jax.process_count()))


def _features(runner: MetricRunner, spec: MetricSpec) -> tuple[FeatureStats, FeatureStats]:
    """The generated and real statistics a FID, KID or PR compares."""
    g = runner.generated(spec.detector)[PRIMARY[spec.detector]]
    return g, runner.real(spec.detector, runner.real_count(spec))


def _fid(runner: MetricRunner, spec: MetricSpec) -> dict[str, float]:
    g, r = _features(runner, spec)
    mu_g, sigma_g = g.get_mean_cov(spec.num_gen)
    mu_r, sigma_r = r.get_mean_cov()
    return {spec.name: fid.frechet_distance(mu_g, sigma_g, mu_r, sigma_r)}


def _kid(runner: MetricRunner, spec: MetricSpec) -> dict[str, float]:
    g, r = _features(runner, spec)
    value = kid.kernel_inception_distance(
        r.get_all(), g.get_all()[: spec.num_gen], spec.num_subsets, spec.max_subset_size,
        np.random.default_rng(runner.seed))
    return {spec.name: value}


def _pr(runner: MetricRunner, spec: MetricSpec) -> dict[str, float]:
    g, r = _features(runner, spec)
    precision, recall = precision_recall.precision_recall(
        r.get_all(), g.get_all()[: spec.num_gen], spec.nhood_size, spec.row_batch_size,
        spec.col_batch_size, runner.devices)
    return {spec.result_keys[0]: precision, spec.result_keys[1]: recall}


def _is(runner: MetricRunner, spec: MetricSpec) -> dict[str, float]:
    probs = runner.generated(spec.detector)["probs"].get_all()[: spec.num_gen]
    mean, std = inception_score.inception_score(probs, spec.num_splits)
    return {spec.result_keys[0]: mean, spec.result_keys[1]: std}


def _ppl(runner: MetricRunner, spec: MetricSpec) -> dict[str, float]:
    return {spec.name: ppl.aggregate(ppl.generator_lengths(spec, runner.sampler,
                                                            runner.detectors))}


def _eq(runner: MetricRunner, spec: MetricSpec) -> dict[str, float]:
    return {spec.name: runner.equivariance(spec)}


def _swd(runner: MetricRunner, spec: MetricSpec) -> dict[str, float]:
    real = runner.swd_real(spec.num_gen)
    fake = network_free.generated_swd_descriptors(runner.sampler, spec.num_gen)
    rng = np.random.default_rng([runner.seed, 6])  # the same directions on every process
    directions = [swd.draw_directions(rng, r.shape[1]) for r in real]
    return swd.results(spec.name, network_free.generated_size(runner.G),
                       swd.swd_levels(real, fake, directions))


def _msssim(runner: MetricRunner, spec: MetricSpec) -> dict[str, float]:
    return {spec.name: network_free.generated_msssim(runner.sampler, spec.num_gen)}


# Metric kind -> its results from the runner's (shared) passes.
_COMPUTE: dict[str, Callable[[MetricRunner, MetricSpec], dict[str, float]]] = {
    "fid": _fid, "kid": _kid, "pr": _pr, "is": _is, "ppl": _ppl, "eq": _eq, "swd": _swd,
    "msssim": _msssim}


def _rebatch(batches: Iterable, size: int) -> Iterator[np.ndarray]:
    """Batches of any sizes -> batches of exactly `size` (the last may be smaller)."""
    pending: list[np.ndarray] = []
    held = 0
    for batch in batches:
        images = _check_images(batch)
        pending.append(images)
        held += images.shape[0]
        while held >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            pending, held = [joined[size:]], held - size
    if held:
        yield np.concatenate(pending)


def _check_images(batch) -> np.ndarray:
    if isinstance(batch, tuple | list):  # (images, labels) batches
        batch = batch[0]
    images = np.asarray(batch)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError("real-image batches must be uint8 [N, H, W, 1 or 3], got "
                         f"{images.dtype} {images.shape}")
    return images


def compute_metrics(
    metrics: Sequence[str | MetricSpec],
    G,
    real_iter_factory: RealIterFactory | None,
    cache_dir: str | Path | None,
    **kwargs,
) -> dict[str, MetricResult]:
    """Metric name -> MetricResult for generator `G` (a models.registry.Network).

    `real_iter_factory()` yields uint8 [N, H, W, C] batches (or (images, labels)) of
    this process's share of the dataset; `cache_dir` + `dataset_key` enable the
    real-statistics cache. Other keyword arguments: see MetricRunner (num_real,
    label_fn, detectors, batch_size, seed, truncation_psi, noise_mode, progress, devices,
    data_identity: the real data's description that every result records and the cache
    is keyed by; swd_reals: a dict that keeps the reals' SWD descriptors between calls).
    """
    specs = [m if isinstance(m, MetricSpec) else parse_metric(m) for m in metrics]
    runner = MetricRunner(G, real_iter_factory, cache_dir, **kwargs)
    runner.plan(specs)
    out = {}
    for spec in specs:
        start = time.time()
        results = runner.compute(spec)
        out[spec.name] = MetricResult(spec.name, results, time.time() - start,
                                      jax.device_count(), runner.provenance(spec))
    return out


def scalars(results: Mapping[str, MetricResult]) -> dict[str, float]:
    """Flattens results to {result key: value} (for logs, TensorBoard, best-checkpoint)."""
    return {k: v for r in results.values() for k, v in r.results.items()}
