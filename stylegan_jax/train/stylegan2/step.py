"""One StyleGAN2 training iteration, written per device (collectives over axis 'data').

The iteration runs the official phases in order: Gmain, Greg (every g_reg_interval
iterations), Dmain, Dreg (every d_reg_interval), then the G EMA update. Which lazy
phases run is static, so a run compiles at most four programs. Gradients are averaged
over devices (`pmean`), passed through `nan_to_num` as officially, then fed to one Adam
per network whose lr and betas carry the lazy-regularisation rescaling.

Gradient accumulation (`batch_per_device`, the official `batch_gpu`): each phase runs
the per-device share in R = share / batch_per_device rounds (one compiled `lax.scan`
body, `phases.run_phase`) and sums the rounds' gradients before the one pmean + Adam. As
in the official loop, each round's loss is the mean over its micro-batch times the phase
gain, so the sum is R times the gradient of the share's mean (Adam ignores that factor
up to eps); and everything per call happens per round: a fresh style-mixing cutoff and
noise, minibatch-stddev groups within the round, path length on the first micro //
pl_batch_shrink samples of each round, and one w_avg / pl_mean update per round, in
order. R = 1 is the plain step, unchanged.

ADA (Karras et al. 2020; `cfg.augment`): every D evaluation sees its images through the
augmentation pipe at strength p = `state.augment_p`, with its own draws: the fakes in
Gmain, the fakes and the reals in Dmain, the reals in Dreg (gradients flow through it).
With `cfg.ada_target` set, the sign of every real logit (Dmain and Dreg) is summed and
counted in the state over all devices; every `ada_interval` iterations p moves by
sign(mean - target) * batch * ada_interval / (ada_kimg * 1000), clamped at 0, inside the
compiled iteration (a traced condition), so p is identical on every device and process
and is checkpointed with the rest of the state.

StyleGAN3 (NVIDIA's stylegan3 repository, `train.py --cfg=stylegan3-t|r`) runs this loss
and loop with four differences, all StepConfig fields: the generator's running statistics
(w_avg, every layer's magnitude_ema) move only in Dmain's generator pass
(`emas_every_pass=False`; StyleGAN2-ADA moves w_avg in every pass); G has no lazy
regularisation (`g_reg_interval=0`: no path length, Adam unscaled); Dreg's loss is R1
alone, so D's output bias gets no gradient there and the official Adam leaves it, its
moments and its step count as they are (`r1_skips_out_bias`; StyleGAN2-ADA adds
`0 * logits` so that it takes a zero-gradient step); and for -r every D
evaluation first blurs its images with a Gaussian whose sigma fades from
`blur_init_sigma` to 0 over `blur_fade_kimg` (`losses.blur_images`). Whether the blur acts is
static (`iteration(blur=...)`; the trainer runs it as a stage of its own), so once it has
faded the programs carry no blur at all.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from stylegan_jax import augment as augment_lib
from stylegan_jax.models import registry
from stylegan_jax.models.registry import Networks
from stylegan_jax.train.backends import AXIS
from stylegan_jax.train.stylegan2 import freeze, losses, phases
from stylegan_jax.train.stylegan2.losses import PhaseDraws


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """The static hyperparameters of the step (hashable: part of the compiled program)."""

    batch_size: int  # global batch, all devices
    batch_per_device: int = 0  # micro-batch per device and round (official batch_gpu); 0: all
    g_lr: float = 0.002
    d_lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float = 10.0
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    g_reg_interval: int = 4
    d_reg_interval: int = 16
    ema_kimg: float = 10.0
    ema_rampup: float | None = None
    noise_mode: str = "random"
    augment: augment_lib.AugmentConfig | None = None  # the ADA pipe before D; None: off
    augment_p: float = 0.0  # its initial strength
    ada_target: float | None = None  # None: p stays fixed; else the ADA heuristic's target
    ada_interval: int = 4  # iterations between adjustments of p
    ada_kimg: float = 500.0  # p can move from 0 to 1 in this many kimg
    freeze_d: int = 0  # the first N discriminator layers stay as they are (official freezed)
    emas_every_pass: bool = True  # False: G's running statistics move in Dmain only (SG3)
    r1_skips_out_bias: bool = False  # Dreg leaves D's output bias and its Adam state (SG3)
    blur_init_sigma: float = 0.0  # the D input blur's initial sigma (stylegan3-r: 10); 0: none
    blur_fade_kimg: float = 0.0  # it fades linearly to 0 over this many kimg

    def rounds(self, local_batch: int) -> int:
        """How many micro-batches a phase runs on a per-device batch of `local_batch`."""
        micro = self.batch_per_device or local_batch
        if micro < 0 or local_batch % micro:
            raise ValueError(f"train.batch_per_device={self.batch_per_device} must divide the "
                             f"per-device batch {local_batch}")
        return local_batch // micro

    def phases(self, step: int) -> tuple[bool, bool]:
        """(run Greg, run Dreg) at iteration `step` (g_reg_interval 0: never Greg)."""
        greg = self.pl_weight != 0 and self.g_reg_interval > 0 and step % self.g_reg_interval == 0
        dreg = self.r1_gamma != 0 and step % self.d_reg_interval == 0
        return greg, dreg

    @property
    def period(self) -> int:
        """Iterations after which the lazy phases repeat."""
        return math.lcm(max(self.g_reg_interval, 1), self.d_reg_interval)

    def blur_sigma(self, nimg):
        """The official D input blur sigma after `nimg` images (host int or traced)."""
        if not (self.blur_init_sigma > 0 and self.blur_fade_kimg > 0):
            return 0.0
        fade = 1 - nimg / (self.blur_fade_kimg * 1000)
        fade = jnp.maximum(fade, 0.0) if isinstance(fade, jax.Array) else max(fade, 0.0)
        return fade * self.blur_init_sigma

    @property
    def blur_end_nimg(self) -> int | None:
        """The first image count at which the D input blur no longer acts (its kernel
        2 floor(3 sigma) + 1 is down to one tap); None: no blur."""
        if not (self.blur_init_sigma > 0 and self.blur_fade_kimg > 0):
            return None
        return math.floor(self.blur_fade_kimg * 1000 * (1 - 1 / (3 * self.blur_init_sigma))) + 1


@flax.struct.dataclass
class TrainState:
    G: dict  # generator params
    G_buffers: dict  # w_avg, noise_const
    D: dict  # discriminator params
    G_ema: dict
    G_ema_buffers: dict
    G_opt: optax.OptState
    D_opt: optax.OptState
    pl_mean: jax.Array  # float32 scalar
    augment_p: jax.Array  # float32 scalar: the ADA strength p
    ada_sign_sum: jax.Array  # float32: sum of sign(real logits) since p was last adjusted
    ada_sign_count: jax.Array  # float32: how many real logits that sum holds
    step: jax.Array  # int32: iterations done (official batch_idx)
    nimg: jax.Array  # int32: images shown (official cur_nimg)
    rng: jax.Array  # base PRNG key; iteration i draws from fold_in(rng, i)


class AugmentDraws(NamedTuple):
    """The draws of the ADA pipe for each D evaluation of an iteration, in official call
    order. Each is a PRNG key or a tuple of recorded official draws (batch-first shapes;
    with R rounds, the R rounds' draws concatenated along the batch axis)."""

    g_main: jax.Array | tuple  # the fakes of Gmain
    d_fake: jax.Array | tuple  # the fakes of Dmain
    d_real: jax.Array | tuple  # the reals of Dmain
    d_reg: jax.Array | tuple  # the reals of Dreg


class IterationDraws(NamedTuple):
    """All random inputs of one iteration on one device."""

    g_main: PhaseDraws
    g_reg: PhaseDraws
    d_main: PhaseDraws
    pl_noise: jax.Array  # [R * (b / R // pl_batch_shrink), H, W, C], already / sqrt(H * W)
    augment: AugmentDraws | None = None  # needed when cfg.augment is set


def lazy_adam(lr: float, betas, eps: float, interval: int) -> optax.GradientTransformation:
    """Adam with the official lazy-regularisation rescaling of lr and betas (interval 0: no
    lazy regularisation, the official `None`: no rescaling).

    Its moments are one flat vector per network (`optax.flatten`): a handful of kernels per
    update instead of several per parameter tensor, the dispatch cost that dominates at the
    official 4-8 images per GPU (issue #12 measured 2436 -> 1948 kernels per quickstart step).
    """
    ratio = interval / (interval + 1) if interval else 1.0
    b1, b2 = (b**ratio for b in betas)
    return optax.flatten(optax.adam(lr * ratio, b1=b1, b2=b2, eps=eps))


def optimizers(cfg: StepConfig) -> tuple[optax.GradientTransformation, ...]:
    """(G's, D's) Adam. With `r1_skips_out_bias`, D's output bias has an Adam of its own (its
    own step count), which Dreg leaves alone (`_skip_out_bias`)."""
    d_opt = lazy_adam(cfg.d_lr, cfg.betas, cfg.eps, cfg.d_reg_interval)
    if cfg.r1_skips_out_bias:
        d_opt = optax.multi_transform({"main": d_opt, _OUT_BIAS: d_opt}, _out_bias_labels)
    return lazy_adam(cfg.g_lr, cfg.betas, cfg.eps, cfg.g_reg_interval), d_opt


_OUT_BIAS = "out_bias"  # D's output layer bias: b4/out/bias in the official names


def _out_bias_labels(d_params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: _OUT_BIAS if tuple(getattr(k, "key", k) for k in path)
        == ("b4", "out", "bias") else "main", d_params)


def _skip_out_bias(new_params, new_opt_state, params, opt_state):
    """Dreg's update with D's output bias and its Adam state as they were (official: a
    parameter without gradient is not stepped)."""
    b4 = dict(new_params["b4"])
    b4["out"] = {**b4["out"], "bias": params["b4"]["out"]["bias"]}
    inner = {**new_opt_state.inner_states, _OUT_BIAS: opt_state.inner_states[_OUT_BIAS]}
    return {**new_params, "b4": b4}, new_opt_state._replace(inner_states=inner)


def _height_width(module) -> tuple[int, int]:
    shape = registry.image_shape(module)
    return shape.height, shape.width


def init_state(nets: Networks, cfg: StepConfig, seed: int) -> TrainState:
    """Fresh networks (official initialisation), optimizer states and counters."""
    G, D = nets
    key = jax.random.PRNGKey(seed)
    k_g, k_d, k_run = jax.random.split(key, 3)
    z = jnp.zeros((1, G.z_dim))
    c = jnp.zeros((1, G.c_dim))
    g_vars = G.init({"params": k_g, "noise": k_g}, z, c)
    img = jnp.zeros((max(D.mbstd_group_size or 1, 1),
                     *_height_width(D), G.img_channels))
    d_vars = D.init(k_d, img, jnp.zeros((img.shape[0], D.c_dim)))
    g_opt, d_opt = optimizers(cfg)
    return TrainState(
        G=g_vars["params"], G_buffers=g_vars["buffers"], D=d_vars["params"],
        G_ema=g_vars["params"], G_ema_buffers=g_vars["buffers"],
        G_opt=g_opt.init(g_vars["params"]), D_opt=d_opt.init(d_vars["params"]),
        pl_mean=jnp.zeros((), jnp.float32),
        augment_p=jnp.asarray(cfg.augment_p if cfg.augment is not None else 0.0, jnp.float32),
        ada_sign_sum=jnp.zeros((), jnp.float32), ada_sign_count=jnp.zeros((), jnp.float32),
        step=jnp.zeros((), jnp.int32),
        nimg=jnp.zeros((), jnp.int32), rng=k_run,
    )


def per_tensor_moments_layout(template: TrainState) -> TrainState:
    """The state layout of checkpoints written before the Adam moments were flat vectors
    (one mu and nu per parameter tensor); `flat_moments` turns such a state into today's."""
    def per_tensor(opt_state, params):
        tree = jax.tree_util.tree_map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
        return (opt_state[0]._replace(mu=tree, nu=tree), *opt_state[1:])

    return template.replace(G_opt=per_tensor(template.G_opt, template.G),
                            D_opt=per_tensor(template.D_opt, template.D))


def flat_moments(state: TrainState) -> TrainState:
    """A state restored in `per_tensor_moments_layout` -> this layout (same numbers: the
    moments in `ravel_pytree` order, which `optax.flatten` uses)."""
    def flat(opt_state):
        adam = opt_state[0]
        return (adam._replace(mu=ravel_pytree(adam.mu)[0], nu=ravel_pytree(adam.nu)[0]),
                *opt_state[1:])

    return state.replace(G_opt=flat(state.G_opt), D_opt=flat(state.D_opt))


def ema_beta(cfg: StepConfig, nimg) -> jax.Array:
    """Official G_ema decay from the *global* batch: 0.5 ** (batch / ema_nimg), with rampup."""
    ema_nimg = jnp.float32(cfg.ema_kimg * 1000)
    if cfg.ema_rampup is not None:
        ema_nimg = jnp.minimum(ema_nimg, nimg.astype(jnp.float32) * cfg.ema_rampup)
    return 0.5 ** (cfg.batch_size / jnp.maximum(ema_nimg, 1e-8))


def draw_iteration(key, nets: Networks, cfg: StepConfig, local_batch: int,
                   label_table: jax.Array) -> IterationDraws:
    """The draws of one iteration on this device (key already specific to the device).

    A phase's style-mixing cutoff is drawn per round ([R]); round r of R > 1 takes the
    synthesis noise from fold_in(noise_key, r). The ADA pipe's keys come from
    fold_in(key, _AUGMENT_SALT), leaving the other draws as they are without augmentation.
    """
    G = nets.G
    num_ws = G.num_ws
    keys = jax.random.split(key, 4)
    rounds = cfg.rounds(local_batch)

    def phase(k, b):
        kz, kc, km, kcut, kp, kn = jax.random.split(k, 6)
        idx = jax.random.randint(kc, (b,), 0, label_table.shape[0])
        cutoff = jax.random.randint(kcut, (rounds,), 1, num_ws)
        mix = jax.random.uniform(kp, (rounds,)) < cfg.style_mixing_prob
        return PhaseDraws(
            z=jax.random.normal(kz, (b, G.z_dim)),
            c=label_table[idx],
            mix_z=(jax.random.normal(km, (b, G.z_dim)) if cfg.style_mixing_prob > 0 else None),
            mix_cutoff=jnp.where(mix, cutoff, num_ws).astype(jnp.int32),
            noise_key=kn,
        )

    (h, w), ch = _height_width(G), G.img_channels
    pl_b = rounds * (local_batch // rounds // cfg.pl_batch_shrink)
    pl_noise = jax.random.normal(keys[3], (pl_b, h, w, ch)) / jnp.sqrt(float(h * w))
    aug = None
    if cfg.augment is not None:
        aug = AugmentDraws(*jax.random.split(jax.random.fold_in(key, _AUGMENT_SALT), 4))
    return IterationDraws(phase(keys[0], local_batch), phase(keys[1], local_batch),
                          phase(keys[2], local_batch), pl_noise, aug)


_AUGMENT_SALT = 0x41444121  # any constant: separates the pipe's keys from the others


def _d_input(cfg: StepConfig, p, draws, blur_sigma):
    """NHWC images -> what D sees: the D input blur (unless `blur_sigma` is None), then the
    ADA pipe at strength p with these draws (when on); None: the images as they are."""
    if cfg.augment is None and blur_sigma is None:
        return None

    def run(images):
        if blur_sigma is not None:
            images = losses.blur_images(images, blur_sigma, math.floor(3 * cfg.blur_init_sigma))
        if cfg.augment is None:
            return images
        source = (augment_lib.RecordedDraws(draws) if isinstance(draws, tuple | list)
                  else draws)
        return augment_lib.augment(images, p, cfg.augment, source)

    return run


def _ada_update(cfg: StepConfig, state: TrainState, sign_sum, sign_count):
    """(p, sum, count) after this iteration's real-logit signs (summed over devices)."""
    p, total, count = state.augment_p, state.ada_sign_sum, state.ada_sign_count
    if cfg.augment is None or cfg.ada_target is None:
        return p, total, count
    total, count = total + sign_sum, count + sign_count
    adjust_now = (state.step + 1) % cfg.ada_interval == 0  # official batch_idx, from 1
    rate = cfg.batch_size * cfg.ada_interval / (cfg.ada_kimg * 1000)
    mean = total / jnp.maximum(count, 1.0)
    step = jnp.where(count > 0, jnp.sign(mean - cfg.ada_target) * jnp.float32(rate), 0.0)
    zero = jnp.zeros((), jnp.float32)
    return (jnp.where(adjust_now, jnp.maximum(p + step, 0.0), p),
            jnp.where(adjust_now, zero, total), jnp.where(adjust_now, zero, count))


# The phases' losses of one round in run_phase's form: (params, carry, x) -> (loss * gain,
# (carry, stats)), x the round's slice of the inputs `iteration` gives each phase.
# `d_input(draws)` is what D sees with an evaluation's pipe draws (_d_input).


def _g_main(G, buffers, x, *, D, nets: Networks, cfg: StepConfig, d_input):
    """Gmain; x = (PhaseDraws, the pipe's draws for the fakes)."""
    d, aug = x
    return losses.g_main_loss(G, nets, buffers, D, d, gain=1.0, noise_mode=cfg.noise_mode,
                              augment=d_input(aug), update_emas=cfg.emas_every_pass)


def _g_reg(G, carry, x, *, nets: Networks, cfg: StepConfig):
    """Greg; carry = (buffers, pl_mean), x = (PhaseDraws, path-length noise)."""
    (buffers, pl_mean), (d, pl_noise) = carry, x
    loss, (buffers, pl_mean, stats) = losses.g_reg_loss(
        G, nets, buffers, d, pl_noise, pl_mean, gain=float(cfg.g_reg_interval),
        noise_mode=cfg.noise_mode, pl_weight=cfg.pl_weight, pl_decay=cfg.pl_decay,
        axis_name=AXIS, update_emas=cfg.emas_every_pass)
    return loss, ((buffers, pl_mean), stats)


def _d_main(D, buffers, x, *, G, nets: Networks, cfg: StepConfig, d_input):
    """Dmain; x = (PhaseDraws, reals, labels, the pipe's draws for fakes, for reals). G's
    running statistics always move here (StyleGAN3's only pass that moves them)."""
    d, real, real_c, aug_fake, aug_real = x
    gen_img, _, buffers, _ = losses.run_generator(nets, G, buffers, d, cfg.noise_mode)
    loss, stats = losses.d_main_loss(D, nets, jax.lax.stop_gradient(gen_img), d.c, real,
                                     real_c, gain=1.0, augment_fake=d_input(aug_fake),
                                     augment_real=d_input(aug_real))
    return loss, (buffers, stats)


def _d_reg(D, carry, x, *, nets: Networks, cfg: StepConfig, d_input):
    """Dreg; no carry, x = (reals, labels, the pipe's draws for the reals)."""
    real, real_c, aug = x
    loss, stats = losses.d_reg_loss(D, nets, real, real_c, gain=float(cfg.d_reg_interval),
                                    r1_gamma=cfg.r1_gamma, augment=d_input(aug))
    return loss, (carry, stats)


def iteration(state: TrainState, real_u8, real_c, draws: IterationDraws, *, nets: Networks,
              cfg: StepConfig, do_greg: bool, do_dreg: bool, blur: bool = False,
              return_grads: bool = False):
    """One official iteration on one device's share of the batch -> (state, stats[, grads]).

    Each phase sums its gradients over cfg.rounds(share) micro-batches (module docstring);
    `blur`: every D evaluation blurs its images first (sigma from state.nimg).
    """
    if cfg.augment is not None and draws.augment is None:
        raise ValueError("cfg.augment is set but the iteration's draws have no augment draws")
    local_batch = real_u8.shape[0]
    rounds = cfg.rounds(local_batch)
    # Every phase input with a leading round axis; pipe draws are placeholders when off.
    reals = (phases.split_rounds(real_u8.astype(jnp.float32) / 127.5 - 1.0, rounds),
             phases.split_rounds(real_c, rounds))
    aug = (AugmentDraws(*(phases.augment_rounds(x, rounds) for x in draws.augment))
           if cfg.augment is not None else AugmentDraws(*[jnp.zeros((rounds,))] * 4))
    sigma = cfg.blur_sigma(state.nimg) if blur else None
    shared = dict(nets=nets, cfg=cfg, d_input=functools.partial(
        _d_input, cfg, state.augment_p, blur_sigma=sigma))
    g_opt, d_opt = optimizers(cfg)
    frozen = freeze.frozen_d_layers(state.D, cfg.freeze_d)
    stats, grads = {}, {}  # per phase, in phase order

    G, G_opt, buffers, stats["Gmain"], grads["Gmain"] = phases.run_phase(
        functools.partial(_g_main, D=state.D, **shared), state.G, state.G_buffers,
        (phases.draws_rounds(draws.g_main, rounds), aug.g_main), g_opt, state.G_opt)
    pl_mean = state.pl_mean
    if do_greg:
        G, G_opt, (buffers, pl_mean), stats["Greg"], grads["Greg"] = phases.run_phase(
            functools.partial(_g_reg, nets=nets, cfg=cfg), G, (buffers, pl_mean),
            (phases.draws_rounds(draws.g_reg, rounds),
             phases.split_rounds(draws.pl_noise, rounds)), g_opt, G_opt)
    D, D_opt, buffers, stats["Dmain"], grads["Dmain"] = phases.run_phase(
        functools.partial(_d_main, G=G, **shared), state.D, buffers,
        (phases.draws_rounds(draws.d_main, rounds), *reals, aug.d_fake, aug.d_real), d_opt,
        state.D_opt, frozen)
    if do_dreg:
        D_reg, D_opt_reg, _, stats["Dreg"], grads["Dreg"] = phases.run_phase(
            functools.partial(_d_reg, **shared), D, (), (*reals, aug.d_reg), d_opt, D_opt,
            frozen)
        D, D_opt = (_skip_out_bias(D_reg, D_opt_reg, D, D_opt) if cfg.r1_skips_out_bias
                    else (D_reg, D_opt_reg))

    # ADA: the real logits' signs of Dmain and Dreg on this device. A mean of +-1 / 0 over
    # equal rounds times the count is an integer: round off the ulp.
    real_phases = [stats[name] for name in ("Dmain", "Dreg") if name in stats]
    signs = sum((jnp.round(st["signs/real"] * local_batch) for st in real_phases),
                jnp.zeros((), jnp.float32))
    beta = ema_beta(cfg, state.nimg)
    G_ema = jax.tree_util.tree_map(lambda e, p: p + beta * (e - p), state.G_ema, G)
    p, sign_sum, sign_count = _ada_update(cfg, state, jax.lax.psum(signs, AXIS),
                                          jnp.float32(len(real_phases) * cfg.batch_size))
    new_state = state.replace(
        G=G, G_buffers=buffers, D=D, G_ema=G_ema, G_ema_buffers=buffers, G_opt=G_opt,
        D_opt=D_opt, pl_mean=pl_mean, augment_p=p, ada_sign_sum=sign_sum,
        ada_sign_count=sign_count, step=state.step + 1, nimg=state.nimg + cfg.batch_size)
    stats = {k: v for phase_stats in stats.values() for k, v in phase_stats.items()}
    stats["ema_beta"] = beta
    if blur:
        stats["blur_sigma"] = sigma
    if cfg.pl_weight != 0 and cfg.g_reg_interval > 0:  # StyleGAN3 has no path length
        stats["pl_mean"] = pl_mean
    stats = jax.lax.pmean(stats, AXIS)
    if cfg.augment is not None:  # p after this iteration's adjustment, the same everywhere
        stats["augment"] = p
    return (new_state, stats, grads) if return_grads else (new_state, stats)


def iteration_from_key(state: TrainState, real_u8, real_c, label_table, *, nets: Networks,
                       cfg: StepConfig, do_greg: bool, do_dreg: bool, blur: bool = False):
    """`iteration` with draws made on the device from (rng, step, device index)."""
    key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step),
                             jax.lax.axis_index(AXIS))
    draws = draw_iteration(key, nets, cfg, real_u8.shape[0], label_table)
    return iteration(state, real_u8, real_c, draws, nets=nets, cfg=cfg, do_greg=do_greg,
                     do_dreg=do_dreg, blur=blur)


def build_networks(model_cfg, size, img_channels: int, c_dim: int,
                   family: str = "stylegan2", batch_size: int | None = None) -> Networks:
    """G and D of a config's `model` section (models.registry), inside the training program
    (their running statistics average over the device axis). `size`: an int resolution
    or a shapes.ImageShape."""
    return registry.stylegan2_networks(model_cfg, size, img_channels, c_dim, family,
                                       batch_size, axis_name=AXIS)
