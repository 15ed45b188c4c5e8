"""Freezing the first discriminator layers (official `--freezed`, for transfer learning)."""

from __future__ import annotations

from collections.abc import Mapping


def frozen_d_layers(d_params: Mapping, freeze: int) -> tuple:
    """Paths (block, layer) of the first `freeze` D layers in the official order: blocks from
    the highest resolution down, within each fromrgb, conv0, conv1, skip (those it has);
    the 4x4 epilogue is never frozen (official `freeze_layers`)."""
    if freeze <= 0:
        return ()
    blocks = sorted((k for k in d_params if k.startswith("b") and k[1:].isdigit()
                     and int(k[1:]) > 4), key=lambda k: -int(k[1:]))
    layers = [(b, layer) for b in blocks for layer in ("fromrgb", "conv0", "conv1", "skip")
              if layer in d_params[b]]
    return tuple(layers[:freeze])


def keep_frozen(new_params, old_params, frozen: tuple):
    """`new_params` with the frozen layers' tensors as in `old_params`."""
    if not frozen:
        return new_params
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in new_params.items()}
    for block, layer in frozen:
        out[block][layer] = old_params[block][layer]
    return out
