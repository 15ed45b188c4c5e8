"""NVIDIA's StyleGAN2-ADA state dicts <-> this project's Flax variables.

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
from stylegan_jax.convert.pickle_reader import load_official_pickle
from stylegan_jax.model_store import Network
from stylegan_jax.models import stylegan2
from stylegan_jax.nn import ops

BUFFER_NAMES = ("w_avg", "noise_const")


class ConversionError(ValueError):
    """A state dict or pickle that does not describe the expected official network."""


# ---------------------------------------------------------------------------------
# Official constructor arguments -> our module kwargs


def generator_kwargs(init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Our `Generator` kwargs from the official `Generator(...)` constructor kwargs."""
    kw = dict(init_kwargs)
    mapping = dict(kw.pop("mapping_kwargs", {}) or {})
    synthesis = dict(kw.pop("synthesis_kwargs", {}) or {})
    out = {k: int(kw.pop(k)) for k in ("z_dim", "c_dim", "w_dim", "img_resolution",
                                         "img_channels") if k in kw}
    missing = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"} - set(out)
    if missing:
        raise ConversionError(f"Generator kwargs lack {sorted(missing)}")
    out["mapping_layers"] = int(mapping.pop("num_layers", 8))
    out["mapping_lr_multiplier"] = float(mapping.pop("lr_multiplier", 0.01))
    out["w_avg_beta"] = mapping.pop("w_avg_beta", 0.995)
    _reject_unsupported("mapping_kwargs", mapping, {"activation": "lrelu"},
                        {"embed_features": None, "layer_features": None})
    out["channel_base"] = int(synthesis.pop("channel_base", 32768))
    out["channel_max"] = int(synthesis.pop("channel_max", 512))
    out["architecture"] = synthesis.pop("architecture", "skip")
    clamp = synthesis.pop("conv_clamp", None)
    out["conv_clamp"] = None if clamp is None else float(clamp)
    synthesis.pop("num_fp16_res", None)  # imported networks compute in float32
    synthesis.pop("fp16_channels_last", None)
    _reject_unsupported("synthesis_kwargs", synthesis, {"resample_filter": [1, 3, 3, 1],
                        "use_noise": True, "activation": "lrelu", "kernel_size": 3}, {})
    kw.pop("epochs", None)
    if kw:
        raise ConversionError(f"unexpected Generator kwargs {sorted(kw)}")
    stylegan2.check_architecture(out["architecture"], "synthesis_kwargs.architecture")
    stylegan2.check_resolution(out["img_resolution"])
    return out


def discriminator_kwargs(init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Our `Discriminator` kwargs from the official `Discriminator(...)` kwargs."""
    kw = dict(init_kwargs)
    epilogue = dict(kw.pop("epilogue_kwargs", {}) or {})
    mapping = dict(kw.pop("mapping_kwargs", {}) or {})
    block = dict(kw.pop("block_kwargs", {}) or {})
    out = {}
    for k in ("c_dim", "img_resolution", "img_channels"):
        if k not in kw:
            raise ConversionError(f"Discriminator kwargs lack {k!r}")
        out[k] = int(kw.pop(k))
    out["architecture"] = kw.pop("architecture", "resnet")
    out["channel_base"] = int(kw.pop("channel_base", 32768))
    out["channel_max"] = int(kw.pop("channel_max", 512))
    clamp = kw.pop("conv_clamp", None)
    out["conv_clamp"] = None if clamp is None else float(clamp)
    cmap = kw.pop("cmap_dim", None)
    out["cmap_dim"] = None if cmap is None else int(cmap)
    kw.pop("num_fp16_res", None)
    group = epilogue.pop("mbstd_group_size", 4)
    out["mbstd_group_size"] = None if group is None else int(group)
    out["mbstd_num_channels"] = int(epilogue.pop("mbstd_num_channels", 1))
    out["mapping_layers"] = int(mapping.pop("num_layers", 8))
    _reject_unsupported("epilogue_kwargs", epilogue, {"activation": "lrelu"}, {})
    _reject_unsupported("mapping_kwargs", mapping, {"activation": "lrelu",
                        "lr_multiplier": 0.01}, {"embed_features": None,
                        "layer_features": None})
    block.pop("fp16_channels_last", None)
    block.pop("freeze_layers", None)  # a training option, not part of the network
    _reject_unsupported("block_kwargs", block, {"activation": "lrelu",
                        "resample_filter": [1, 3, 3, 1]}, {})
    kw.pop("epochs", None)
    if kw:
        raise ConversionError(f"unexpected Discriminator kwargs {sorted(kw)}")
    stylegan2.check_architecture(out["architecture"], "architecture")
    stylegan2.check_resolution(out["img_resolution"])
    return out


def _reject_unsupported(field: str, rest: dict, defaults: dict, nones: dict) -> None:
    for key, value in list(rest.items()):
        expected = defaults.get(key, nones.get(key, object()))
        if key in defaults or key in nones:
            if _same(value, expected):
                continue
            raise ConversionError(
                f"{field}.{key}={value!r} is not supported (only {expected!r})"
            )
        raise ConversionError(f"unexpected {field}.{key}={value!r}")


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    return a == b


# ---------------------------------------------------------------------------------
# State dicts


def expected_shapes(module: nn.Module, sample_inputs: tuple) -> dict[tuple, tuple]:
    """Flat {(collection, *path): shape} of the module's variables, without computing them."""
    rngs = {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(0)}
    shapes = jax.eval_shape(lambda: module.init(rngs, *sample_inputs))
    return {k: tuple(v.shape) for k, v in flatten_dict(shapes).items()}


def sample_inputs(module: nn.Module) -> tuple:
    """Abstract-shaped example inputs to initialise a generator or discriminator."""
    if isinstance(module, stylegan2.Generator):
        return (jnp.zeros((2, module.z_dim)), jnp.zeros((2, module.c_dim)))
    if isinstance(module, stylegan2.Discriminator):
        r, c = module.img_resolution, module.img_channels
        group = module.mbstd_group_size or 2
        return (jnp.zeros((group, r, r, c)), jnp.zeros((group, module.c_dim)))
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
            problems.append(f"{what}: unexpected tensor {name} {tuple(value.shape)}")
            continue
        ours = _to_ours(module, name, value, expected[key])
        if tuple(ours.shape) != expected[key]:
            problems.append(
                f"{what}: {name} has shape {tuple(value.shape)}, which does not fit "
                f"the expected {_official_shape(module, name, expected[key])}"
            )
            continue
        flat[key] = ours
    for key in sorted(set(expected) - set(flat)):
        name = ".".join(key[1:])
        if not any(name in p for p in problems):
            shape = _official_shape(module, name, expected[key])
            problems.append(f"{what}: missing tensor {name} {shape}")
    if problems:
        raise ConversionError("state dict does not match the network:\n  " + "\n  ".join(problems))
    return unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})


def _official_shape(module: nn.Module, name: str, ours: tuple) -> tuple:
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


def official_init_kwargs(module: nn.Module) -> dict[str, Any]:
    """The official constructor kwargs that rebuild `module` (inverse of *_kwargs above)."""
    if isinstance(module, stylegan2.Generator):
        return dict(
            z_dim=module.z_dim, c_dim=module.c_dim, w_dim=module.w_dim,
            img_resolution=module.img_resolution, img_channels=module.img_channels,
            mapping_kwargs=dict(
                num_layers=module.mapping_layers, lr_multiplier=module.mapping_lr_multiplier,
                w_avg_beta=module.w_avg_beta,
            ),
            synthesis_kwargs=dict(
                channel_base=module.channel_base, channel_max=module.channel_max,
                num_fp16_res=0, conv_clamp=module.conv_clamp, architecture=module.architecture,
            ),
        )
    if isinstance(module, stylegan2.Discriminator):
        return dict(
            c_dim=module.c_dim, img_resolution=module.img_resolution,
            img_channels=module.img_channels, architecture=module.architecture,
            channel_base=module.channel_base, channel_max=module.channel_max, num_fp16_res=0,
            conv_clamp=module.conv_clamp, cmap_dim=module.cmap_dim,
            mapping_kwargs=dict(num_layers=module.mapping_layers),
            epilogue_kwargs=dict(
                mbstd_group_size=module.mbstd_group_size,
                mbstd_num_channels=module.mbstd_num_channels,
            ),
        )
    raise TypeError(f"no official counterpart for {type(module).__name__}")


_PICKLE_CLASSES = {"G": "Generator", "G_ema": "Generator", "D": "Discriminator"}


def networks_from_pickle(path) -> dict[str, Network]:
    """Official network pickle -> {'G', 'G_ema', 'D': model_store.Network} (those present)."""
    data = load_official_pickle(path)
    out = {}
    for name, class_name in _PICKLE_CLASSES.items():
        record = data.get(name)
        if record is None:
            continue
        if record.class_name != class_name:
            raise ConversionError(
                f"{path}: '{name}' is a {record.class_name}, expected the StyleGAN2 {class_name}"
            )
        if record.state.get("_init_args"):
            raise ConversionError(f"{path}: '{name}' was built with positional arguments")
        try:
            if class_name == "Generator":
                module = stylegan2.Generator(**generator_kwargs(record.init_kwargs))
            else:
                module = stylegan2.Discriminator(**discriminator_kwargs(record.init_kwargs))
        except ValueError as e:
            raise ConversionError(
                f"{path}: '{name}' is not a supported StyleGAN2 network: {e}"
            ) from None
        variables = state_dict_to_variables(record.state_dict(), module, f"{path}:{name}")
        out[name] = Network(module, variables)
    return out


def export_official(networks: Mapping[str, Network], dest) -> Path:
    """Writes `<name>.npz` official state dicts + `init_kwargs.json`, atomically, to `dest`.

    Official code rebuilds each network with `Generator(**init_kwargs['G'])` and loads
    `{k: torch.from_numpy(v) for k, v in np.load('G.npz').items()}` with load_state_dict.
    """
    with new_directory(dest) as tmp:
        kwargs = {}
        for name, net in networks.items():
            state = variables_to_state_dict(net.variables, net.module)
            np.savez(tmp / f"{name}.npz", **state)
            kwargs[name] = official_init_kwargs(net.module)
        (tmp / "init_kwargs.json").write_text(json.dumps(kwargs, indent=2) + "\n")
    return Path(dest).absolute()


def networks_from_state_dicts(src) -> dict[str, Network]:
    """Reads a directory written by `export_official` (or by hand in that layout)."""
    src = Path(src)
    kwargs_path = src / "init_kwargs.json"
    if not kwargs_path.is_file():
        raise ConversionError(f"{src} holds no init_kwargs.json")
    out = {}
    for name, init in json.loads(kwargs_path.read_text()).items():
        class_name = _PICKLE_CLASSES.get(name)
        if class_name is None:
            raise ConversionError(f"{kwargs_path}: unknown network name {name!r}")
        if class_name == "Generator":
            module = stylegan2.Generator(**generator_kwargs(init))
        else:
            module = stylegan2.Discriminator(**discriminator_kwargs(init))
        with np.load(src / f"{name}.npz") as data:
            state = {k: data[k] for k in data.files}
        out[name] = Network(module, state_dict_to_variables(state, module, f"{src}/{name}.npz"))
    return out
