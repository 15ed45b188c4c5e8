"""NVIDIA's TensorFlow ProGAN / StyleGAN (v1) networks <-> this project's Flax variables.

(TF StyleGAN2 pickles are read by tf_stylegan2.py; convert/pickles.py tells them apart.)

Official TF variable names (`G_synthesis/8x8/Conv0_up/weight`, `4x4/Dense0/bias`,
`dlatent_avg`) are our variable paths (`params/G_synthesis/8x8/Conv0_up/weight`,
`buffers/dlatent_avg`); TF already stores HWIO / [in, out] weights, so only a few
tensors change layout, all because TF computes in NCHW:

- `4x4/Dense/weight` of the ProGAN generator: its outputs are reshaped to [C, 4, 4]
  there and to [4, 4, C] here, so its columns are reordered;
- `4x4/Dense0/weight` of both discriminators: its inputs are flattened [C, 4, 4]
  feature maps there, [4, 4, C] here, so its rows are reordered;
- `G_synthesis/4x4/Const/const` [1, C, 4, 4] -> [4, 4, C]; `G_synthesis/noise<i>`
  [1, 1, H, W] -> [H, W];
- pickles of the original ProGAN code (`tfutil.Network`) store the fused up-conv
  kernel as [k, k, out, in]; it is transposed to [k, k, in, out].

A W x H network (`img_aspect`, this project's extension) reads NVIDIA's layout of the
same tensors on its 4*ah x 4*aw start; no official build function makes one, so writing it
for an official pickle (`variables_to_tf`) is refused.

The `lod` variables are left out of the variables (lod is an input of our networks) and
kept as the Network's `lod`, so a snapshot taken mid-growth renders as it was trained.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from stylegan_jax import shapes
from stylegan_jax.convert.pickle_reader import TFNetwork
from stylegan_jax.convert.safe_pickle import one_line, plain_value, short_repr
from stylegan_jax.models import progan, stylegan
from stylegan_jax.models.registry import Network


class ConversionError(ValueError):
    """TF network state that does not describe a supported official network."""


_GENERATORS = (progan.Generator, stylegan.Generator)
_DISCRIMINATORS = (progan.Discriminator, stylegan.Discriminator)


def _is_buffer(name: str) -> bool:
    leaf = name.rsplit("/", 1)[-1]
    return leaf == "dlatent_avg" or re.fullmatch(r"noise\d+", leaf) is not None


def _to_ours(module: nn.Module, name: str, value: np.ndarray, legacy: bool) -> np.ndarray:
    leaf = name.rsplit("/", 1)[-1]
    h, w = module.at(4)  # the 4x4 block's maps (4*ah x 4*aw on a rectangle)
    if isinstance(module, progan.Generator) and name == "4x4/Dense/weight" and value.ndim == 2:
        rows, cols = value.shape
        ch = cols // (h * w)
        return value.reshape(rows, ch, h, w).transpose(0, 2, 3, 1).reshape(rows, cols)
    if isinstance(module, _DISCRIMINATORS) and name == "4x4/Dense0/weight" and value.ndim == 2:
        rows, cols = value.shape
        ch = rows // (h * w)
        return value.reshape(ch, h, w, cols).transpose(1, 2, 0, 3).reshape(rows, cols)
    if leaf == "const" and value.ndim == 4 and value.shape[0] == 1:
        return value[0].transpose(1, 2, 0)
    if _is_buffer(name) and leaf != "dlatent_avg" and value.ndim == 4:
        return value[0, 0]
    if legacy and name.endswith("/Conv0_up/weight") and value.ndim == 4:
        return value.transpose(0, 1, 3, 2)
    return value


def _to_tf(module: nn.Module, name: str, value: np.ndarray) -> np.ndarray:
    """Inverse of `_to_ours` for the current (dnnlib) layout."""
    leaf = name.rsplit("/", 1)[-1]
    h, w = module.at(4)
    if isinstance(module, progan.Generator) and name == "4x4/Dense/weight":
        rows, cols = value.shape
        ch = cols // (h * w)
        return value.reshape(rows, h, w, ch).transpose(0, 3, 1, 2).reshape(rows, cols)
    if isinstance(module, _DISCRIMINATORS) and name == "4x4/Dense0/weight":
        rows, cols = value.shape
        ch = rows // (h * w)
        return value.reshape(h, w, ch, cols).transpose(2, 0, 1, 3).reshape(rows, cols)
    if leaf == "const" and value.ndim == 3:
        return value.transpose(2, 0, 1)[None]
    if _is_buffer(name) and leaf != "dlatent_avg" and value.ndim == 2:
        return value[None, None]
    return value


def sample_inputs(module: nn.Module, batch: int = 2) -> tuple:
    """Zero inputs of the right shapes to initialise `module`."""
    if isinstance(module, _GENERATORS):
        return (jnp.zeros((batch, module.z_dim)), jnp.zeros((batch, module.c_dim)), 0.0)
    if isinstance(module, _DISCRIMINATORS):
        h, w = module.at(module.img_resolution)
        return (jnp.zeros((batch, h, w, module.img_channels)), jnp.zeros((batch, module.c_dim)),
                0.0)
    raise TypeError(f"no sample inputs for {type(module).__name__}")


def expected_shapes(module: nn.Module) -> dict[tuple, tuple]:
    """Flat {(collection, *path): shape} of the module's variables, without computing them."""
    rngs = {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(0)}
    shapes = jax.eval_shape(lambda: module.init(rngs, *sample_inputs(module)))
    return {k: tuple(v.shape) for k, v in flatten_dict(shapes).items()}


def variables_from_tf(
    named: Mapping[str, Any], module: nn.Module, what: str = "network", legacy: bool = False
) -> dict:
    """Official TF variables (name -> array, sub-networks as `G_mapping/...`) -> Flax variables.

    `legacy=True` reads the original ProGAN code's layout. Raises ConversionError naming
    every missing, unexpected or mis-shaped variable.
    """
    expected = expected_shapes(module)
    flat, problems = {}, []
    for name, value in named.items():
        if name == "lod" or name.endswith("/lod"):
            continue
        value = np.asarray(value)
        if value.dtype.kind != "f":
            problems.append(f"{what}: {name} has dtype {value.dtype}, expected floats")
            continue
        key = ("buffers" if _is_buffer(name) else "params", *name.split("/"))
        if key not in expected:
            problems.append(f"{what}: unexpected variable {name} {tuple(value.shape)}")
            continue
        ours = _to_ours(module, name, value.astype(np.float32), legacy)
        if tuple(ours.shape) != expected[key]:
            want = _to_tf(module, name, np.zeros(expected[key], np.float32)).shape
            problems.append(f"{what}: {name} has shape {tuple(value.shape)}, expected {want}")
            continue
        flat[key] = ours
    for key in sorted(set(expected) - set(flat)):
        name = "/".join(key[1:])
        if not any(f" {name} " in p + " " for p in problems):
            want = _to_tf(module, name, np.zeros(expected[key], np.float32)).shape
            problems.append(f"{what}: missing variable {name} {want}")
    if problems:
        raise ConversionError("variables do not match the network:\n  " + "\n  ".join(problems))
    return unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})


def check_official(module: nn.Module, what: str = "network") -> None:
    """ValueError for a W x H network (`img_aspect` other than (1, 1)): NVIDIA's TF
    networks, and so their pickles, are square."""
    shapes.require_square(module.resolution, module.img_aspect, what,
                          "the official ProGAN / StyleGAN TF pickles")


def variables_to_tf(variables: Mapping, module: nn.Module,
                    what: str = "network") -> dict[str, np.ndarray]:
    """Flax variables -> official TF variables (current layout, `lod` left out), for an
    official pickle: a W x H network is refused (`check_official`)."""
    check_official(module, what)
    out = {}
    for key, value in flatten_dict(dict(variables)).items():
        if key[0] in ("params", "buffers"):
            name = "/".join(key[1:])
            out[name] = np.require(_to_tf(module, name, np.asarray(value)), requirements="C")
    return out


# ---------------------------------------------------------------------------------
# Official build functions and their kwargs -> our modules

# build_func_name -> (our class, official defaults of the fields every call passes)
BUILD_FUNCS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "G_paper": (progan.Generator, {"num_channels": 1, "resolution": 32}),
    "D_paper": (progan.Discriminator, {"num_channels": 1, "resolution": 32}),
    "G_style": (stylegan.Generator, {"num_channels": 3, "resolution": 1024}),
    "D_basic": (stylegan.Discriminator, {"num_channels": 1, "resolution": 32}),
}
# Kwargs that choose how the official code evaluates, not what it computes (our
# networks take these per call: lod, noise_mode, truncation, style mixing).
_RUNTIME_KWARGS = frozenset({
    "structure", "is_template_graph", "force_clean_graph", "randomize_noise",
    "truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val",
    "style_mixing_prob", "is_training", "is_validation", "dlatent_broadcast",
})
# Kwargs whose only supported value is the official default.
_FIXED_KWARGS = {"use_wscale": True, "dtype": "float32", "use_styles": True,
                 "const_input_layer": True}


def module_kwargs_from_tf(build_func_name: str, static_kwargs: Mapping[str, Any],
                          where: str = "network") -> tuple[type[nn.Module], dict[str, Any]]:
    """Our class and its kwargs for an official build function called with `static_kwargs`."""
    if build_func_name not in BUILD_FUNCS:
        raise ConversionError(
            f"{where}: build function {build_func_name!r} is not supported; expected one of "
            f"{sorted(BUILD_FUNCS)} (ProGAN and StyleGAN v1 networks; StyleGAN2's G_main "
            "imports with D_stylegan2 or D_main)")
    cls, defaults = BUILD_FUNCS[build_func_name]
    # img_aspect is this project's extension: no official build function takes it.
    fields = set(cls.__dataclass_fields__) - {"parent", "name", "axis_name", "img_aspect"}
    out = dict(defaults)
    for key, value in static_kwargs.items():
        if key in _RUNTIME_KWARGS:
            continue
        value = plain_value(value, f"{where}: {build_func_name} kwarg {short_repr(key)}")
        if key in _FIXED_KWARGS:
            if value != _FIXED_KWARGS[key]:
                raise ConversionError(f"{where}: {build_func_name} kwarg {key}="
                                      f"{short_repr(value)} is not "
                                      f"supported (only {_FIXED_KWARGS[key]!r})")
            continue
        if key not in fields:
            raise ConversionError(f"{where}: unexpected {build_func_name} kwarg {key}="
                                  f"{short_repr(value)}")
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = tuple(value) if isinstance(value, list | tuple) else value
    return cls, out


def module_from_tf(net: TFNetwork, where: str = "network") -> nn.Module:
    """Our module for a pickled official TF network (its build function and static kwargs)."""
    cls, kwargs = module_kwargs_from_tf(net.build_func_name, net.static_kwargs, where)
    if net.is_legacy and cls is progan.Discriminator and kwargs.get("label_size", 0):
        raise ConversionError(
            f"{where}: the original ProGAN D_paper with label_size={kwargs['label_size']} also "
            "predicts the labels (Dense1 has 1 + label_size outputs); not supported")
    try:
        module = cls(**kwargs)
        expected_shapes(module)  # runs the module's own checks of its kwargs
    except (ValueError, TypeError, ArithmeticError, IndexError) as e:
        raise ConversionError(
            f"{where}: not a supported {net.build_func_name} network: {one_line(e)}") from None
    return module


# Official tuple position -> our network name (Gs, the moving average of G, is G_ema here).
PICKLE_NAMES = (("G", "G"), ("D", "D"), ("Gs", "G_ema"))


def networks_from_tf_records(data: list[TFNetwork], path: str | Path) -> dict[str, Network]:
    """A ProGAN / StyleGAN v1 TF pickle's (G, D, Gs), as `load_tf_pickle` read them ->
    {'G', 'D', 'G_ema': Network}.

    The pickled build source is never executed: the network is rebuilt from its build
    function's name and static kwargs, and its variables are read as data.
    """
    modules = {ours: module_from_tf(net, f"{path}:{theirs}")
               for (theirs, ours), net in zip(PICKLE_NAMES, data, strict=True)}
    G, D, G_ema = (type(modules[k]) for k in ("G", "D", "G_ema"))
    if not (G is G_ema and (G, D) in ((progan.Generator, progan.Discriminator),
                                      (stylegan.Generator, stylegan.Discriminator))):
        raise ConversionError(f"{path}: expected (G, D, Gs) of one family, got the build "
                              f"functions {[net.build_func_name for net in data]}")
    out = {}
    for (theirs, ours), net in zip(PICKLE_NAMES, data, strict=True):
        named = net.variables()
        variables = variables_from_tf(named, modules[ours], f"{path}:{theirs}",
                                      legacy=net.is_legacy)
        lods = [float(np.asarray(v)) for k, v in named.items() if k == "lod" or k.endswith("/lod")]
        out[ours] = Network(modules[ours], variables, lods[0] if lods else 0.0)  # as it was grown
    return out
