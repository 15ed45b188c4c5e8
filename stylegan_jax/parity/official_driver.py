"""Trains StyleGAN2-ADA with NVIDIA's own modules on the CPU, as parity runs' reference side.

For `stylegan_jax.parity`: the official `training_loop` cannot run without CUDA (devices,
events, DDP), so this script puts the checkout's own parts (ImageFolderDataset,
InfiniteSampler, Generator, Discriminator, AugmentPipe, StyleGAN2Loss, training_stats)
together into the same schedule for one CPU process (officially one GPU, rank 0), each random
draw at its official place in the torch and numpy streams. It runs under a separate Python
that has torch and imports nothing from stylegan_jax.

Usage:
    PY official_driver.py --official CHECKOUT --spec SPEC.json --data DATADIR --out OUTDIR
        [--threads N] [--workers N] [--resume] [--stop-after-kimg K]

SPEC.json holds the official train.py / training_loop arguments under their names ("seed" may
stand for "random_seed"); unknown keys are an error. Default "-": required.
    key             type        default  meaning
    random_seed     int         -
    total_kimg      float       -        train until total_kimg*1000 images were shown
    snapshot_kimg   [float]     [total]  snapshot points, each a multiple of batch_size images
                                         (0: the initial networks)
    batch_size      int         -        images per iteration
    batch_gpu       int         -        images per accumulation round; divides batch_size
    G_kwargs        dict        -        Generator kwargs (class_name training.networks.Generator)
    D_kwargs        dict        -        Discriminator kwargs (class_name likewise)
    G_opt_kwargs    dict        -        {lr, betas, eps} (class_name torch.optim.Adam)
    D_opt_kwargs    dict        -        the same for D
    loss_kwargs     dict        {}       StyleGAN2Loss kwargs (r1_gamma, pl_weight, ...)
    G_reg_interval  int|null    4        null: no lazy regularisation (phase "Gboth")
    D_reg_interval  int|null    16
    ema_kimg        float       10       G_ema half-life
    ema_rampup      float|null  null
    augment_kwargs  dict|null   null     AugmentPipe kwargs, e.g. bgc {xflip: 1, ..., hue: 1}
    augment_p       float       0
    ada_target      float|null  null
    ada_interval    int         4
    ada_kimg        float       500
    xflip           bool        false    dataset x-flips (official --mirror)
    use_labels      bool        false    labels from dataset.json
    max_size        int|null    null     dataset subset (official --subset)
    kimg_per_tick   float       4

OUTDIR gets stats.jsonl (the official format, a line per tick); network-snapshot-KKKKKK.pkl
per snapshot point, the official pickle {training_set_kwargs, G, D, G_ema, augment_pipe} (a
point of I.FFF kimg is named network-snapshot-IIIIII.FFF.pkl); snapshots.jsonl ({kimg, nimg,
pkl} per snapshot); resume.pt (exact-resume state at the latest snapshot); done.json ({kimg,
nimg, seconds, train_seconds, img_per_sec}); .lock (one driver per OUTDIR).

Resume: with OUTDIR/resume.pt the run goes on from it (--resume makes that required); with
done.json it exits at once. Everything is built as for a fresh start, so that each
construction-time draw happens again, and then overwritten: module and optimizer states,
pl_mean, counters, the torch and numpy RNG states, training_stats' counters and collectors
(ADA's pending signs included). The data position comes back by skipping batch_idx *
batch_size indices of a fresh InfiniteSampler, whose order depends only on its seed. A resumed
run is bit-identical to an uninterrupted one at the same --threads (torch's CPU kernels split
sums by thread). --stop-after-kimg K exits after the snapshot at K, as if killed (for tests).

Deviations from the official loop, none of which changes the numbers: no DDP, metrics,
TensorBoard, image grids or CUDA events (phase times are wall-clock); pin_memory is off; the
summary-table inputs are zeros, not torch.empty (uninitialised memory could put NaN into
G.mapping.w_avg, which that training-mode pass updates); kimg points are compared as image
counts (0.24*1000 is 240.00000000000003); snapshots come at listed points, not every N ticks;
the tick line shows kimg to 3 decimals and appends the G and D losses; done.json's "seconds"
add up the sessions to their last snapshot.

torch 2.13 on the CPU, checkout unedited: bias_act and upfirdn2d run their reference code (the
CUDA plugins are only tried for CUDA tensors), conv2d_gradfix only acts on CUDA, and
grid_sample_gradfix falls back to F.grid_sample, whose double backward the R1 term through the
augmentations needs; Sampler gets back the no-op __init__ that InfiniteSampler calls;
`requests`, `distutils` and `scipy.signal` get stand-ins where they cannot be imported.
num_fp16_res > 0 works, but float16 is ~70x slower on the CPU.
"""

import argparse
import copy
import dataclasses
import fcntl
import importlib
import json
import os
import pickle
import sys
import time
import types
import urllib.parse
import warnings
from typing import Any, NamedTuple

# OpenMP threads spin while they wait by default; on shared cores (the JAX side of a parity
# run, other jobs) that made 2 threads ~10x slower than 1. Sleeping threads avoid it. Must be
# set before torch loads its OpenMP runtime; a caller's own choice wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

SPEC_DEFAULTS = dict(
    snapshot_kimg=None, G_reg_interval=4, D_reg_interval=16, ema_kimg=10, ema_rampup=None,
    augment_kwargs=None, augment_p=0, ada_target=None, ada_interval=4, ada_kimg=500,
    xflip=False, use_labels=False, max_size=None, kimg_per_tick=4, loss_kwargs={},
)  # fmt: skip
SPEC_REQUIRED = (
    "random_seed", "total_kimg", "batch_size", "batch_gpu",
    "G_kwargs", "D_kwargs", "G_opt_kwargs", "D_opt_kwargs",
)  # fmt: skip

# ---------------------------------------------------------------------------- command line, spec


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", required=True, help="stylegan2-ada-pytorch checkout")
    p.add_argument("--spec", required=True, help="SPEC.json (schema in this file)")
    p.add_argument("--data", required=True, help="image folder with dataset.json")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    p.add_argument("--workers", type=int, default=0, help="DataLoader num_workers")
    p.add_argument("--resume", action="store_true", help="require OUTDIR/resume.pt")
    p.add_argument("--stop-after-kimg", type=float, default=None,
                   help="exit (as if killed) after the snapshot at this kimg; for resume tests")
    return p.parse_args(argv)


def kimg_to_nimg(kimg, what):
    """Image count of a kimg value; points are compared as counts, never as floats."""
    nimg = int(round(float(kimg) * 1000))
    if abs(float(kimg) * 1000 - nimg) > 1e-6:
        raise SystemExit(f"{what}={kimg}: not a whole number of images")
    return nimg


def load_spec(path):
    """SPEC.json with defaults filled in and the image counts `_total_nimg`, `_snapshot_nimg`
    and `_tick_nimg` added (resume.pt stores this dict and must match it)."""
    with open(path) as f:
        spec = json.load(f)
    if "seed" in spec:
        if "random_seed" in spec:
            raise SystemExit('spec: give "seed" or "random_seed", not both')
        spec["random_seed"] = spec.pop("seed")
    unknown = set(spec) - set(SPEC_DEFAULTS) - set(SPEC_REQUIRED)
    missing = [k for k in SPEC_REQUIRED if k not in spec]
    if unknown or missing:
        raise SystemExit(f"spec: unknown keys {sorted(unknown)}, missing keys {missing}")
    spec = dict(copy.deepcopy(SPEC_DEFAULTS), **spec)
    batch, batch_gpu = int(spec["batch_size"]), int(spec["batch_gpu"])
    if batch % batch_gpu != 0:
        raise SystemExit(f"spec: batch_gpu {batch_gpu} does not divide batch_size {batch}")
    total_nimg = kimg_to_nimg(spec["total_kimg"], "total_kimg")
    points = spec["snapshot_kimg"] if spec["snapshot_kimg"] is not None else [spec["total_kimg"]]
    snapshot_nimg = []
    for k in points:
        nimg = kimg_to_nimg(k, "snapshot_kimg")
        if nimg % batch != 0 or not 0 <= nimg <= total_nimg:
            raise SystemExit(
                f"spec: snapshot at {k} kimg = {nimg} images is not a multiple of "
                f"batch_size {batch} within [0, total_kimg]"
            )
        snapshot_nimg.append(nimg)
    spec["_total_nimg"] = total_nimg
    spec["_snapshot_nimg"] = sorted(set(snapshot_nimg))
    spec["_tick_nimg"] = kimg_to_nimg(spec["kimg_per_tick"], "kimg_per_tick")
    return spec


def nimg_name(nimg):
    """'000002' for 2 kimg, '000000.240' for 0.24 kimg (the official name is cur_nimg//1000)."""
    return f"{nimg // 1000:06d}" if nimg % 1000 == 0 else f"{nimg // 1000:06d}.{nimg % 1000:03d}"


# ---------------------------------------------------------------------------- the checkout


def import_official(checkout):
    """Puts the checkout first on sys.path and lets its imports succeed in a bare torch venv."""
    checkout = os.path.abspath(checkout)
    if not os.path.isfile(os.path.join(checkout, "training", "training_loop.py")):
        raise SystemExit(f"--official {checkout}: not a stylegan2-ada-pytorch checkout")
    sys.path.insert(0, checkout)
    for name, stand_in in [
        ("requests", requests_stand_in),
        ("distutils.util", distutils_stand_in),
        ("scipy.signal", scipy_signal_stand_in),
    ]:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules.update(stand_in())
    # InfiniteSampler calls super().__init__(dataset), which torch 2.13's Sampler (no __init__
    # of its own any more) rejects; the old no-op comes back.
    if torch.utils.data.Sampler.__init__ is object.__init__:
        torch.utils.data.Sampler.__init__ = lambda self, data_source=None: None


def requests_stand_in():
    """dnnlib.util needs requests for URLs only, never opened here; its urlparse/urljoin."""
    stub = types.ModuleType("requests")
    parse = urllib.parse
    stub.compat = types.SimpleNamespace(urlparse=parse.urlparse, urljoin=parse.urljoin)
    return {"requests": stub}


def distutils_stand_in():
    """dnnlib.util imports distutils.util.strtobool (gone in Python 3.12) for a prompt."""
    dist, util = types.ModuleType("distutils"), types.ModuleType("distutils.util")
    util.strtobool = lambda s: int(s.lower() in ("y", "yes", "t", "true", "on", "1"))
    dist.util = util
    return {"distutils": dist, "distutils.util": util}


def scipy_signal_stand_in():
    """training.augment needs scipy.signal.convolve once, for the full 2-D convolution of two
    tiny filter arrays: a sum of shifted copies does the same."""

    def convolve(in1, in2):
        a = np.atleast_2d(np.asarray(in1, np.float64))
        b = np.atleast_2d(np.asarray(in2, np.float64))
        out = np.zeros((a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1))
        for (i, j), weight in np.ndenumerate(b):
            out[i : i + a.shape[0], j : j + a.shape[1]] += weight * a
        return out

    scipy, signal = types.ModuleType("scipy"), types.ModuleType("scipy.signal")
    signal.convolve = convolve
    scipy.signal = signal
    return {"scipy": scipy, "scipy.signal": signal}


def construct(default_class, kwargs, **more):
    """The official object a spec dict describes; its class_name defaults to `default_class`."""
    import dnnlib

    return dnnlib.util.construct_class_by_name(**{"class_name": default_class, **kwargs}, **more)


# ---------------------------------------------------------------------------- building


class SkippingSampler(torch.utils.data.Sampler):
    """The official InfiniteSampler's sequence with its first `skip` indices dropped."""

    def __init__(self, sampler, skip):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it)
        return it


def load_dataset(spec, data_dir):
    """The official ImageFolderDataset and the kwargs that rebuild it (as train.py stores them)."""
    import dnnlib

    kwargs = dnnlib.EasyDict(
        class_name="training.dataset.ImageFolderDataset",
        path=os.path.abspath(data_dir),
        use_labels=bool(spec["use_labels"]),
        max_size=spec["max_size"],
        xflip=bool(spec["xflip"]),
    )
    if spec["max_size"] is not None:
        kwargs.random_seed = int(spec["random_seed"])  # the subset train.py --subset picks
    dataset = construct(None, kwargs)
    if spec["use_labels"] and not dataset.has_labels:
        raise SystemExit("use_labels: the dataset has no labels in dataset.json")
    kwargs.resolution = dataset.resolution
    kwargs.max_size = len(dataset) // (2 if spec["xflip"] else 1)
    print(f"Data: {len(dataset)} images {dataset.image_shape}, labels {dataset.label_shape}.")
    return dataset, kwargs


def image_batches(dataset, seed, batch_size, skip, workers):
    """Iterator of (uint8 NCHW images, labels) in the official order, `skip` indices in."""
    from torch_utils import misc

    sampler = misc.InfiniteSampler(dataset=dataset, rank=0, num_replicas=1, seed=seed)
    loader = torch.utils.data.DataLoader(dataset=dataset, sampler=SkippingSampler(sampler, skip),
                                         batch_size=batch_size, num_workers=workers,
                                         pin_memory=False)
    return iter(loader)  # draws the loader's base seed from torch now, where the official does


def build_networks(spec, dataset, device):
    """G, D and G_ema, then the official summary passes (they draw noise and move w_avg)."""
    from torch_utils import misc

    shape = dict(c_dim=dataset.label_dim, img_resolution=dataset.resolution,
                 img_channels=dataset.num_channels)
    nets = [
        construct(f"training.networks.{cls}", spec[key], **shape)
        for cls, key in [("Generator", "G_kwargs"), ("Discriminator", "D_kwargs")]
    ]
    G, D = (net.train().requires_grad_(False).to(device) for net in nets)
    G_ema = copy.deepcopy(G).eval()
    z = torch.zeros([int(spec["batch_gpu"]), G.z_dim], device=device)  # see module doc
    c = torch.zeros([int(spec["batch_gpu"]), G.c_dim], device=device)
    misc.print_module_summary(D, [misc.print_module_summary(G, [z, c]), c])
    return G, D, G_ema


def build_augment(spec, device):
    """AugmentPipe at augment_p and, with an ADA target, the collector of D's real signs."""
    from torch_utils import training_stats

    wanted = spec["augment_p"] > 0 or spec["ada_target"] is not None
    if spec["augment_kwargs"] is None or not wanted:
        return None, None
    pipe = construct("training.augment.AugmentPipe", spec["augment_kwargs"])
    pipe = pipe.train().requires_grad_(False).to(device)
    pipe.p.copy_(torch.as_tensor(spec["augment_p"]))
    if spec["ada_target"] is None:
        return pipe, None
    return pipe, training_stats.Collector(regex="Loss/signs/real")


class Phase(NamedTuple):
    name: str  # Gmain, Greg, Gboth, Dmain, ...: what StyleGAN2Loss computes
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int  # runs when batch_idx % interval == 0


def build_phases(spec, G, D):
    """G's phases, then D's, with one Adam per network; returns (phases, {"G": opt, "D": opt})."""
    phases, opts = [], {}
    for name, module in [("G", G), ("D", D)]:
        kwargs = dict(spec[f"{name}_opt_kwargs"])
        interval = spec[f"{name}_reg_interval"]
        if interval is None:
            opts[name] = construct("torch.optim.Adam", kwargs, params=module.parameters())
            phases.append(Phase(name + "both", module, opts[name], 1))
            continue
        # Lazy regularisation (StyleGAN2 appendix B): per `interval` iterations the shared Adam
        # takes interval + 1 steps. Scaling lr by r = interval/(interval+1) keeps the distance
        # moved per iteration, and beta**r keeps how many iterations the moments remember.
        ratio = interval / (interval + 1)
        kwargs["lr"] = kwargs["lr"] * ratio
        kwargs["betas"] = [beta**ratio for beta in kwargs["betas"]]
        opts[name] = construct("torch.optim.Adam", kwargs, params=module.parameters())
        phases.append(Phase(name + "main", module, opts[name], 1))
        phases.append(Phase(name + "reg", module, opts[name], interval))
    return phases, opts


def draw_grid_latents(dataset, z_dim, device):
    """Draws the latents of the official snapshot grid, and drops them.

    No grids are written here, but the official loop draws these latents right after setting
    up the phases, and every later draw of torch's stream depends on them having been taken.
    The grid covers about 7680x4320 pixels, 7 to 32 images across and 4 to 32 down.
    """
    columns = int(np.clip(7680 // dataset.image_shape[2], 7, 32))
    rows = int(np.clip(4320 // dataset.image_shape[1], 4, 32))
    torch.randn([columns * rows, z_dim], device=device)


def use_cpu_ops():
    """Sets the official gradfix switches; on the CPU both fall back to plain torch ops."""
    from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix

    conv2d_gradfix.enabled = True
    grid_sample_gradfix.enabled = True
    # It warns at every call that it uses F.grid_sample, which is fine here (its double
    # backward works on this torch); one note instead.
    warnings.filterwarnings("ignore", message="grid_sample_gradfix not supported")
    print("Note: grid_sample_gradfix falls back to torch.nn.functional.grid_sample on this torch.")


# ---------------------------------------------------------------------------- training


@dataclasses.dataclass
class Clock:
    """Wall-clock bookkeeping; `prior_*` hold the seconds of a resumed run's earlier sessions."""

    start: float
    prior_seconds: float = 0.0
    prior_train_seconds: float = 0.0
    train_seconds: float = 0.0  # this session's time inside iterations
    tick_start: float = 0.0
    maintenance: float = 0.0  # seconds outside iterations before this tick: setup, reports

    def seconds(self):
        return self.prior_seconds + time.time() - self.start

    def all_train_seconds(self):
        return self.prior_train_seconds + self.train_seconds


@dataclasses.dataclass
class Training:
    """The official pieces of one run and its counters, stepped in the official order."""

    spec: dict
    device: torch.device
    dataset: Any
    dataset_kwargs: dict
    batches: Any
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    augment_pipe: Any
    ada_stats: Any
    loss: Any
    phases: list
    opts: dict
    stats: Any  # training_stats.Collector of everything: one stats.jsonl line per tick
    nimg: int = 0
    tick: int = 0
    batch_idx: int = 0
    tick_start_nimg: int = 0
    phase_ms: dict = dataclasses.field(default_factory=dict)

    @property
    def batch_size(self):
        return int(self.spec["batch_size"])

    @property
    def batch_gpu(self):
        return int(self.spec["batch_gpu"])

    def modules(self):
        return dict(G=self.G, D=self.D, G_ema=self.G_ema, augment_pipe=self.augment_pipe)

    def iteration(self):
        """One batch: the phases due, G_ema, the counters, ADA."""
        reals, real_labels, fake_z, fake_labels = self.draw_inputs()
        for phase, z, c in zip(self.phases, fake_z, fake_labels, strict=True):
            if self.batch_idx % phase.interval == 0:
                start = time.perf_counter()
                self.run_phase(phase, reals, real_labels, z, c)
                self.phase_ms[phase.name] = (time.perf_counter() - start) * 1e3
        self.update_ema()
        self.nimg += self.batch_size
        self.batch_idx += 1
        self.adjust_ada()

    def draw_inputs(self):
        """Reals split into batch_gpu rounds; fake latents and labels per phase and round.

        Fakes are drawn for every phase, due or not, so the streams never depend on the
        schedule; their labels are those of random dataset items (numpy's stream), drawn even
        for an unconditional dataset.
        """
        reals, real_labels = next(self.batches)
        reals = (reals.to(self.device).to(torch.float32) / 127.5 - 1).split(self.batch_gpu)
        real_labels = real_labels.to(self.device).split(self.batch_gpu)
        n = len(self.phases) * self.batch_size
        fake_z = torch.randn([n, self.G.z_dim], device=self.device)
        picks = [self.dataset.get_label(np.random.randint(len(self.dataset))) for _ in range(n)]
        fake_labels = torch.from_numpy(np.stack(picks)).to(self.device)
        per_phase = [
            [part.split(self.batch_gpu) for part in x.split(self.batch_size)]
            for x in (fake_z, fake_labels)
        ]
        return reals, real_labels, *per_phase

    def run_phase(self, phase, reals, real_labels, fake_z, fake_labels):
        """Accumulates the phase's gradients over the rounds, then one optimizer step."""
        from torch_utils import misc

        phase.opt.zero_grad(set_to_none=True)
        phase.module.requires_grad_(True)  # the other network must not collect gradients
        rounds = list(zip(reals, real_labels, fake_z, fake_labels, strict=True))
        for i, (real, real_c, z, c) in enumerate(rounds):
            # gain: a regulariser that runs every `interval` batches counts `interval` times;
            # sync only matters to DDP.
            self.loss.accumulate_gradients(phase=phase.name, real_img=real, real_c=real_c,
                                           gen_z=z, gen_c=c, sync=i == len(rounds) - 1,
                                           gain=phase.interval)
        phase.module.requires_grad_(False)
        # One NaN or inf (float16 overflow) would stay in Adam's moments for good.
        for param in phase.module.parameters():
            if param.grad is not None:
                misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
        phase.opt.step()

    def update_ema(self):
        """G_ema moves toward G with a half-life of ema_kimg thousand images, shortened while
        ramping up to ema_rampup times the images shown (the random start fades quickly)."""
        half_life = self.spec["ema_kimg"] * 1000
        if self.spec["ema_rampup"] is not None:
            half_life = min(half_life, self.nimg * self.spec["ema_rampup"])
        beta = 0.5 ** (self.batch_size / max(half_life, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)  # w_avg and the fixed noise are copied, not averaged

    def adjust_ada(self):
        """ADA's p controller, every ada_interval batches: when the mean sign of D's outputs on
        reals (its overfitting measure) is above the target p rises, below it p falls, by a
        step that would cross [0, 1] in ada_kimg thousand images; p never drops below 0."""
        from torch_utils import misc

        interval = self.spec["ada_interval"]
        if self.ada_stats is None or self.batch_idx % interval != 0:
            return
        self.ada_stats.update()
        error = self.ada_stats["Loss/signs/real"] - self.spec["ada_target"]
        step = np.sign(error) * (self.batch_size * interval) / (self.spec["ada_kimg"] * 1000)
        p = self.augment_pipe.p
        p.copy_((p + step).max(misc.constant(0, device=self.device)))

    def end_tick(self, clock, stats_file):
        """Reports progress and timing through training_stats, then writes their means as one
        stats.jsonl line and prints the status line (official names and fields)."""
        import dnnlib
        from torch_utils import training_stats

        end = time.time()
        total = clock.prior_seconds + end - clock.start
        tick_s = end - clock.tick_start
        kimg_s = tick_s / (self.nimg - self.tick_start_nimg) * 1e3
        p = float(self.augment_pipe.p.cpu()) if self.augment_pipe is not None else 0
        fields = [  # (label, statistic, value, format)
            ("tick", "Progress/tick", self.tick, "<5d"),
            ("kimg", "Progress/kimg", self.nimg / 1e3, "<8.3f"),
            ("time", "Timing/total_sec", total, "time"),
            ("sec/tick", "Timing/sec_per_tick", tick_s, "<7.1f"),
            ("sec/kimg", "Timing/sec_per_kimg", kimg_s, "<7.2f"),
            ("maintenance", "Timing/maintenance_sec", clock.maintenance, "<6.1f"),
            ("cpumem", "Resources/cpu_mem_gb", cpu_mem_gb(), "<6.2f"),
            ("augment", "Progress/augment", p, ".3f"),
        ]
        line = []
        for label, stat, value, fmt in fields:
            value = training_stats.report0(stat, value)
            text = f"{dnnlib.util.format_time(value):<12s}" if fmt == "time" else f"{value:{fmt}}"
            line.append(f"{label} {text}")
        training_stats.report0("Timing/total_hours", total / (60 * 60))
        training_stats.report0("Timing/total_days", total / (24 * 60 * 60))
        for name, ms in self.phase_ms.items():
            training_stats.report0("Timing/" + name, ms)
        self.stats.update()
        stats_file.write(json.dumps(dict(self.stats.as_dict(), timestamp=time.time())) + "\n")
        stats_file.flush()
        losses = f"G {self.stats['Loss/G/loss']:.4f} D {self.stats['Loss/D/loss']:.4f}"
        print(" ".join(line), losses)
        self.tick += 1
        self.tick_start_nimg = self.nimg
        clock.tick_start = time.time()
        clock.maintenance = clock.tick_start - end

    def save_snapshot(self, out, clock):
        """The official network pickle, then resume.pt, then the snapshots.jsonl line (so a
        listed snapshot always has its resume state)."""
        nets = {
            name: None if m is None else copy.deepcopy(m).eval().requires_grad_(False).cpu()
            for name, m in self.modules().items()
        }
        pkl = f"network-snapshot-{nimg_name(self.nimg)}.pkl"
        data = dict(training_set_kwargs=dict(self.dataset_kwargs), **nets)
        atomic_write(os.path.join(out, pkl), lambda f: pickle.dump(data, f))
        state = self.resume_state(clock)
        atomic_write(os.path.join(out, "resume.pt"), lambda f: torch.save(state, f))
        with open(os.path.join(out, "snapshots.jsonl"), "a") as f:
            f.write(json.dumps(dict(kimg=self.nimg / 1000, nimg=self.nimg, pkl=pkl)) + "\n")
        print(f"Wrote {pkl} and resume.pt at kimg {self.nimg / 1000:g}.")

    def resume_state(self, clock):
        """Everything `restore` needs to continue bit-identically (see the module doc)."""
        from torch_utils import training_stats

        def moments(collector):
            if collector is None:
                return None
            return copy.deepcopy((collector._cumulative, collector._moments))

        nets = self.modules()
        return dict(
            spec=self.spec,
            cur_nimg=self.nimg,
            cur_tick=self.tick,
            batch_idx=self.batch_idx,
            tick_start_nimg=self.tick_start_nimg,
            phase_ms=self.phase_ms,
            threads=torch.get_num_threads(),
            seconds=clock.seconds(),
            train_seconds=clock.all_train_seconds(),
            **{name: None if m is None else m.state_dict() for name, m in nets.items()},
            G_opt=self.opts["G"].state_dict(),
            D_opt=self.opts["D"].state_dict(),
            pl_mean=self.loss.pl_mean.clone(),
            torch_rng=torch.get_rng_state(),
            numpy_rng=np.random.get_state(),
            stats_counters=copy.deepcopy(training_stats._counters),
            stats_cumulative=copy.deepcopy(training_stats._cumulative),
            stats_collector=moments(self.stats),
            ada_stats=moments(self.ada_stats),
        )

    def restore(self, state):
        """Overwrites the freshly built run with a resume_state."""
        from torch_utils import training_stats

        for name, module in self.modules().items():
            if module is not None:
                module.load_state_dict(state[name])
        for name, opt in self.opts.items():
            opt.load_state_dict(state[name + "_opt"])
        self.loss.pl_mean.copy_(state["pl_mean"])
        self.nimg, self.tick = state["cur_nimg"], state["cur_tick"]
        self.batch_idx, self.tick_start_nimg = state["batch_idx"], state["tick_start_nimg"]
        self.phase_ms = state["phase_ms"]
        for live, saved in [
            (training_stats._counters, state["stats_counters"]),
            (training_stats._cumulative, state["stats_cumulative"]),
        ]:
            live.clear()
            live.update(saved)
        for collector, key in [(self.stats, "stats_collector"), (self.ada_stats, "ada_stats")]:
            if collector is not None:
                collector._cumulative, collector._moments = state[key]
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])


def build(spec, data_dir, device, skip=0, workers=0):
    """All official pieces, constructed in the official order, since weights, summary passes
    and grid latents draw from the seeded streams; `skip` data indices are passed over."""
    from torch_utils import training_stats

    seed = int(spec["random_seed"])  # the official seed * num_gpus + rank, with 1 GPU, rank 0
    np.random.seed(seed)
    torch.manual_seed(seed)
    use_cpu_ops()
    dataset, dataset_kwargs = load_dataset(spec, data_dir)
    batches = image_batches(dataset, seed, int(spec["batch_size"]), skip, workers)
    G, D, G_ema = build_networks(spec, dataset, device)
    augment_pipe, ada_stats = build_augment(spec, device)
    loss = construct("training.loss.StyleGAN2Loss", spec["loss_kwargs"], device=device,
                     G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, augment_pipe=augment_pipe)
    phases, opts = build_phases(spec, G, D)
    draw_grid_latents(dataset, G.z_dim, device)
    return Training(
        spec, device, dataset, dataset_kwargs, batches, G, D, G_ema, augment_pipe, ada_stats,
        loss, phases, opts, stats=training_stats.Collector(regex=".*"),
        phase_ms={phase.name: [] for phase in phases},  # []: reports nothing until a phase ran
    )  # fmt: skip


# ---------------------------------------------------------------------------- files, the run


def cpu_mem_gb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except OSError:
        return 0.0


def atomic_write(path, write_fn, mode="wb"):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, mode) as f:
        write_fn(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def trim_jsonl(path, max_nimg, nimg_of):
    """Drops lines written after the resume point (a run killed after its last snapshot)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [line for line in f if line.strip() and nimg_of(json.loads(line)) <= max_nimg]
    atomic_write(path, lambda f: f.writelines(lines), mode="w")


def claim(out):
    """Locks OUTDIR for this process (the returned file holds the lock until exit); None when
    the run there has finished."""
    os.makedirs(out, exist_ok=True)
    if os.path.exists(os.path.join(out, "done.json")):
        print(f"{out}/done.json exists: run already finished.")
        return None
    lock = open(os.path.join(out, ".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SystemExit(f"{out} is in use by another driver") from None
    return lock


def read_resume(out, spec, required):
    """OUTDIR's resume.pt, checked against `spec`; None for a fresh run."""
    path = os.path.join(out, "resume.pt")
    if os.path.exists(path):
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["spec"] != spec:
            raise SystemExit(f"{path} was written for a different spec")
        return state
    if required:
        raise SystemExit(f"--resume: {path} does not exist")
    return None


def resume_logs(out, state, clock):
    """Carries the earlier sessions' seconds over and cuts the logs back to the resume point."""
    clock.prior_seconds, clock.prior_train_seconds = state["seconds"], state["train_seconds"]
    saved_threads = state.get("threads", torch.get_num_threads())
    if saved_threads != torch.get_num_threads():
        print(
            f"Warning: resuming with {torch.get_num_threads()} threads, not {saved_threads}: "
            "the run stays valid but is not bit-exact."
        )
    nimg = state["cur_nimg"]
    trim_jsonl(
        os.path.join(out, "stats.jsonl"), nimg, lambda d: round(d["Progress/kimg"]["mean"] * 1000)
    )
    trim_jsonl(os.path.join(out, "snapshots.jsonl"), nimg, lambda d: d["nimg"])
    print(f"Resumed at kimg {nimg / 1000:g} (batch_idx {state['batch_idx']}).")


def write_done(out, run, clock):
    train_s = clock.all_train_seconds()
    result = dict(
        kimg=run.nimg / 1000,
        nimg=run.nimg,
        seconds=clock.seconds(),
        train_seconds=train_s,
        img_per_sec=run.nimg / max(train_s, 1e-9),
    )
    done = json.dumps(result) + "\n"
    atomic_write(os.path.join(out, "done.json"), lambda f: f.write(done), mode="w")
    print(f"Done: {result['kimg']:g} kimg, {result['img_per_sec']:.1f} img/s in iterations.")


def train(args, spec):
    """Trains (or finishes) the run in --out."""
    out = os.path.abspath(args.out)
    lock = claim(out)  # held until the process exits
    if lock is None:
        return
    state = read_resume(out, spec, args.resume)
    clock = Clock(start=time.time())
    skip = 0 if state is None else state["batch_idx"] * int(spec["batch_size"])
    run = build(spec, args.data, torch.device("cpu"), skip, args.workers)
    if state is None:  # a fresh run replaces an earlier run's logs
        for name in ("stats.jsonl", "snapshots.jsonl"):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    else:
        run.restore(state)
        resume_logs(out, state, clock)
    stop = args.stop_after_kimg
    stop_nimg = None if stop is None else kimg_to_nimg(stop, "--stop-after-kimg")
    with open(os.path.join(out, "stats.jsonl"), "a") as stats_file:
        if state is None and 0 in spec["_snapshot_nimg"]:
            run.save_snapshot(out, clock)
        print(f"Training until kimg {spec['total_kimg']}.")
        clock.tick_start = time.time()
        clock.maintenance = clock.tick_start - clock.start
        while run.nimg < spec["_total_nimg"]:
            if stop_nimg is not None and run.nimg >= stop_nimg:
                print(f"Stopping at kimg {run.nimg / 1000:g} (--stop-after-kimg).")
                return
            start = time.perf_counter()
            run.iteration()
            clock.train_seconds += time.perf_counter() - start
            # The first tick ends after one iteration, as officially, the last at the end.
            last = run.nimg >= spec["_total_nimg"]
            if last or run.tick == 0 or run.nimg >= run.tick_start_nimg + spec["_tick_nimg"]:
                run.end_tick(clock, stats_file)
            if run.nimg in spec["_snapshot_nimg"]:
                run.save_snapshot(out, clock)
    write_done(out, run, clock)


def main(argv=None):
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    torch.set_num_threads(max(1, args.threads))
    import_official(args.official)
    train(args, load_spec(args.spec))


if __name__ == "__main__":
    main()
