"""NVIDIA's PyTorch StyleGAN2 state dicts <-> this project's Flax variables.

Networks of stylegan2-ada-pytorch and of the stylegan3 code base's StyleGAN2 (their
constructor kwargs: torch_kwargs.py).

Official names (`synthesis.b8.conv0.affine.weight`) map one to one onto our variable
paths (`params/synthesis/b8/conv0/affine/weight`); only layouts change: OIHW -> HWIO
for convolutions, [out, in] -> [in, out] for dense layers, CHW -> HWC for the
constant input, and NCHW -> NHWC flattening order for the discriminator's `b4.fc`.
`resample_filter` buffers are checked against [1, 3, 3, 1] and not stored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from stylegan_jax.atomic import new_directory
from stylegan_jax.convert import torch_stylegan3 as sg3
from stylegan_jax.convert.pickle_reader import load_official_pickle
from stylegan_jax.convert.safe_pickle import one_line, printable
from stylegan_jax.convert.torch_kwargs import (  # noqa: F401 (re-exported)
    ADA,
    STYLEGAN3,
    ConversionError,
    discriminator_kwargs,
    generator_kwargs,
    has_top_level_synthesis,
    official_init_kwargs,
)
from stylegan_jax.models import stylegan2, stylegan3
from stylegan_jax.models.registry import Network
from stylegan_jax.nn import ops

BUFFER_NAMES = ("w_avg", "noise_const")


# ---------------------------------------------------------------------------------
# State dicts


def expected_shapes(module: nn.Module, sample_inputs: tuple) -> dict[tuple, tuple]:
    """Flat {(collection, *path): shape} of the module's variables, without computing them."""
    rngs = {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(0)}
    shapes = jax.eval_shape(lambda *x: module.init(rngs, *x), *sample_inputs)
    return {k: tuple(v.shape) for k, v in flatten_dict(shapes).items()}


def sample_inputs(module: nn.Module) -> tuple:
    """Abstract example inputs (shapes only: a file's kwargs never allocate) to initialise
    a generator or discriminator."""
    def spec(*shape):
        return jax.ShapeDtypeStruct(shape, jnp.float32)

    if isinstance(module, stylegan2.Generator):
        return (spec(2, module.z_dim), spec(2, module.c_dim))
    if isinstance(module, stylegan2.Discriminator):
        r, c = module.img_resolution, module.img_channels
        group = module.mbstd_group_size or 2
        return (spec(group, r, r, c), spec(group, module.c_dim))
    raise TypeError(f"no sample inputs for {type(module).__name__}")


def _is_epilogue_fc(module: nn.Module, name: str) -> bool:
    return isinstance(module, stylegan2.Discriminator) and name == "b4.fc.weight"


def _to_ours(module: nn.Module, name: str, value: np.ndarray, shape: tuple) -> np.ndarray:
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "weight" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if _is_epilogue_fc(module, name):
        out, flat = value.shape
        res = 4
        ch = flat // (res * res)
        if ch * res * res != flat:
            raise ConversionError(f"{name}: {flat} inputs is not C*4*4")
        return value.reshape(out, ch, res, res).transpose(2, 3, 1, 0).reshape(flat, out)
    if leaf == "weight" and value.ndim == 2:
        return value.T
    if leaf == "const" and value.ndim == 3:
        return value.transpose(1, 2, 0)
    return value


def _to_official(module: nn.Module, name: str, value: np.ndarray) -> np.ndarray:
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "weight" and value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    if _is_epilogue_fc(module, name):
        flat, out = value.shape
        ch = flat // 16
        return value.reshape(4, 4, ch, out).transpose(3, 2, 0, 1).reshape(out, flat)
    if leaf == "weight" and value.ndim == 2:
        return value.T
    if leaf == "const" and value.ndim == 3:
        return value.transpose(2, 0, 1)
    return value


def state_dict_to_variables(
    state_dict: Mapping[str, Any], module: nn.Module, what: str = "network"
) -> dict:
    """Converts an official state dict (name -> array) into Flax variables for `module`.

    Raises ConversionError naming every missing, unexpected or mis-shaped tensor.
    """
    expected = expected_shapes(module, sample_inputs(module))
    reference_filter = ops.setup_filter()
    flat, problems = {}, []
    for name, value in state_dict.items():
        value = np.asarray(value, dtype=np.float32)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "resample_filter":
            if value.shape != reference_filter.shape or not np.allclose(value, reference_filter):
                problems.append(f"{what}: {name} is not the [1,3,3,1] filter")
            continue
        collection = "buffers" if leaf in BUFFER_NAMES else "params"
        key = (collection, *name.split("."))
        if key not in expected:
            problems.append(f"{what}: unexpected tensor {printable(name)} {tuple(value.shape)}")
            continue
        ours = _to_ours(module, name, value, expected[key])
        if tuple(ours.shape) != expected[key]:
            problems.append(
                f"{what}: {name} has shape {tuple(value.shape)}, which does not fit "
                f"the expected {official_shape(module, name, expected[key])}"
            )
            continue
        flat[key] = ours
    for key in sorted(set(expected) - set(flat)):
        name = ".".join(key[1:])
        if not any(name in p for p in problems):
            shape = official_shape(module, name, expected[key])
            problems.append(f"{what}: missing tensor {name} {shape}")
    if problems:
        raise ConversionError("state dict does not match the network:\n  " + "\n  ".join(problems))
    return unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})


def official_shape(module: nn.Module, name: str, ours: tuple) -> tuple:
    """The official (PyTorch-layout) shape of our variable `name` of shape `ours`."""
    return tuple(_to_official(module, name, np.zeros(ours, np.float32)).shape)


def variables_to_state_dict(variables: Mapping, module: nn.Module) -> dict[str, np.ndarray]:
    """Flax variables -> official state dict (with the `resample_filter` buffers)."""
    out: dict[str, np.ndarray] = {}
    filt = ops.setup_filter()
    for key, value in flatten_dict(dict(variables)).items():
        if key[0] not in ("params", "buffers"):
            continue
        name = ".".join(key[1:])
        out[name] = np.require(_to_official(module, name, np.asarray(value)), requirements="C")
    for owner in sorted(_filter_owners(out, module)):
        out[f"{owner}.resample_filter"] = filt.copy()
    return out


def _filter_owners(state: Mapping[str, np.ndarray], module: nn.Module) -> set[str]:
    """Official modules that carry a `resample_filter` buffer: blocks and conv layers."""
    owners = set()
    for name, value in state.items():
        parts = name.split(".")
        if parts[-1] != "weight" or value.ndim != 4 or parts[-2] == "torgb":
            continue
        owners.add(".".join(parts[:-1]))
        block = parts[:-2]
        if block and block[-1] != "b4" or (block and isinstance(module, stylegan2.Generator)):
            owners.add(".".join(block))
    return owners


_PICKLE_CLASSES = {"G": "Generator", "G_ema": "Generator", "D": "Discriminator"}


def code_base_of(records: Mapping[str, Any]) -> str:
    """Which official code base pickled these networks (their defaults differ).

    The stylegan3 code base's StyleGAN2 source (embedded in each record) has
    `fused_modconv_default`, and its Generator takes the synthesis kwargs at the top level.
    """
    for record in records.values():
        if "fused_modconv_default" in getattr(record, "module_src", ""):
            return STYLEGAN3
        if record.class_name == "Generator" and has_top_level_synthesis(record.init_kwargs):
            return STYLEGAN3
    return ADA


def networks_from_pickle(path, data: dict | None = None) -> dict[str, Network]:
    """Official network pickle -> {'G', 'G_ema', 'D': Network} (those present).

    Reads the pickles of stylegan2-ada-pytorch and the stylegan3 code base's StyleGAN2
    (`data`: the pickle as `load_official_pickle` read it already).
    """
    data = load_official_pickle(path) if data is None else data
    records = {name: data[name] for name in _PICKLE_CLASSES if data.get(name) is not None}
    code_base = code_base_of(records)
    out = {}
    for name, record in records.items():
        class_name = _PICKLE_CLASSES[name]
        if class_name == "Generator" and sg3.is_alias_free(record):  # StyleGAN3
            out[name] = sg3.network_from_record(record, f"{path}:{name}")
            continue
        if record.class_name != class_name:
            raise ConversionError(
                f"{path}: '{name}' is a {record.class_name}, expected the StyleGAN2 {class_name}"
            )
        if record.state.get("_init_args"):
            raise ConversionError(f"{path}: '{name}' was built with positional arguments")
        try:
            if class_name == "Generator":
                kwargs = generator_kwargs(record.init_kwargs, code_base)
                module = stylegan2.Generator(**kwargs)
            else:
                kwargs = discriminator_kwargs(record.init_kwargs, code_base)
                module = stylegan2.Discriminator(**kwargs)
            variables = state_dict_to_variables(record.state_dict(), module, f"{path}:{name}")
        except ConversionError:
            raise
        # kwargs the checks above let through but the network cannot be built with
        except (ValueError, TypeError, ArithmeticError, IndexError) as e:
            raise ConversionError(
                f"{path}: '{name}' is not a supported StyleGAN2 network ({code_base} "
                f"code base): {one_line(e)}"
            ) from None
        out[name] = Network(module, variables)
    return out


def export_official(networks: Mapping[str, Network], dest) -> Path:
    """Writes `<name>.npz` official state dicts + `init_kwargs.json`, atomically, to `dest`.

    Official code rebuilds each network with `Generator(**init_kwargs['G'])` and loads
    `{k: torch.from_numpy(v) for k, v in np.load('G.npz').items()}` with load_state_dict.
    A W x H network (StyleGAN2 `img_aspect`) has no official form: ValueError, nothing written.
    """
    sg3_nets = {name for name, net in networks.items()
                if isinstance(net.module, stylegan3.Generator)}
    kwargs = {name: sg3.official_init_kwargs(net.module, f"'{name}'") if name in sg3_nets
              else official_init_kwargs(net.module, f"'{name}'")
              for name, net in networks.items()}
    with new_directory(dest) as tmp:
        for name, net in networks.items():
            if name in sg3_nets:
                state = sg3.variables_to_state_dict(net.variables, net.module)
            else:
                state = variables_to_state_dict(net.variables, net.module)
            np.savez(tmp / f"{name}.npz", **state)
        (tmp / "init_kwargs.json").write_text(json.dumps(kwargs, indent=2) + "\n")
    return Path(dest).absolute()


def networks_from_state_dicts(src) -> dict[str, Network]:
    """Reads a directory written by `export_official` (or by hand in that layout)."""
    src = Path(src)
    kwargs_path = src / "init_kwargs.json"
    if not kwargs_path.is_file():
        raise ConversionError(f"{src} holds no init_kwargs.json")
    out = {}
    inits = json.loads(kwargs_path.read_text())
    top = any(has_top_level_synthesis(init) for name, init in inits.items()
              if _PICKLE_CLASSES.get(name) == "Generator")
    code_base = STYLEGAN3 if top else ADA
    for name, init in inits.items():
        class_name = _PICKLE_CLASSES.get(name)
        if class_name is None:
            raise ConversionError(f"{kwargs_path}: unknown network name {name!r}")
        with np.load(src / f"{name}.npz") as data:
            state = {k: data[k] for k in data.files}
        where = f"{src}/{name}.npz"
        if class_name == "Generator" and sg3.has_alias_free_kwargs(init):
            module = stylegan3.Generator(**sg3.generator_kwargs(init))
            out[name] = Network(module, sg3.state_dict_to_variables(state, module, where))
            continue
        if class_name == "Generator":
            module = stylegan2.Generator(**generator_kwargs(init, code_base))
        else:
            module = stylegan2.Discriminator(**discriminator_kwargs(init, code_base))
        out[name] = Network(module, state_dict_to_variables(state, module, where))
    return out
