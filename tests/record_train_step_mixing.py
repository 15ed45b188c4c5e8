"""Records `tests/data/train_step/stylegan2_ada_train_step_mix_16.npz`: official
StyleGAN2-ADA training iterations WITH style mixing (`style_mixing_prob = 0.9`).

Not a test (pytest collects `test_*.py` only); it runs NVIDIA's code, so it needs torch
and a checkout of NVlabs/stylegan2-ada-pytorch (the reference was recorded at d72cc7d)::

    /path/to/torch-venv/bin/python tests/record_train_step_mixing.py \\
        --official /path/to/stylegan2-ada-pytorch [--out tests/data/train_step/...npz]
    # the recording procedure against the bundled mixing-free file (records nothing):
    ... tests/record_train_step_mixing.py --official ... \\
        --check tests/data/train_step/stylegan2_ada_train_step_16.npz

Procedure: that of `stylegan2_ada_train_step_16.npz` (tests/data/train_step/README.md):
the official networks (16², RGB, unconditional, mapping 2 layers, z = w = 32, channel
base 512 / max 32, skip G, resnet D, minibatch-stddev group 4, conv_clamp 256, float32,
the synthesis run with `noise_mode='const'`), the official `training/loss.py`
`StyleGAN2Loss` (unmodified; here with `style_mixing_prob = 0.9`) and the phase, optimizer
and G_ema logic of `training/training_loop.py`, one process, one round per phase, batch 4,
on the CPU in float32. Each phase's random draws are recorded as the official code makes
them: torch's global generator is wrapped (`Tensor.random_`, `torch.rand`,
`torch.randn_like`, every value copied out), the calls are checked to be exactly those of
`run_G` (cutoff, probability, mixing latents) and, in Greg, the path-length noise, and
redrawing them from the phase's starting RNG state must end in the state the phase left
(no draw went unrecorded).

`--check FILE` runs the same driver on a mixing-free file's initial state and draws
(`style_mixing_prob = 0`) and compares with its gradients and states: it verifies that
this driver is the procedure that file was recorded with.

Keys: those of the mixing-free file (`meta`, `init/…`, `it{i}/real`, `real_c`, `gen_z`,
`gen_c`, `pl_randn`, `phases`, `grads/…`, `after/…`, `ema_beta`), plus per iteration,
rows Gmain, Greg, Dmain, Dreg as in `gen_z`:

- `it{i}/mix_z` (4, batch, z_dim) float32: the `torch.randn_like(z)` latents of the
  style-mixing mapping call (Greg: the first `batch // pl_batch_shrink` rows, the rest 0;
  a row whose phase made no generator call: 0);
- `it{i}/mix_cutoff_draw` (4,) int32: the `random_(1, num_ws)` draw (0: no call);
- `it{i}/mix_prob_draw` (4,) float32: the `torch.rand([])` draw (NaN: no call);
- `it{i}/mix_cutoff` (4,) int32: the cutoff used, the draw where `prob_draw <
  style_mixing_prob`, else num_ws (no mixing; also for rows without a call):
  `ws[:, cutoff:]` come from `mix_z`.

The seed of the iteration draws is the first from `--draw-seed` on for which at least
one generator call mixes and at least one does not (asserted).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")
RUNS_G = ("Gmain", "Greg", "Dmain")  # the phases that call run_G, in order

META = dict(
    family="stylegan2_ada_train_step", batch=4, res=16, img_channels=3, c_dim=0, z_dim=32,
    w_dim=32, mapping_layers=2, cbase=512, cmax=32, g_arch="skip", d_arch="resnet",
    mbstd_group=4, r1_gamma=0.5, pl_weight=2.0, pl_decay=0.01, G_reg_interval=4,
    D_reg_interval=16, lr=0.0025, betas=[0.0, 0.99], ema_kimg=0.01, ema_rampup=0.05,
    start_nimg=1000, iterations=1, optimizer="Adam", eps=1e-8, style_mixing_prob=0.9,
    pl_batch_shrink=2, noise_mode_in_training="const", conv_clamp=256.0,
    phases_order=list(PHASES))


def import_official(path):
    sys.path.insert(0, str(path))
    global torch, networks, loss_lib
    import torch  # noqa: F401
    from training import loss as loss_lib
    from training import networks


def build(meta):
    G = networks.Generator(
        z_dim=meta["z_dim"], c_dim=meta["c_dim"], w_dim=meta["w_dim"],
        img_resolution=meta["res"], img_channels=meta["img_channels"],
        mapping_kwargs=dict(num_layers=meta["mapping_layers"]),
        synthesis_kwargs=dict(channel_base=meta["cbase"], channel_max=meta["cmax"],
                              num_fp16_res=0, conv_clamp=meta.get("conv_clamp", 256),
                              architecture=meta["g_arch"]))
    D = networks.Discriminator(
        c_dim=meta["c_dim"], img_resolution=meta["res"], img_channels=meta["img_channels"],
        architecture=meta["d_arch"], channel_base=meta["cbase"], channel_max=meta["cmax"],
        num_fp16_res=0, conv_clamp=meta.get("conv_clamp", 256),
        epilogue_kwargs=dict(mbstd_group_size=meta["mbstd_group"]))
    return G.train().requires_grad_(False), D.train().requires_grad_(False)


def mid_training_state(G, D, gen):
    """The official initialisation moved off its special values (zero biases, zero noise
    strengths, w_avg 0), as a state in mid-training has them."""
    with torch.no_grad():
        for module in (G, D):
            for name, p in module.named_parameters():
                if name.endswith("bias"):
                    p.add_(0.1 * torch.randn(p.shape, generator=gen))
                elif name.endswith("noise_strength"):
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        G.mapping.w_avg.copy_(torch.randn(G.mapping.w_avg.shape, generator=gen))


WS_LOG = []  # ("mapping" | "synthesis", ws) of every call, in order


def const_noise(G):
    """G.synthesis with noise_mode='const' (the loss calls `G_synthesis(ws)`); it and G's
    mapping log the ws they see, so that the mixing can be checked on the official ws."""
    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.synthesis = G.synthesis

        def forward(self, ws):
            WS_LOG.append(("synthesis", ws.detach().clone()))
            return self.synthesis(ws, noise_mode="const")

    G.mapping.register_forward_hook(
        lambda module, inputs, ws: WS_LOG.append(("mapping", ws.detach().clone())))
    return Wrapper()


class DrawLog:
    """Wraps the torch calls the official loss draws with; logs (kind, value) in order.

    `replay`: values that `torch.randn_like` returns instead of drawing (--check)."""

    def __init__(self, replay=None):
        self.calls, self.replay = [], list(replay or [])

    def __enter__(self):
        self.saved = torch.Tensor.random_, torch.rand, torch.randn_like, torch.randn
        random_, rand, randn_like, _ = self.saved
        log = self.calls

        def rec_random_(t, *args, **kwargs):
            out = random_(t, *args, **kwargs)
            log.append(("random_", args, out.detach().clone()))
            return out

        def rec_rand(*args, **kwargs):
            out = rand(*args, **kwargs)
            log.append(("rand", args, out.detach().clone()))
            return out

        def rec_randn_like(x, *args, **kwargs):
            out = self.replay.pop(0).to(x.dtype) if self.replay else randn_like(x, *args,
                                                                               **kwargs)
            log.append(("randn_like", tuple(x.shape), out.detach().clone()))
            return out

        def no_randn(*args, **kwargs):
            raise AssertionError("the loss drew with torch.randn: not recorded")

        torch.Tensor.random_, torch.rand, torch.randn_like, torch.randn = (
            rec_random_, rec_rand, rec_randn_like, no_randn)
        return self

    def __exit__(self, *exc):
        torch.Tensor.random_, torch.rand, torch.randn_like, torch.randn = self.saved


def redraw(calls):
    """Draw `calls` again from the current RNG state (to check that none was missed)."""
    for kind, args, value in calls:
        if kind == "random_":
            again = torch.empty([], dtype=torch.int64).random_(*args)
        elif kind == "rand":
            again = torch.rand(*args)
        else:
            again = torch.randn(args)
        assert torch.equal(again, value), f"{kind}: redrawn {again} != {value}"


def parse_mixing(phase, calls, z, num_ws):
    """(cutoff draw, probability draw, mix latents, pl draw or None) of one phase's calls."""
    kinds = [k for k, _, _ in calls]
    if phase not in RUNS_G:
        assert kinds == [], f"{phase}: {kinds}"
        return None
    expect = ["random_", "rand", "randn_like"] + (["randn_like"] if phase == "Greg" else [])
    assert kinds == expect, f"{phase}: draws {kinds}"
    (_, args, cut), (_, _, prob), (_, shape, mix_z) = calls[:3]
    assert args == (1, num_ws), args
    assert shape == tuple(z.shape), (shape, z.shape)
    pl = calls[3][2] if phase == "Greg" else None
    return int(cut), float(prob), mix_z.numpy(), pl


def check_ws(cutoff):
    """The official run_G mixed as recorded: synthesis saw ws[:, :cutoff] of the first
    mapping call and ws[:, cutoff:] of the second (the mixing one)."""
    kinds = [k for k, _ in WS_LOG]
    assert kinds == ["mapping", "mapping", "synthesis"], kinds
    (_, first), (_, second), (_, ws) = WS_LOG
    assert torch.equal(ws[:, :cutoff], first[:, :cutoff])
    assert torch.equal(ws[:, cutoff:], second[:, cutoff:])
    if 0 < cutoff < ws.shape[1]:
        assert not torch.equal(ws[:, cutoff:], first[:, cutoff:])


def state_dict(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def run(meta, G, D, iterations, source):
    """The official loop on (G, D) -> {key: array}. `source(it)` gives the iteration's
    (real, real_c, gen_z, gen_c, pl replay list); draws are recorded, as are results."""
    batch, num_ws = meta["batch"], G.mapping.num_ws
    G_ema = copy.deepcopy(G).eval()
    loss = loss_lib.StyleGAN2Loss(
        device=torch.device("cpu"), G_mapping=G.mapping, G_synthesis=const_noise(G),
        D=D, augment_pipe=None, style_mixing_prob=meta["style_mixing_prob"],
        r1_gamma=meta["r1_gamma"], pl_batch_shrink=meta["pl_batch_shrink"],
        pl_decay=meta["pl_decay"], pl_weight=meta["pl_weight"])
    phases = []
    for name, module, interval in (("G", G, meta["G_reg_interval"]),
                                   ("D", D, meta["D_reg_interval"])):
        ratio = interval / (interval + 1)
        opt = torch.optim.Adam(module.parameters(), lr=meta["lr"] * ratio,
                               betas=[b ** ratio for b in meta["betas"]], eps=meta["eps"])
        phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
    assert [p[0] for p in phases] == list(PHASES)
    out, cur_nimg = {}, meta["start_nimg"]
    for it in range(iterations):
        real, real_c, gen_z, gen_c, pl_replay = source(it)
        out[f"it{it}/real"], out[f"it{it}/real_c"] = real.numpy(), real_c.numpy()
        out[f"it{it}/gen_z"], out[f"it{it}/gen_c"] = gen_z.numpy(), gen_c.numpy()
        mix_z = np.zeros(gen_z.shape, np.float32)
        cut_draw, prob_draw = np.zeros(4, np.int32), np.full(4, np.nan, np.float32)
        cutoff = np.full(4, num_ws, np.int32)
        ran = []
        for row, (name, module, opt, interval) in enumerate(phases):
            if it % interval != 0:
                continue
            ran.append(name)
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            before = torch.get_rng_state()
            WS_LOG.clear()
            with DrawLog(pl_replay if name == "Greg" else None) as log:
                loss.accumulate_gradients(phase=name, real_img=real, real_c=real_c,
                                          gen_z=gen_z[row], gen_c=gen_c[row], sync=True,
                                          gain=interval)
            module.requires_grad_(False)
            if pl_replay is None:  # every draw recorded: the same draws again, same state
                after = torch.get_rng_state()
                torch.set_rng_state(before)
                redraw(log.calls)
                assert torch.equal(torch.get_rng_state(), after), f"{name}: unrecorded draw"
            z_used = gen_z[row][: batch // meta["pl_batch_shrink"]] if name == "Greg" else (
                gen_z[row])
            mixing = (parse_mixing(name, log.calls, z_used, num_ws)
                      if meta["style_mixing_prob"] > 0 else None)
            if mixing is not None:
                cut_draw[row], prob_draw[row] = mixing[0], mixing[1]
                mix_z[row, : len(z_used)] = mixing[2]
                if np.float32(mixing[1]) < np.float32(meta["style_mixing_prob"]):
                    cutoff[row] = mixing[0]
                check_ws(cutoff[row])
            if name == "Greg":  # the path-length noise: the phase's last draw
                assert log.calls[-1][0] == "randn_like"
                out[f"it{it}/pl_randn"] = log.calls[-1][2].numpy()
            for pname, p in module.named_parameters():
                assert p.grad is not None, f"{name}: {pname} has no gradient"
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
                out[f"it{it}/grads/{name}/{name[0]}/{pname}"] = p.grad.numpy().copy()
            opt.step()
        ema_nimg = meta["ema_kimg"] * 1000
        if meta["ema_rampup"] is not None:
            ema_nimg = min(ema_nimg, cur_nimg * meta["ema_rampup"])
        ema_beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                p_ema.copy_(p.lerp(p_ema, ema_beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)
        cur_nimg += batch
        out[f"it{it}/phases"] = np.array(json.dumps(ran))
        out[f"it{it}/ema_beta"] = np.array(ema_beta, np.float64)
        out[f"it{it}/after/pl_mean"] = loss.pl_mean.numpy().copy()
        for net, module in (("G", G), ("D", D), ("G_ema", G_ema)):
            for k, v in state_dict(module).items():
                out[f"it{it}/after/{net}/{k}"] = v
        if meta["style_mixing_prob"] > 0:
            out[f"it{it}/mix_z"], out[f"it{it}/mix_cutoff"] = mix_z, cutoff
            out[f"it{it}/mix_cutoff_draw"], out[f"it{it}/mix_prob_draw"] = cut_draw, prob_draw
    return out


def record(meta, draw_seed, init_seed):
    torch.set_num_threads(1)
    torch.manual_seed(init_seed)
    G0, D0 = build(meta)
    mid_training_state(G0, D0, torch.Generator().manual_seed(init_seed + 1))
    init = {**{f"init/G/{k}": v for k, v in state_dict(G0).items()},
            **{f"init/D/{k}": v for k, v in state_dict(D0).items()}}
    num_ws = G0.mapping.num_ws
    batch, res, ch = meta["batch"], meta["res"], meta["img_channels"]
    for seed in range(draw_seed, draw_seed + 1000):
        rng = np.random.default_rng(seed)

        def source(it, seed=seed, rng=rng):
            torch.manual_seed(seed * 1000 + it)  # the loop's torch.randn, then the loss's
            u8 = rng.integers(0, 256, (batch, ch, res, res)).astype(np.float32)
            real = torch.from_numpy(u8) / 127.5 - 1
            gen_z = torch.randn([len(PHASES) * batch, meta["z_dim"]]).reshape(
                len(PHASES), batch, meta["z_dim"])
            return (real, torch.zeros(batch, 0), gen_z, torch.zeros(len(PHASES), batch, 0),
                    None)

        G, D = copy.deepcopy(G0), copy.deepcopy(D0)
        out = run(meta, G, D, meta["iterations"], source)
        used = [(it, p) for it in range(meta["iterations"])
                for p in json.loads(str(out[f"it{it}/phases"])) if p in RUNS_G]
        mixes = [int(out[f"it{it}/mix_cutoff"][PHASES.index(p)]) < num_ws for it, p in used]
        if any(mixes) and not all(mixes):
            break
        print(f"draw seed {seed}: mixing {mixes}, next")
    else:
        raise RuntimeError("no seed gave both a mixing and a non-mixing generator call")
    for it, p in used:
        row = PHASES.index(p)
        print(f"it{it} {p}: cutoff draw {out[f'it{it}/mix_cutoff_draw'][row]}, "
              f"p draw {out[f'it{it}/mix_prob_draw'][row]:.4f} -> cutoff "
              f"{out[f'it{it}/mix_cutoff'][row]} of num_ws {num_ws}")
    meta = dict(meta, seed=init_seed, draw_seed=seed, num_ws=num_ws,
                mixing=[[it, p, bool(m)] for (it, p), m in zip(used, mixes, strict=True)],
                source="NVlabs/stylegan2-ada-pytorch d72cc7d training/loss.py StyleGAN2Loss "
                       "(style_mixing_prob 0.9) + the phase, optimizer and G_ema logic of "
                       "training/training_loop.py; tests/record_train_step_mixing.py",
                reference_precision="float32 (the official float32 run itself)")
    return meta, {**init, **out}


def check(path):
    """The driver on a mixing-free file's state and draws against its recorded results."""
    torch.set_num_threads(1)
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        arrays = {k: data[k] for k in data.files if k != "meta"}
    assert meta["style_mixing_prob"] == 0
    G, D = build(meta)
    G.load_state_dict({k[7:]: torch.from_numpy(v) for k, v in arrays.items()
                       if k.startswith("init/G/")})
    D.load_state_dict({k[7:]: torch.from_numpy(v) for k, v in arrays.items()
                       if k.startswith("init/D/")})

    def source(it):
        a = {k: torch.from_numpy(arrays[f"it{it}/{k}"]) for k in
             ("real", "real_c", "gen_z", "gen_c", "pl_randn")}
        return a["real"], a["real_c"], a["gen_z"], a["gen_c"], [a["pl_randn"]]

    out = run(meta, G, D, meta["iterations"], source)
    mine, theirs = set(out), {k for k in arrays if not k.startswith("init/")}
    theirs -= {f"it{it}/pl_randn" for it in range(meta["iterations"])
               if "Greg" not in json.loads(str(arrays[f"it{it}/phases"]))}  # drawn, unused
    assert mine == theirs, f"keys: {sorted(mine - theirs)[:5]} / {sorted(theirs - mine)[:5]}"
    rels = {}
    for k, v in out.items():
        if v.dtype.kind == "f" and v.size:
            ref = arrays[k].astype(np.float64)
            rels[k] = float(np.max(np.abs(v - ref)) / max(np.max(np.abs(ref)), 1e-30))
    worst = sorted(rels, key=rels.get, reverse=True)
    for k in worst[:5]:
        print(f"  {k}: {rels[k]:.2e} of max|ref|")
    # Float32 rounding of another torch build / thread count, far below the 1e-3 rule.
    assert rels[worst[0]] <= 1e-4, "not the procedure the file was recorded with"
    print(f"{path}: all {len(rels)} tensors reproduced within {rels[worst[0]]:.2e} of max|ref|")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", default="/work/official/stylegan2-ada-pytorch",
                        help="checkout of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--out", default=str(Path(__file__).parent / "data" / "train_step"
                                             / "stylegan2_ada_train_step_mix_16.npz"))
    parser.add_argument("--init-seed", type=int, default=29)
    parser.add_argument("--draw-seed", type=int, default=0)
    parser.add_argument("--check", help="verify the driver on this mixing-free file instead")
    args = parser.parse_args()
    import_official(args.official)
    if args.check:
        check(args.check)
        return
    meta, arrays = record(dict(META), args.draw_seed, args.init_seed)
    np.savez_compressed(args.out, meta=np.array(json.dumps(meta)), **arrays)
    print(f"wrote {args.out}: {Path(args.out).stat().st_size} bytes, {len(arrays)} arrays")


if __name__ == "__main__":
    main()
