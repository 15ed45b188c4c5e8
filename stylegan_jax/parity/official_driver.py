"""Train NVIDIA's StyleGAN2-ADA (PyTorch) on the CPU, with its own modules, for parity runs.

This file runs under a separate Python that has torch (not the project's). It imports
only the standard library, numpy, torch and the official modules from the checkout
named by --official; nothing from stylegan_jax. The official `training_loop` only runs
on CUDA, so this driver composes the same official pieces (ImageFolderDataset,
InfiniteSampler, Generator/Discriminator, AugmentPipe, StyleGAN2Loss, training_stats)
into the same schedule on one CPU "GPU" (num_gpus=1, rank=0).

Usage:
    PY official_driver.py --official DIR --spec SPEC.json --data DATADIR --out OUTDIR
        [--threads N] [--workers N] [--resume] [--stop-after-kimg K] [--grids]

SPEC.json (keys named as in the official train.py / training_loop kwargs; every key is
required unless a default is shown; unknown keys are an error):
    random_seed      int    (alias "seed") official random_seed
    total_kimg       float  train until cur_nimg >= round(total_kimg*1000)
    snapshot_kimg    [float] exact points (kimg) for snapshots; batch_size must divide
                     each k*1000; 0 = the initial networks. Default [total_kimg].
    batch_size       int    total batch per iteration
    batch_gpu        int    per-round batch (gradient accumulation); divides batch_size
    G_kwargs         dict   official Generator kwargs (z_dim, w_dim, mapping_kwargs,
                            synthesis_kwargs{channel_base, channel_max, num_fp16_res,
                            conv_clamp, architecture}); class_name defaults to
                            training.networks.Generator
    D_kwargs         dict   official Discriminator kwargs (architecture, channel_base,
                            channel_max, num_fp16_res, conv_clamp, block_kwargs,
                            mapping_kwargs, epilogue_kwargs{mbstd_group_size});
                            class_name defaults to training.networks.Discriminator
    G_opt_kwargs     dict   {"lr", "betas", "eps"}; class_name defaults to torch.optim.Adam
    D_opt_kwargs     dict   same
    loss_kwargs      dict   StyleGAN2Loss kwargs: r1_gamma, style_mixing_prob, pl_weight,
                            pl_batch_shrink, pl_decay (official defaults where absent)
    G_reg_interval   int|null = 4     (null: no lazy regularisation, phase "Gboth")
    D_reg_interval   int|null = 16
    ema_kimg         float = 10
    ema_rampup       float|null = null
    augment_kwargs   dict|null = null AugmentPipe kwargs, e.g. bgc: {xflip:1, rotate90:1,
                            xint:1, scale:1, rotate:1, aniso:1, xfrac:1, brightness:1,
                            contrast:1, lumaflip:1, hue:1, saturation:1}
    augment_p        float = 0
    ada_target       float|null = null
    ada_interval     int = 4
    ada_kimg         float = 500
    xflip            bool = false  dataset x-flips (official --mirror)
    use_labels       bool = false  conditioning labels from dataset.json
    max_size         int|null = null  dataset subset (official --subset)
    kimg_per_tick    float = 4

OUTDIR gets:
    stats.jsonl      one line per tick, the official format: {name: {num, mean, std}, ...,
                     "timestamp"}: Loss/G/loss, Loss/D/loss, Loss/r1_penalty,
                     Loss/pl_penalty, Loss/signs/real, Progress/kimg, Progress/augment, ...
    network-snapshot-KKKKKK.pkl   (KKKKKK = kimg; a fractional point k = I.FFF kimg is
                     named network-snapshot-IIIIII.FFF.pkl), the official pickle:
                     {training_set_kwargs, G, D, G_ema, augment_pipe}
    snapshots.jsonl  one line per snapshot: {"kimg", "nimg", "pkl"}
    resume.pt        exact-resume state at the latest snapshot (torch.save)
    done.json        {"kimg", "nimg", "seconds", "train_seconds", "img_per_sec"}
    reals.png, fakes_init.png, fakesKKKKKK[.FFF].png   only with --grids

Resume: when OUTDIR/resume.pt exists the run continues from it (--resume makes that
required); a run with OUTDIR/done.json exits at once. Everything is rebuilt as for a
fresh start (so every construction-time random draw happens again), then the saved
state overwrites it: module and optimizer state dicts, StyleGAN2Loss.pl_mean, counters,
the torch and numpy RNG states, and training_stats' counters and collectors (the ADA
collector's pending signs included). The data position is restored by skipping
batch_idx * batch_size indices of a fresh InfiniteSampler, whose sequence depends only
on its seed. Resumed runs are bit-identical to uninterrupted ones at the same --threads
(torch's CPU kernels split sums by thread, so another count changes the last bits).

Deviations from the official loop (all without effect on the training numbers except
where said): no DDP, metrics, TensorBoard or CUDA events (phase times are wall-clock);
pin_memory is off (it needs an accelerator); the summary-table inputs are zeros instead
of torch.empty (uninitialised CPU memory could put NaN into G.mapping.w_avg, which the
summary's training-mode forward updates); kimg points are compared as integer image
counts (0.24*1000 is 240.00000000000003 in floating point); network snapshots happen at
the listed kimg points instead of every network_snapshot_ticks ticks.

On torch 2.13 / CPU (nothing in the checkout is edited): bias_act and upfirdn2d use their
reference code (their CUDA plugins are only tried for CUDA tensors), conv2d_gradfix only
acts on CUDA, grid_sample_gradfix falls back to F.grid_sample (whose double backward R1
through the augmentations needs); torch.utils.data.Sampler gets back the no-op __init__
that InfiniteSampler calls; `requests`, `distutils` and `scipy.signal` get stand-ins only
if they cannot be imported. num_fp16_res > 0 runs, but float16 on the CPU is ~70x slower.
One driver per OUTDIR (a lock file); done.json's "seconds" add up the sessions up to
their last snapshot.
"""

import argparse
import copy
import fcntl
import json
import os
import pickle
import sys
import time
import types
import warnings

# OpenMP threads spin while they wait by default; when the cores are shared (the JAX side of a
# parity run, other jobs) that made 2 threads ~10x slower than 1 here. Let them sleep instead,
# unless the caller chose a policy. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

SPEC_DEFAULTS = dict(
    snapshot_kimg=None,
    G_reg_interval=4,
    D_reg_interval=16,
    ema_kimg=10,
    ema_rampup=None,
    augment_kwargs=None,
    augment_p=0,
    ada_target=None,
    ada_interval=4,
    ada_kimg=500,
    xflip=False,
    use_labels=False,
    max_size=None,
    kimg_per_tick=4,
    loss_kwargs={},
)
SPEC_REQUIRED = (
    "random_seed",
    "total_kimg",
    "batch_size",
    "batch_gpu",
    "G_kwargs",
    "D_kwargs",
    "G_opt_kwargs",
    "D_opt_kwargs",
)

# ---------------------------------------------------------------------------- setup


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", required=True, help="stylegan2-ada-pytorch checkout")
    p.add_argument("--spec", required=True, help="SPEC.json (schema in this file)")
    p.add_argument("--data", required=True, help="image folder with dataset.json")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    p.add_argument("--workers", type=int, default=0, help="DataLoader num_workers")
    p.add_argument("--resume", action="store_true", help="require OUTDIR/resume.pt")
    p.add_argument(
        "--stop-after-kimg",
        type=float,
        default=None,
        help="exit (as if killed) after the snapshot at this kimg; for resume tests",
    )
    p.add_argument("--grids", action="store_true", help="write reals/fakes image grids")
    return p.parse_args(argv)


def import_official(checkout):
    """Put the checkout on sys.path, with stand-ins for optional imports it never uses here."""
    checkout = os.path.abspath(checkout)
    if not os.path.isfile(os.path.join(checkout, "training", "training_loop.py")):
        raise SystemExit(f"--official {checkout}: not a stylegan2-ada-pytorch checkout")
    sys.path.insert(0, checkout)
    # dnnlib.util imports requests (only for URLs) and distutils.strtobool (only for a
    # prompt); stand-ins keep a bare torch+numpy venv (or Python >= 3.12) working.
    try:
        import requests  # noqa: F401
    except ImportError:
        import urllib.parse

        stub = types.ModuleType("requests")
        stub.compat = types.SimpleNamespace(
            urlparse=urllib.parse.urlparse, urljoin=urllib.parse.urljoin
        )
        sys.modules["requests"] = stub
    try:
        import distutils.util  # noqa: F401
    except ImportError:
        dist, util = types.ModuleType("distutils"), types.ModuleType("distutils.util")
        util.strtobool = lambda s: int(s.lower() in ("y", "yes", "t", "true", "on", "1"))
        dist.util = util
        sys.modules.update({"distutils": dist, "distutils.util": util})
    # torch 2.13's Sampler has no __init__ any more, but the official InfiniteSampler still
    # calls super().__init__(dataset); give Sampler back the old no-op one.
    if torch.utils.data.Sampler.__init__ is object.__init__:
        torch.utils.data.Sampler.__init__ = lambda self, data_source=None: None
    # training.augment imports scipy.signal for one full 2-D convolution of tiny numpy
    # arrays (the image-filter bank); without scipy a direct numpy sum stands in.
    try:
        import scipy.signal  # noqa: F401
    except ImportError:

        def convolve(in1, in2):
            a, b = (
                np.atleast_2d(np.asarray(in1, np.float64)),
                np.atleast_2d(np.asarray(in2, np.float64)),
            )
            out = np.zeros((a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1))
            for i in range(b.shape[0]):
                for j in range(b.shape[1]):
                    out[i : i + a.shape[0], j : j + a.shape[1]] += b[i, j] * a
            return out

        scipy, signal = types.ModuleType("scipy"), types.ModuleType("scipy.signal")
        signal.convolve = convolve
        scipy.signal = signal
        sys.modules.update({"scipy": scipy, "scipy.signal": signal})


def kimg_to_nimg(kimg, what):
    nimg = int(round(float(kimg) * 1000))
    if abs(float(kimg) * 1000 - nimg) > 1e-6:
        raise SystemExit(f"{what}={kimg}: not a whole number of images")
    return nimg


def load_spec(path):
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


def atomic_write(path, write_fn, mode="wb"):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, mode) as f:
        write_fn(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def trim_jsonl(path, max_nimg, nimg_of):
    """Drop lines written after the resume point (a run killed after its last snapshot)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [line for line in f if line.strip() and nimg_of(json.loads(line)) <= max_nimg]
    atomic_write(path, lambda f: f.writelines(lines), mode="w")


class SkippingSampler(torch.utils.data.Sampler):
    """The official InfiniteSampler's sequence with its first `skip` indices dropped."""

    def __init__(self, sampler, skip):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it)
        return it


# ---------------------------------------------------------------------------- grids


def snapshot_grid(training_set, random_seed=0):
    """Grid layout and dataset indices as the official setup_snapshot_image_grid picks them."""
    rnd = np.random.RandomState(random_seed)
    gw = int(np.clip(7680 // training_set.image_shape[2], 7, 32))
    gh = int(np.clip(4320 // training_set.image_shape[1], 4, 32))
    if not training_set.has_labels:
        order = list(range(len(training_set)))
        rnd.shuffle(order)
        return (gw, gh), [order[i % len(order)] for i in range(gw * gh)]
    groups = {}
    for idx in range(len(training_set)):
        groups.setdefault(tuple(training_set.get_details(idx).raw_label.flat[::-1]), []).append(idx)
    keys = sorted(groups)
    for key in keys:
        rnd.shuffle(groups[key])
    indices = []
    for y in range(gh):
        group = groups[keys[y % len(keys)]]
        indices += [group[x % len(group)] for x in range(gw)]
        groups[keys[y % len(keys)]] = [group[(i + gw) % len(group)] for i in range(len(group))]
    return (gw, gh), indices


def save_grid(images, path, drange, grid_size):
    import PIL.Image  # the official dataset code needs Pillow anyway

    lo, hi = drange
    img = (
        np.rint((np.asarray(images, np.float32) - lo) * (255 / (hi - lo)))
        .clip(0, 255)
        .astype(np.uint8)
    )
    gw, gh = grid_size
    _, c, h, w = img.shape
    img = img.reshape(gh, gw, c, h, w).transpose(0, 3, 1, 4, 2).reshape(gh * h, gw * w, c)
    PIL.Image.fromarray(img[:, :, 0] if c == 1 else img, "L" if c == 1 else "RGB").save(path)


# ---------------------------------------------------------------------------- training


def cpu_mem_gb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except OSError:
        return 0.0


def run(args, spec):
    import dnnlib
    from torch_utils import misc, training_stats
    from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    if os.path.exists(os.path.join(out, "done.json")):
        print(f"{out}/done.json exists: run already finished.")
        return
    lock = open(os.path.join(out, ".lock"), "w")  # held until exit; one driver per OUTDIR
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SystemExit(f"{out} is in use by another driver") from None
    resume_path = os.path.join(out, "resume.pt")
    state = None
    if os.path.exists(resume_path):
        state = torch.load(resume_path, map_location="cpu", weights_only=False)
        if state["spec"] != spec:
            raise SystemExit(f"{resume_path} was written for a different spec")
    elif args.resume:
        raise SystemExit(f"--resume: {resume_path} does not exist")

    # Initialize (official order: seeds, then data, networks, augment, loss, grid).
    start_time = time.time()
    device = torch.device("cpu")
    num_gpus, rank, seed = 1, 0, int(spec["random_seed"])
    batch_size, batch_gpu = int(spec["batch_size"]), int(spec["batch_gpu"])
    np.random.seed(seed * num_gpus + rank)
    torch.manual_seed(seed * num_gpus + rank)
    conv2d_gradfix.enabled = True  # only acts on CUDA inputs: plain conv2d here
    grid_sample_gradfix.enabled = True  # torch >= 1.10 falls back to F.grid_sample, which has the
    # double backward R1 needs through the augmentations; say so once instead of at every call
    warnings.filterwarnings("ignore", message="grid_sample_gradfix not supported")
    print("Note: grid_sample_gradfix falls back to torch.nn.functional.grid_sample on this torch.")

    print("Loading training set...")
    training_set_kwargs = dnnlib.EasyDict(
        class_name="training.dataset.ImageFolderDataset",
        path=os.path.abspath(args.data),
        use_labels=bool(spec["use_labels"]),
        max_size=spec["max_size"],
        xflip=bool(spec["xflip"]),
    )
    if spec["max_size"] is not None:
        training_set_kwargs.random_seed = seed  # as train.py --subset
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    if spec["use_labels"] and not training_set.has_labels:
        raise SystemExit("use_labels: the dataset has no labels in dataset.json")
    training_set_kwargs.resolution = training_set.resolution  # explicit, as train.py records them
    training_set_kwargs.max_size = len(training_set) // (2 if spec["xflip"] else 1)
    skip = 0 if state is None else state["batch_idx"] * batch_size
    training_set_sampler = misc.InfiniteSampler(
        dataset=training_set, rank=rank, num_replicas=num_gpus, seed=seed
    )
    training_set_iterator = iter(
        torch.utils.data.DataLoader(  # iter() draws one torch seed, as officially
            dataset=training_set,
            sampler=SkippingSampler(training_set_sampler, skip),
            batch_size=batch_size // num_gpus,
            num_workers=args.workers,
            pin_memory=False,
        )
    )
    print(
        f"\nNum images:  {len(training_set)}\nImage shape: {training_set.image_shape}\n"
        f"Label shape: {training_set.label_shape}\n"
    )

    print("Constructing networks...")
    common_kwargs = dict(
        c_dim=training_set.label_dim,
        img_resolution=training_set.resolution,
        img_channels=training_set.num_channels,
    )
    G_kwargs = dict(dict(class_name="training.networks.Generator"), **spec["G_kwargs"])
    D_kwargs = dict(dict(class_name="training.networks.Discriminator"), **spec["D_kwargs"])
    G = (
        dnnlib.util.construct_class_by_name(**G_kwargs, **common_kwargs)
        .train()
        .requires_grad_(False)
        .to(device)
    )
    D = (
        dnnlib.util.construct_class_by_name(**D_kwargs, **common_kwargs)
        .train()
        .requires_grad_(False)
        .to(device)
    )
    G_ema = copy.deepcopy(G).eval()
    z = torch.zeros([batch_gpu, G.z_dim], device=device)  # official: torch.empty (see module doc)
    c = torch.zeros([batch_gpu, G.c_dim], device=device)
    img = misc.print_module_summary(G, [z, c])
    misc.print_module_summary(D, [img, c])

    print("Setting up augmentation...")
    augment_pipe, ada_stats = None, None
    ada_target = spec["ada_target"]
    if spec["augment_kwargs"] is not None and (spec["augment_p"] > 0 or ada_target is not None):
        augment_kwargs = dict(
            dict(class_name="training.augment.AugmentPipe"), **spec["augment_kwargs"]
        )
        augment_pipe = (
            dnnlib.util.construct_class_by_name(**augment_kwargs)
            .train()
            .requires_grad_(False)
            .to(device)
        )
        augment_pipe.p.copy_(torch.as_tensor(spec["augment_p"]))
        if ada_target is not None:
            ada_stats = training_stats.Collector(regex="Loss/signs/real")

    print("Setting up training phases...")
    loss_kwargs = dict(dict(class_name="training.loss.StyleGAN2Loss"), **spec["loss_kwargs"])
    loss = dnnlib.util.construct_class_by_name(
        device=device,
        G_mapping=G.mapping,
        G_synthesis=G.synthesis,
        D=D,
        augment_pipe=augment_pipe,
        **loss_kwargs,
    )
    phases, opts = [], {}
    for name, module, opt_kwargs, reg_interval in [
        ("G", G, spec["G_opt_kwargs"], spec["G_reg_interval"]),
        ("D", D, spec["D_opt_kwargs"], spec["D_reg_interval"]),
    ]:
        opt_kwargs = dnnlib.EasyDict(dict(dict(class_name="torch.optim.Adam"), **opt_kwargs))
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + "both", module=module, opt=opt, interval=1)]
        else:  # lazy regularisation: Adam's lr and betas rescaled by interval/(interval+1)
            mb_ratio = reg_interval / (reg_interval + 1)
            opt_kwargs.lr = opt_kwargs.lr * mb_ratio
            opt_kwargs.betas = [beta**mb_ratio for beta in opt_kwargs.betas]
            opt = dnnlib.util.construct_class_by_name(module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + "main", module=module, opt=opt, interval=1)]
            phases += [
                dnnlib.EasyDict(name=name + "reg", module=module, opt=opt, interval=reg_interval)
            ]
        opts[name] = opt
    phase_ms = {phase.name: [] for phase in phases}

    # The official loop draws the grid latents here, so they are drawn (and the torch RNG
    # advanced) whether or not grids are written.
    grid_size, grid_indices = snapshot_grid(training_set)
    labels = np.stack([training_set.get_label(i) for i in grid_indices])
    grid_z = torch.randn([labels.shape[0], G.z_dim], device=device).split(batch_gpu)
    grid_c = torch.from_numpy(labels).to(device).split(batch_gpu)

    def write_fakes(name):
        if args.grids:
            images = torch.cat(
                [
                    G_ema(z=z, c=c, noise_mode="const").cpu()
                    for z, c in zip(grid_z, grid_c, strict=True)
                ]
            )
            save_grid(images.numpy(), os.path.join(out, name), drange=[-1, 1], grid_size=grid_size)

    stats_collector = training_stats.Collector(regex=".*")

    # Counters, possibly restored.
    cur_nimg = cur_tick = batch_idx = tick_start_nimg = 0
    prior_seconds = prior_train_seconds = 0.0
    if state is not None:
        for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)]:
            if module is not None:
                module.load_state_dict(state[name])
        for name, opt in opts.items():
            opt.load_state_dict(state[name + "_opt"])
        loss.pl_mean.copy_(state["pl_mean"])
        cur_nimg, cur_tick, batch_idx = state["cur_nimg"], state["cur_tick"], state["batch_idx"]
        tick_start_nimg, phase_ms = state["tick_start_nimg"], state["phase_ms"]
        prior_seconds, prior_train_seconds = state["seconds"], state["train_seconds"]
        saved_threads = state.get("threads", torch.get_num_threads())
        if saved_threads != torch.get_num_threads():  # CPU kernels split sums by thread
            print(
                f"Warning: resuming with {torch.get_num_threads()} threads, not "
                f"{saved_threads}: the run stays valid but is not bit-exact."
            )
        training_stats._counters.clear()
        training_stats._counters.update(state["stats_counters"])
        training_stats._cumulative.clear()
        training_stats._cumulative.update(state["stats_cumulative"])
        for collector, key in [(stats_collector, "stats_collector"), (ada_stats, "ada_stats")]:
            if collector is not None:
                collector._cumulative, collector._moments = state[key]
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        trim_jsonl(
            os.path.join(out, "stats.jsonl"),
            cur_nimg,
            lambda d: round(d["Progress/kimg"]["mean"] * 1000),
        )
        trim_jsonl(os.path.join(out, "snapshots.jsonl"), cur_nimg, lambda d: d["nimg"])
        print(f"Resumed from {resume_path} at kimg {cur_nimg / 1000:g} (batch_idx {batch_idx}).")
    elif args.grids:
        reals = np.stack([training_set[i][0] for i in grid_indices])
        save_grid(reals, os.path.join(out, "reals.png"), drange=[0, 255], grid_size=grid_size)
        write_fakes("fakes_init.png")

    def snapshot():
        """Official pickle, then the exact-resume state, both written atomically."""
        data = dict(training_set_kwargs=dict(training_set_kwargs))
        for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)]:
            data[name] = (
                None if module is None else copy.deepcopy(module).eval().requires_grad_(False).cpu()
            )
        pkl = f"network-snapshot-{nimg_name(cur_nimg)}.pkl"
        atomic_write(os.path.join(out, pkl), lambda f: pickle.dump(data, f))
        resume = dict(
            spec=spec,
            cur_nimg=cur_nimg,
            cur_tick=cur_tick,
            batch_idx=batch_idx,
            tick_start_nimg=tick_start_nimg,
            phase_ms=phase_ms,
            threads=torch.get_num_threads(),
            seconds=prior_seconds + time.time() - start_time,
            train_seconds=prior_train_seconds + train_seconds,
            G=G.state_dict(),
            D=D.state_dict(),
            G_ema=G_ema.state_dict(),
            augment_pipe=None if augment_pipe is None else augment_pipe.state_dict(),
            G_opt=opts["G"].state_dict(),
            D_opt=opts["D"].state_dict(),
            pl_mean=loss.pl_mean.clone(),
            torch_rng=torch.get_rng_state(),
            numpy_rng=np.random.get_state(),
            stats_counters=copy.deepcopy(training_stats._counters),
            stats_cumulative=copy.deepcopy(training_stats._cumulative),
            stats_collector=copy.deepcopy((stats_collector._cumulative, stats_collector._moments)),
            ada_stats=None
            if ada_stats is None
            else copy.deepcopy((ada_stats._cumulative, ada_stats._moments)),
        )
        atomic_write(resume_path, lambda f: torch.save(resume, f))
        with open(os.path.join(out, "snapshots.jsonl"), "a") as f:
            f.write(json.dumps(dict(kimg=cur_nimg / 1000, nimg=cur_nimg, pkl=pkl)) + "\n")
        write_fakes(f"fakes{nimg_name(cur_nimg)}.png")
        print(f"Wrote {pkl} and resume.pt at kimg {cur_nimg / 1000:g}.")

    total_nimg, tick_nimg, snapshot_nimg = (
        spec["_total_nimg"],
        spec["_tick_nimg"],
        spec["_snapshot_nimg"],
    )
    stop_nimg = (
        None
        if args.stop_after_kimg is None
        else kimg_to_nimg(args.stop_after_kimg, "--stop-after-kimg")
    )
    if state is None:  # a fresh run replaces the logs of an earlier one in OUTDIR
        for name in ("stats.jsonl", "snapshots.jsonl"):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    stats_jsonl = open(os.path.join(out, "stats.jsonl"), "a")
    train_seconds = 0.0  # time spent in iterations (data, phases, EMA, ADA) in this process
    if state is None and 0 in snapshot_nimg:
        snapshot()
    print(f"Training for {spec['total_kimg']} kimg...\n")
    tick_start_time = time.time()
    maintenance_time = tick_start_time - start_time
    ema_kimg, ema_rampup = spec["ema_kimg"], spec["ema_rampup"]
    done = cur_nimg >= total_nimg

    while not done:
        if stop_nimg is not None and cur_nimg >= stop_nimg:  # as if killed here
            print(f"Stopping at kimg {cur_nimg / 1000:g} (--stop-after-kimg).")
            stats_jsonl.close()
            return
        iter_start = time.perf_counter()
        # Fetch training data.
        phase_real_img, phase_real_c = next(training_set_iterator)
        phase_real_img = (phase_real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
        phase_real_c = phase_real_c.to(device).split(batch_gpu)
        all_gen_z = torch.randn([len(phases) * batch_size, G.z_dim], device=device)
        all_gen_z = [phase_gen_z.split(batch_gpu) for phase_gen_z in all_gen_z.split(batch_size)]
        all_gen_c = [
            training_set.get_label(np.random.randint(len(training_set)))
            for _ in range(len(phases) * batch_size)
        ]
        all_gen_c = torch.from_numpy(np.stack(all_gen_c)).to(
            device
        )  # official pins memory first: same values
        all_gen_c = [phase_gen_c.split(batch_gpu) for phase_gen_c in all_gen_c.split(batch_size)]

        # Execute training phases.
        for phase, phase_gen_z, phase_gen_c in zip(phases, all_gen_z, all_gen_c, strict=True):
            if batch_idx % phase.interval != 0:
                continue
            phase_start = time.perf_counter()
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            for round_idx, (real_img, real_c, gen_z, gen_c) in enumerate(
                zip(phase_real_img, phase_real_c, phase_gen_z, phase_gen_c, strict=True)
            ):
                sync = round_idx == batch_size // (batch_gpu * num_gpus) - 1
                loss.accumulate_gradients(
                    phase=phase.name,
                    real_img=real_img,
                    real_c=real_c,
                    gen_z=gen_z,
                    gen_c=gen_c,
                    sync=sync,
                    gain=phase.interval,
                )
            phase.module.requires_grad_(False)
            for param in phase.module.parameters():
                if param.grad is not None:
                    misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            phase.opt.step()
            phase_ms[phase.name] = (time.perf_counter() - phase_start) * 1e3

        # Update G_ema.
        ema_nimg = ema_kimg * 1000
        if ema_rampup is not None:
            ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
        ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
            b_ema.copy_(b)

        # Update state.
        cur_nimg += batch_size
        batch_idx += 1

        # Execute ADA heuristic.
        if ada_stats is not None and batch_idx % spec["ada_interval"] == 0:
            ada_stats.update()
            adjust = (
                np.sign(ada_stats["Loss/signs/real"] - ada_target)
                * (batch_size * spec["ada_interval"])
                / (spec["ada_kimg"] * 1000)
            )
            augment_pipe.p.copy_((augment_pipe.p + adjust).max(misc.constant(0, device=device)))
        train_seconds += time.perf_counter() - iter_start

        # Tick: status line and stats.jsonl, as the official loop (first tick after one iteration).
        done = cur_nimg >= total_nimg
        if done or cur_tick == 0 or cur_nimg >= tick_start_nimg + tick_nimg:
            tick_end_time = time.time()
            report0 = training_stats.report0
            total_sec = prior_seconds + tick_end_time - start_time
            tick_sec = tick_end_time - tick_start_time
            kimg_sec = tick_sec / (cur_nimg - tick_start_nimg) * 1e3
            p = float(augment_pipe.p.cpu()) if augment_pipe is not None else 0
            fields = [
                f"tick {report0('Progress/tick', cur_tick):<5d}",
                f"kimg {report0('Progress/kimg', cur_nimg / 1e3):<8.3f}",
                f"time {dnnlib.util.format_time(report0('Timing/total_sec', total_sec)):<12s}",
                f"sec/tick {report0('Timing/sec_per_tick', tick_sec):<7.1f}",
                f"sec/kimg {report0('Timing/sec_per_kimg', kimg_sec):<7.2f}",
                f"maintenance {report0('Timing/maintenance_sec', maintenance_time):<6.1f}",
                f"cpumem {report0('Resources/cpu_mem_gb', cpu_mem_gb()):<6.2f}",
                f"augment {report0('Progress/augment', p):.3f}",
            ]
            report0("Timing/total_hours", total_sec / (60 * 60))
            report0("Timing/total_days", total_sec / (24 * 60 * 60))
            for name, value in phase_ms.items():
                report0("Timing/" + name, value)
            stats_collector.update()
            stats_jsonl.write(
                json.dumps(dict(stats_collector.as_dict(), timestamp=time.time())) + "\n"
            )
            stats_jsonl.flush()
            print(
                " ".join(fields)
                + f" G {stats_collector['Loss/G/loss']:.4f} D {stats_collector['Loss/D/loss']:.4f}"
            )
            cur_tick += 1
            tick_start_nimg = cur_nimg
            tick_start_time = time.time()
            maintenance_time = tick_start_time - tick_end_time

        if cur_nimg in snapshot_nimg:
            snapshot()

    stats_jsonl.close()
    total_train = prior_train_seconds + train_seconds
    result = dict(
        kimg=cur_nimg / 1000,
        nimg=cur_nimg,
        seconds=prior_seconds + time.time() - start_time,
        train_seconds=total_train,
        img_per_sec=cur_nimg / max(total_train, 1e-9),
    )
    atomic_write(
        os.path.join(out, "done.json"), lambda f: f.write(json.dumps(result) + "\n"), mode="w"
    )
    print(
        f"\nDone: {result['kimg']:g} kimg, "
        f"{result['img_per_sec']:.1f} img/s in training iterations."
    )


def main(argv=None):
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    torch.set_num_threads(max(1, args.threads))
    import_official(args.official)
    run(args, load_spec(args.spec))


if __name__ == "__main__":
    main()
