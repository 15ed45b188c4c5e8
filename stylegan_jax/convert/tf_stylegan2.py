"""NVIDIA's TensorFlow StyleGAN2 pickles -> this project's StyleGAN2 networks.

Two TF code bases wrote them, both as `G_main` (components `G_mapping` + a synthesis
network) and a discriminator; the build functions name the code base:

- NVlabs/stylegan2 (state version 4): `G_synthesis_stylegan2` + `D_stylegan2`, the
  paper's configs E and F (`stylegan2-<dataset>-config-f.pkl`, the Table 2 networks);
- NVlabs/stylegan2-ada, TF (state version 5): `G_synthesis` + `D_main`, which add
  label embeddings, `conv_clamp`, `use_noise`, ...

For the kwargs accepted here both compute what stylegan2-ada-pytorch's networks (our
`stylegan2` module) compute, so each TF variable maps onto one official PyTorch
state-dict entry (then `torch_stylegan2.state_dict_to_variables`), as the official TF code
defines them:

- dense weights [in, out] -> [out, in]; conv weights HWIO -> OIHW;
- up-sampling conv kernels (`Conv0_up`, the generator's `Skip`) are also flipped in
  both spatial axes: TF's `upsample_conv_2d` flips the kernel before its transposed
  convolution, PyTorch's does not;
- `mod_weight` / `mod_bias` are the style affine, whose bias gets + 1 (TF adds 1 after
  the bias, PyTorch initialises the bias to 1);
- `Const/const` [1, C, 4, 4] -> [C, 4, 4]; `noise<i>` [1, 1, H, W] is layer i's constant
  noise (layer 0 = 4x4, then two per resolution);
- `fmap_base` is half our `channel_base` (kwargs: tf_stylegan2_kwargs.py).

Configs B-D (`G_synthesis_stylegan_revised`, `D_stylegan`: progressive growing) are
refused; config A (`G_style`, `D_basic`) is StyleGAN v1 (tf_progressive.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import numpy as np

from stylegan_jax.convert import torch_stylegan2
from stylegan_jax.convert.pickle_reader import TFNetwork
from stylegan_jax.convert.safe_pickle import one_line
from stylegan_jax.convert.tf_stylegan2_kwargs import (  # noqa: F401 (re-exported)
    STYLEGAN2,
    STYLEGAN2_ADA,
    CodeBase,
    ConversionError,
    code_base_of,
    discriminator_kwargs,
    generator_kwargs,
    is_stylegan2,
)
from stylegan_jax.models import stylegan2
from stylegan_jax.models.registry import Network

# ---------------------------------------------------------------------------------
# Variables: TF name <-> official PyTorch state-dict name and layout

_G_LAYERS = {"conv0": "Conv0_up", "conv1": "Conv1", "torgb": "ToRGB", "skip": "Skip"}
_D_LAYERS = {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down", "skip": "Skip",
             "conv": "Conv", "fc": "Dense0"}


def _generator_name(name: str) -> tuple[str, str]:
    """(TF name, layout) of a Generator state-dict entry."""
    if name == "mapping.w_avg":
        return "dlatent_avg", "plain"
    m = re.fullmatch(r"mapping\.(embed|fc(\d+))\.(weight|bias)", name)
    if m:
        scope = "LabelEmbed" if m[1] == "embed" else f"Dense{m[2]}"
        return f"G_mapping/{scope}/{m[3]}", "dense" if m[3] == "weight" else "plain"
    if name == "synthesis.b4.const":
        return "G_synthesis/4x4/Const/const", "const"
    m = re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb|skip)\.(.+)", name)
    if not m:
        raise ConversionError(f"no TF name for the generator's {name}")
    res, layer, leaf = int(m[1]), m[2], m[3]
    scope = f"G_synthesis/{res}x{res}/" + ("Conv" if (res, layer) == (4, "conv1")
                                           else _G_LAYERS[layer])
    if leaf == "noise_const":
        index = 0 if res == 4 else 2 * int(np.log2(res)) - (5 if layer == "conv0" else 4)
        return f"G_synthesis/noise{index}", "noise"
    if leaf == "weight":
        return f"{scope}/weight", "flipped_conv" if layer in ("conv0", "skip") else "conv"
    return {"affine.weight": (f"{scope}/mod_weight", "dense"),
            "affine.bias": (f"{scope}/mod_bias", "mod_bias")}.get(leaf, (f"{scope}/{leaf}",
                                                                            "plain"))


def _discriminator_name(name: str) -> tuple[str, str]:
    """(TF name, layout) of a Discriminator state-dict entry."""
    m = re.fullmatch(r"mapping\.(embed|fc(\d+))\.(weight|bias)", name)
    if m:
        scope, dense = ("LabelEmbed" if m[1] == "embed" else f"Mapping{m[2]}"), True
    elif name.startswith("b4.out."):
        scope, dense = "Output", True
    else:
        m = re.fullmatch(r"b(\d+)\.(fromrgb|conv0|conv1|skip|conv|fc)\.(weight|bias)", name)
        if not m:
            raise ConversionError(f"no TF name for the discriminator's {name}")
        scope, dense = f"{m[1]}x{m[1]}/{_D_LAYERS[m[2]]}", m[2] == "fc"
    if name.endswith(".bias"):
        return f"{scope}/bias", "plain"
    # b4.fc: TF flattens NCHW feature maps as PyTorch does, so a transpose suffices.
    return f"{scope}/weight", "dense" if dense else "conv"


def tf_to_official(value: np.ndarray, layout: str) -> np.ndarray:
    """A TF variable in the official PyTorch layout (`layout` from `tf_names`)."""
    if layout == "dense":
        return value.T
    if layout == "conv":
        return value.transpose(3, 2, 0, 1)
    if layout == "flipped_conv":
        return value[::-1, ::-1].transpose(3, 2, 0, 1)
    if layout == "const":
        return value[0]
    if layout == "noise":
        return value[0, 0]
    if layout == "mod_bias":
        return value + 1
    return value


def _tf_shape(shape: tuple, layout: str) -> tuple:
    if layout == "dense":
        return shape[::-1]
    if layout in ("conv", "flipped_conv"):
        return (shape[2], shape[3], shape[1], shape[0])
    if layout == "const":
        return (1, *shape)
    if layout == "noise":
        return (1, 1, *shape)
    return shape


def tf_names(module: nn.Module) -> dict[str, tuple[str, str, tuple]]:
    """TF variable name -> (official state-dict name, layout, official shape) for `module`."""
    expected = torch_stylegan2.expected_shapes(module, torch_stylegan2.sample_inputs(module))
    name_of = (_generator_name if isinstance(module, stylegan2.Generator)
               else _discriminator_name)
    out = {}
    for key, ours in expected.items():
        name = ".".join(key[1:])
        shape = torch_stylegan2.official_shape(module, name, ours)
        tf_name, layout = name_of(name)
        out[tf_name] = (name, layout, shape)
    return out


def variables_from_tf(named: Mapping[str, Any], module: nn.Module, what: str = "network"
                      ) -> dict:
    """TF variables (name -> array, components as `G_mapping/...`) -> Flax variables.

    Raises ConversionError naming every missing, unexpected or mis-shaped variable.
    `lod` (G_main's, unused by these networks) is skipped.
    """
    table = tf_names(module)
    state, problems = {}, []
    for tf_name, value in named.items():
        if tf_name == "lod" and isinstance(module, stylegan2.Generator):
            continue
        value = np.asarray(value)
        if tf_name not in table:
            problems.append(f"{what}: unexpected variable {tf_name} {tuple(value.shape)}")
            continue
        if value.dtype.kind != "f":
            problems.append(f"{what}: {tf_name} has dtype {value.dtype}, expected floats")
            continue
        name, layout, shape = table[tf_name]
        want = _tf_shape(shape, layout)
        if tuple(value.shape) != want:
            problems.append(f"{what}: {tf_name} has shape {tuple(value.shape)}, expected {want}")
            continue
        state[name] = tf_to_official(value.astype(np.float32), layout)
    for tf_name in sorted(set(table) - set(named)):
        name, layout, shape = table[tf_name]
        problems.append(f"{what}: missing variable {tf_name} {_tf_shape(shape, layout)}")
    if problems:
        raise ConversionError("variables do not match the network:\n  " + "\n  ".join(problems))
    return torch_stylegan2.state_dict_to_variables(state, module, what)


# TF tuple position -> our network name.
PICKLE_NAMES = (("G", "G"), ("D", "D"), ("Gs", "G_ema"))


def networks_from_tf_stylegan2(data: tuple[TFNetwork, TFNetwork, TFNetwork],
                               path: str | Path) -> dict[str, Network]:
    """A loaded TF StyleGAN2 pickle (G, D, Gs) -> {'G', 'D', 'G_ema': Network}."""
    G, D, Gs = data
    for label, net in (("G", G), ("Gs", Gs)):
        if not is_stylegan2(net.build_func_name):
            raise ConversionError(f"{path}:{label}: build function {net.build_func_name!r}, "
                                  "expected G_main with D_stylegan2 or D_main")
    base = code_base_of(G, D, f"{path}")
    if code_base_of(Gs, D, f"{path}") is not base:
        raise ConversionError(f"{path}: G and Gs come from different code bases")
    out = {}
    for (theirs, ours), net in zip(PICKLE_NAMES, data, strict=True):
        where = f"{path}:{theirs}"
        try:
            if ours == "D":
                module = stylegan2.Discriminator(**discriminator_kwargs(net, base, where))
            else:
                module = stylegan2.Generator(**generator_kwargs(net, base, where))
            out[ours] = Network(module, variables_from_tf(net.variables(), module, where))
        except ConversionError:
            raise
        # a kwarg of the wrong type (None for an int...) or that the network cannot take
        except (ValueError, TypeError, ArithmeticError, IndexError) as e:
            raise ConversionError(f"{where}: not a supported {base.name} network: "
                                  f"{one_line(e)}") from None
    return out
