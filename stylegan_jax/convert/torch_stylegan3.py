"""NVIDIA's StyleGAN3 (alias-free) generator state dicts <-> our Flax variables.

Official names (`synthesis.L3_36_32.affine.weight`) map one to one onto our variable
paths (`params/synthesis/L3_36_32/affine/weight`); only layouts change: OIHW -> HWIO
for convolutions, [out, in] -> [in, out] for dense matrices (the input's `weight`
included). `w_avg`, `freqs`, `phases`, `transform` and `magnitude_ema` are buffers.
The `up_filter` / `down_filter` buffers are not stored: they are compared with the
filters our layer specs design (the official design, `nn.filter_design`) and refused
if they differ, so a network never runs with filters other than the ones it was
trained with. A W x H generator (`img_aspect`) has the square one's tensors, but no
official format: writing its official kwargs is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from stylegan_jax import shapes
from stylegan_jax.convert.torch_kwargs import ConversionError
from stylegan_jax.models import stylegan3
from stylegan_jax.models.registry import Network

BUFFER_NAMES = ("w_avg", "freqs", "phases", "transform", "magnitude_ema")
FILTER_NAMES = ("up_filter", "down_filter")
FILTER_TOLERANCE = 1e-6  # float32 rounding of the same design is ~1e-8

# Official Generator / SynthesisNetwork / SynthesisLayer kwargs -> ours (same meaning).
_SYNTHESIS = ("channel_base", "channel_max", "num_layers", "num_critical", "margin_size",
              "output_scale", "conv_kernel", "use_radial_filters", "conv_clamp",
              "magnitude_ema_beta")
# Official kwargs we accept only at their defaults (the layer design is built on them).
_FIXED = {"first_cutoff": 2, "first_stopband": 2**2.1, "last_stopband_rel": 2**0.3,
          "filter_size": 6, "lrelu_upsampling": 2}


def generator_kwargs(init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Our `stylegan3.Generator` kwargs from the official `Generator(...)` kwargs."""
    kw = dict(init_kwargs)
    mapping = dict(kw.pop("mapping_kwargs", {}) or {})
    out = {}
    for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
        if k not in kw:
            raise ConversionError(f"StyleGAN3 Generator kwargs lack {k!r}")
        out[k] = int(kw.pop(k))
    out["mapping_layers"] = int(mapping.pop("num_layers", 2))
    out["mapping_lr_multiplier"] = float(mapping.pop("lr_multiplier", 0.01))
    out["w_avg_beta"] = mapping.pop("w_avg_beta", 0.998)
    if mapping:
        raise ConversionError(f"unexpected StyleGAN3 mapping_kwargs {sorted(mapping)}")
    for k in _SYNTHESIS:
        if k in kw:
            out[k] = kw.pop(k)
    if out.get("conv_clamp") is not None:
        out["conv_clamp"] = float(out["conv_clamp"])
    for k, default in _FIXED.items():
        if k in kw and not np.isclose(float(kw.pop(k)), default):
            raise ConversionError(f"StyleGAN3 Generator kwarg {k}={init_kwargs[k]!r} is not "
                                  f"supported (only the official default {default!r})")
    kw.pop("num_fp16_res", None)  # imported networks compute in float32
    kw.pop("epochs", None)
    if kw:
        raise ConversionError(f"unexpected StyleGAN3 Generator kwargs {sorted(kw)}")
    return out


def has_alias_free_kwargs(init_kwargs: Mapping[str, Any]) -> bool:
    """Whether official Generator kwargs are networks_stylegan3's (kwargs only it takes)."""
    own = set(_SYNTHESIS + tuple(_FIXED)) - {"channel_base", "channel_max", "conv_clamp"}
    return bool(set(init_kwargs) & own)


def is_alias_free(record) -> bool:
    """Whether a pickled official Generator record is networks_stylegan3's (its embedded
    source defines SynthesisInput, or its kwargs are the alias-free generator's)."""
    return ("class SynthesisInput" in getattr(record, "module_src", "")
            or has_alias_free_kwargs(record.init_kwargs))


def network_from_record(record, what: str = "G") -> Network:
    """An official StyleGAN3 Generator record (convert.pickle_reader) -> Network."""
    try:
        G = stylegan3.Generator(**generator_kwargs(record.init_kwargs))
    except ValueError as e:
        raise ConversionError(f"{what}: not a supported StyleGAN3 generator: {e}") from None
    return Network(G, state_dict_to_variables(record.state_dict(), G, what))


def official_init_kwargs(G: stylegan3.Generator, what: str = "network") -> dict[str, Any]:
    """The official `networks_stylegan3.Generator` kwargs that rebuild G; ValueError for a
    W x H generator (`img_aspect` other than (1, 1)): the official SynthesisNetwork builds
    squares only, so no official format can hold it."""
    shapes.require_square(G.img_resolution, G.img_aspect, what, "the official StyleGAN3 formats")
    out = dict(z_dim=G.z_dim, c_dim=G.c_dim, w_dim=G.w_dim, img_resolution=G.img_resolution,
               img_channels=G.img_channels,
               mapping_kwargs=dict(num_layers=G.mapping_layers,
                                   lr_multiplier=G.mapping_lr_multiplier,
                                   w_avg_beta=G.w_avg_beta))
    out.update({k: getattr(G, k) for k in _SYNTHESIS})
    out["num_fp16_res"] = 0
    return out


def expected_shapes(G: stylegan3.Generator) -> dict[tuple, tuple]:
    """Flat {(collection, *path): shape} of G's variables, without computing them."""
    def init():
        return G.init(jax.random.PRNGKey(0), jnp.zeros((1, G.z_dim)), jnp.zeros((1, G.c_dim)))
    return {k: tuple(v.shape) for k, v in flatten_dict(jax.eval_shape(init)).items()}


def designed_filters(G: stylegan3.Generator) -> dict[str, np.ndarray | None]:
    """{'synthesis.<layer>.up_filter' / '.down_filter': taps or None} of G's design."""
    _, specs = layer_specs_of(G)
    out = {}
    for s in specs:
        out[f"synthesis.{s.name}.up_filter"] = s.up_filter()
        out[f"synthesis.{s.name}.down_filter"] = s.down_filter()
    return out


def layer_specs_of(G: stylegan3.Generator):
    return stylegan3.layer_specs(
        G.img_resolution, G.img_channels, G.channel_base, G.channel_max,
        num_layers=G.num_layers, num_critical=G.num_critical, margin_size=G.margin_size,
        conv_kernel=G.conv_kernel, use_radial_filters=G.use_radial_filters,
        aspect=G.img_aspect)


def _to_ours(name: str, value: np.ndarray) -> np.ndarray:
    if name.endswith(".weight") and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if name.endswith(".weight") and value.ndim == 2:
        return value.T
    return value


def _to_official(name: str, value: np.ndarray) -> np.ndarray:
    if name.endswith(".weight") and value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    if name.endswith(".weight") and value.ndim == 2:
        return value.T
    return value


def state_dict_to_variables(state_dict: Mapping[str, Any], G: stylegan3.Generator,
                            what: str = "G") -> dict:
    """Official StyleGAN3 generator state dict (name -> array) -> Flax variables of G.

    Raises ConversionError naming every missing, unexpected or mis-shaped tensor and
    every filter that is not G's design.
    """
    expected = expected_shapes(G)
    filters = designed_filters(G)
    flat, problems = {}, []
    for name, value in state_dict.items():
        value = np.asarray(value, np.float32)
        leaf = name.rsplit(".", 1)[-1]
        if leaf in FILTER_NAMES:
            problems += _check_filter(what, name, value, filters)
            continue
        key = ("buffers" if leaf in BUFFER_NAMES else "params", *name.split("."))
        if key not in expected:
            problems.append(f"{what}: unexpected tensor {name} {tuple(value.shape)}")
            continue
        ours = _to_ours(name, value)
        if tuple(ours.shape) != expected[key]:
            want = _to_official(name, np.zeros(expected[key], np.float32)).shape
            problems.append(f"{what}: {name} has shape {tuple(value.shape)}, expected "
                            f"{tuple(want)}")
            continue
        flat[key] = ours
    for key in sorted(set(expected) - set(flat)):
        name = ".".join(key[1:])
        if not any(name in p for p in problems):
            problems.append(f"{what}: missing tensor {name}")
    if problems:
        raise ConversionError("state dict does not match the StyleGAN3 generator:\n  "
                              + "\n  ".join(problems))
    return unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})


def _check_filter(what, name, value, filters) -> list[str]:
    if name not in filters:
        return [f"{what}: unexpected tensor {name} {tuple(value.shape)}"]
    ours = filters[name]
    if ours is None:  # the official module keeps None: such a buffer is never saved
        return [f"{what}: {name} should be absent (identity), got shape {value.shape}"]
    if value.shape != ours.shape:
        return [f"{what}: {name} has shape {value.shape}, the design has {ours.shape}"]
    err = float(np.max(np.abs(value - ours)))
    if err > FILTER_TOLERANCE:
        return [f"{what}: {name} differs from the official design by {err:.2e} "
                f"(> {FILTER_TOLERANCE:g})"]
    return []


def variables_to_state_dict(variables: Mapping, G: stylegan3.Generator
                            ) -> dict[str, np.ndarray]:
    """Flax variables -> official state dict, with the designed `up/down_filter` buffers."""
    out = {}
    for key, value in flatten_dict(dict(variables)).items():
        if key[0] in ("params", "buffers"):
            name = ".".join(key[1:])
            out[name] = np.require(_to_official(name, np.asarray(value)), requirements="C")
    for name, f in designed_filters(G).items():
        if f is not None:
            out[name] = f.copy()
    return out
