"""One training phase (Gmain, Greg, Dmain or Dreg): the official accumulate_gradients, then
the optimizer step.

A phase is a loss `loss(params, carry, x) -> (loss * gain, (carry, stats))` of one round:
`params` the network it trains, `carry` the running statistics that move once per round
(G's w_avg and magnitude EMAs, the path-length mean; () when none), `x` that round's
inputs. `run_phase` runs it over the R micro-batch rounds of its inputs, sums the rounds'
gradients, averages them over devices and takes one Adam step: the work every phase shares,
so that `step.iteration` reads as the phase order. The `*_rounds` helpers give a phase's
per-device inputs that round axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from stylegan_jax.train.backends import AXIS
from stylegan_jax.train.stylegan2 import freeze
from stylegan_jax.train.stylegan2.losses import PhaseDraws

PhaseLoss = Callable  # (params, carry, x) -> (loss * gain, (carry, stats))


class PhaseResult(NamedTuple):
    """What a phase leaves: the stepped network, the carry after the last round, the
    rounds' mean stats and the gradient it stepped with (device-averaged, cleaned)."""

    params: dict
    opt_state: optax.OptState
    carry: object
    stats: dict
    grads: dict


def run_phase(loss: PhaseLoss, params, carry, xs, opt: optax.GradientTransformation,
              opt_state, frozen=()) -> PhaseResult:
    """`loss` over the rounds of xs (a pytree, leading axis R), gradients summed over them,
    then one `pmean` + `nan_to_num` + optimizer step; the `frozen` layers
    (freeze.frozen_d_layers) keep their values."""
    def one_round(carry, x):
        (_, (carry, stats)), grads = jax.value_and_grad(loss, has_aux=True)(params, carry, x)
        return carry, grads, stats

    carry, grads, stats = _accumulate(one_round, carry, xs, params)
    grads = _clean(grads)
    updates, opt_state = opt.update(grads, opt_state, params)
    new_params = freeze.keep_frozen(optax.apply_updates(params, updates), params, frozen)
    return PhaseResult(new_params, opt_state, carry, stats, grads)


def _accumulate(round_fn, carry, xs, params):
    """Runs round_fn(carry, x) -> (carry, grads, stats) over the rounds of xs (leading axis)
    -> (carry, gradients summed over rounds, stats averaged over rounds). One round runs
    unrolled: R = 1 is the plain step, without a scan."""
    rounds = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if rounds == 1:
        return round_fn(carry, jax.tree_util.tree_map(lambda x: x[0], xs))

    def body(acc, x):
        carry, total = acc
        carry, grads, stats = round_fn(carry, x)
        return (carry, jax.tree_util.tree_map(jnp.add, total, grads)), stats

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    (carry, grads), stats = jax.lax.scan(body, (carry, zeros), xs)
    return carry, grads, jax.tree_util.tree_map(lambda s: jnp.mean(s, axis=0), stats)


def _clean(grads):
    """Averaged over devices as one flat vector (one all-reduce, as the official loop
    concatenates its gradients), then `nan_to_num` as officially."""
    flat, unravel = ravel_pytree(grads)
    flat = jax.lax.pmean(flat, AXIS)
    return unravel(jnp.nan_to_num(flat, nan=0.0, posinf=1e5, neginf=-1e5))


def split_rounds(x, rounds: int):
    """[R * m, ...] -> [R, m, ...]: round r takes the r-th contiguous slice (official split)."""
    return x.reshape(rounds, x.shape[0] // rounds, *x.shape[1:])


def draws_rounds(draw: PhaseDraws, rounds: int) -> PhaseDraws:
    """A phase's per-device draws with a leading round axis: the batch split as the reals,
    one style-mixing cutoff per round, and round r of R > 1 takes its synthesis noise from
    fold_in(noise_key, r) (step.draw_iteration)."""
    key = draw.noise_key
    keys = key[None] if rounds == 1 else jax.vmap(
        lambda r: jax.random.fold_in(key, r))(jnp.arange(rounds))
    return PhaseDraws(z=split_rounds(draw.z, rounds), c=split_rounds(draw.c, rounds),
                      mix_z=None if draw.mix_z is None else split_rounds(draw.mix_z, rounds),
                      mix_cutoff=draw.mix_cutoff.reshape(rounds), noise_key=keys)


def augment_rounds(draws, rounds: int):
    """One D evaluation's ADA pipe draws with a leading round axis: recorded official draws
    (a tuple of batch-first arrays) split as the reals, a PRNG key folded with the round."""
    if isinstance(draws, tuple | list):
        return tuple(split_rounds(jnp.asarray(x), rounds) for x in draws)
    return draws[None] if rounds == 1 else jax.vmap(
        lambda r: jax.random.fold_in(draws, r))(jnp.arange(rounds))
