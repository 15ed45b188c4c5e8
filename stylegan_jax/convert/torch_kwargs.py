"""Official PyTorch StyleGAN2 constructor kwargs <-> our `stylegan2` module kwargs.

Two code bases pickle the same StyleGAN2 networks with different kwargs:

- stylegan2-ada-pytorch (`training/networks.py`): `Generator(..., mapping_kwargs={},
  synthesis_kwargs={})`;
- stylegan3 (`training/networks_stylegan2.py`, NVIDIA's current `stylegan2-*.pkl`):
  `Generator(..., mapping_kwargs={}, **synthesis_kwargs)`, so the synthesis arguments sit
  at the top level, with other defaults (conv_clamp 256, w_avg_beta 0.998) and a
  `fused_modconv_default` that only picks how the same function is computed.

Every kwarg is either mapped, accepted because it does not change the function (fp16
settings: imported networks compute in float32; training-only settings), or refused
with its name and value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from stylegan_jax import shapes
from stylegan_jax.convert.safe_pickle import short_repr
from stylegan_jax.models import stylegan2

ADA, STYLEGAN3 = "stylegan2-ada-pytorch", "stylegan3"
CODE_BASES = (ADA, STYLEGAN3)

_DIMS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
# Official defaults that differ between the code bases (the rest are shared).
_G_DEFAULTS = {ADA: {"conv_clamp": None, "w_avg_beta": 0.995},
               STYLEGAN3: {"conv_clamp": 256, "w_avg_beta": 0.998}}
_D_CONV_CLAMP = {ADA: None, STYLEGAN3: 256}
# StyleGAN3's alias-free generator (training/networks_stylegan3.py) has these.
_ALIAS_FREE = frozenset({
    "magnitude_ema_beta", "num_critical", "first_cutoff", "first_stopband",
    "last_stopband_rel", "margin_size", "output_scale", "conv_kernel", "filter_size",
    "lrelu_upsampling", "use_radial_filters", "num_layers",
})
_FUSED_MODCONV = (True, False, "inference_only")


class ConversionError(ValueError):
    """A state dict or pickle that does not describe the expected official network."""


# Far above any official network; a pickle's value beyond it would only size huge arrays.
_MAX_INT = 2**20


def _int(value: Any, name: str, low: int = 0) -> int:
    """An official integer kwarg (a pickle may hold anything there), or ConversionError."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    if (isinstance(value, bool) or not isinstance(value, int | np.integer)
            or not low <= value <= _MAX_INT):
        raise ConversionError(f"{name}={short_repr(value)} is not an integer in "
                              f"[{low}, {_MAX_INT}]")
    return int(value)


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConversionError(f"{name}={short_repr(value)} is not a number")
    return float(value)


def _kwargs(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConversionError(f"{name} is a {type(value).__name__}, expected a dict")
    return dict(value)


def has_top_level_synthesis(init_kwargs: Mapping[str, Any]) -> bool:
    """True when Generator kwargs are in the stylegan3 code base's layout."""
    own = {*_DIMS, "mapping_kwargs", "synthesis_kwargs", "epochs"}
    return any(k not in own for k in init_kwargs)


def generator_kwargs(init_kwargs: Mapping[str, Any], code_base: str | None = None
                     ) -> dict[str, Any]:
    """Our `Generator` kwargs from the official `Generator(...)` constructor kwargs.

    `code_base` picks the official defaults; None tells it from the kwargs' layout.
    """
    kw = _kwargs(init_kwargs, "Generator kwargs")
    mapping = _kwargs(kw.pop("mapping_kwargs", {}), "mapping_kwargs")
    top = has_top_level_synthesis(kw)
    if code_base is None:
        code_base = STYLEGAN3 if top else ADA
    if code_base not in CODE_BASES:
        raise ValueError(f"code_base must be one of {CODE_BASES}, got {code_base!r}")
    if "synthesis_kwargs" in kw and code_base == STYLEGAN3:
        raise ConversionError("Generator kwargs hold synthesis_kwargs, but the stylegan3 "
                              "code base's Generator takes them as top-level arguments")
    synthesis = _kwargs(kw.pop("synthesis_kwargs", {}), "synthesis_kwargs")
    out = {k: _int(kw.pop(k), k, low=int(k != "c_dim")) for k in _DIMS if k in kw}
    missing = set(_DIMS) - set(out)
    if missing:
        raise ConversionError(f"Generator kwargs lack {sorted(missing)}")
    kw.pop("epochs", None)
    if code_base == STYLEGAN3:
        synthesis, kw = kw, {}
        alias_free = sorted(_ALIAS_FREE & set(synthesis))
        if alias_free:
            raise ConversionError(
                f"Generator kwargs {alias_free} belong to StyleGAN3's alias-free generator "
                "(networks_stylegan3.py), which is not supported; only the stylegan3 code "
                "base's StyleGAN2 networks (networks_stylegan2.py) are")
        fused = synthesis.pop("fused_modconv_default", True)
        if not any(fused is v or fused == v for v in _FUSED_MODCONV):
            raise ConversionError(f"fused_modconv_default={short_repr(fused)} is not one of "
                                  f"{_FUSED_MODCONV}")
    if kw:
        raise ConversionError(f"unexpected Generator kwargs {short_repr(sorted(map(str, kw)))}")
    defaults = _G_DEFAULTS[code_base]
    out["mapping_layers"] = _int(mapping.pop("num_layers", 8), "mapping_kwargs.num_layers")
    out["mapping_lr_multiplier"] = _real(mapping.pop("lr_multiplier", 0.01),
                                         "mapping_kwargs.lr_multiplier")
    out["w_avg_beta"] = _real(mapping.pop("w_avg_beta", defaults["w_avg_beta"]),
                              "mapping_kwargs.w_avg_beta")
    _reject_unsupported("mapping_kwargs", mapping, {"activation": "lrelu"},
                        {"embed_features": None, "layer_features": None})
    out["channel_base"] = _int(synthesis.pop("channel_base", 32768), "channel_base")
    out["channel_max"] = _int(synthesis.pop("channel_max", 512), "channel_max")
    out["architecture"] = synthesis.pop("architecture", "skip")
    clamp = synthesis.pop("conv_clamp", defaults["conv_clamp"])
    out["conv_clamp"] = None if clamp is None else _real(clamp, "conv_clamp")
    synthesis.pop("num_fp16_res", None)  # imported networks compute in float32
    synthesis.pop("fp16_channels_last", None)
    field = "synthesis_kwargs" if code_base == ADA else "Generator"
    _reject_unsupported(field, synthesis, {"resample_filter": [1, 3, 3, 1],
                        "use_noise": True, "activation": "lrelu", "kernel_size": 3}, {})
    stylegan2.check_architecture(out["architecture"], f"{field}.architecture")
    stylegan2.check_resolution(out["img_resolution"])
    return out


def discriminator_kwargs(init_kwargs: Mapping[str, Any], code_base: str = ADA
                         ) -> dict[str, Any]:
    """Our `Discriminator` kwargs from the official `Discriminator(...)` kwargs.

    Both code bases use one layout; `code_base` picks the official conv_clamp default.
    """
    if code_base not in CODE_BASES:
        raise ValueError(f"code_base must be one of {CODE_BASES}, got {code_base!r}")
    kw = _kwargs(init_kwargs, "Discriminator kwargs")
    epilogue = _kwargs(kw.pop("epilogue_kwargs", {}), "epilogue_kwargs")
    mapping = _kwargs(kw.pop("mapping_kwargs", {}), "mapping_kwargs")
    block = _kwargs(kw.pop("block_kwargs", {}), "block_kwargs")
    out = {}
    for k in ("c_dim", "img_resolution", "img_channels"):
        if k not in kw:
            raise ConversionError(f"Discriminator kwargs lack {k!r}")
        out[k] = _int(kw.pop(k), k, low=int(k != "c_dim"))
    out["architecture"] = kw.pop("architecture", "resnet")
    out["channel_base"] = _int(kw.pop("channel_base", 32768), "channel_base")
    out["channel_max"] = _int(kw.pop("channel_max", 512), "channel_max")
    clamp = kw.pop("conv_clamp", _D_CONV_CLAMP[code_base])
    out["conv_clamp"] = None if clamp is None else _real(clamp, "conv_clamp")
    cmap = kw.pop("cmap_dim", None)
    out["cmap_dim"] = None if cmap is None else _int(cmap, "cmap_dim")
    kw.pop("num_fp16_res", None)
    group = epilogue.pop("mbstd_group_size", 4)
    out["mbstd_group_size"] = (None if group is None
                               else _int(group, "epilogue_kwargs.mbstd_group_size"))
    out["mbstd_num_channels"] = _int(epilogue.pop("mbstd_num_channels", 1),
                                     "epilogue_kwargs.mbstd_num_channels")
    out["mapping_layers"] = _int(mapping.pop("num_layers", 8), "mapping_kwargs.num_layers")
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
        raise ConversionError(f"unexpected Discriminator kwargs "
                              f"{short_repr(sorted(map(str, kw)))}")
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
                f"{field}.{key}={short_repr(value)} is not supported (only {expected!r})"
            )
        raise ConversionError(f"unexpected {field}.{key}={short_repr(value)}")


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    return a == b


def official_init_kwargs(module, what: str = "network") -> dict[str, Any]:
    """The stylegan2-ada-pytorch constructor kwargs that rebuild `module`; ValueError for
    a W x H network (`img_aspect` other than (1, 1)), which no official format can hold."""
    if isinstance(module, stylegan2.Generator | stylegan2.Discriminator):
        shapes.require_square(module.img_resolution, module.img_aspect, what,
                              "the official StyleGAN2 formats")
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
