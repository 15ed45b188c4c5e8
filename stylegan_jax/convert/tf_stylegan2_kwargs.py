"""Kwargs of NVIDIA's TensorFlow StyleGAN2 networks -> our `stylegan2` module kwargs.

The build functions name the code base (NVlabs/stylegan2: `G_synthesis_stylegan2` +
`D_stylegan2`; NVlabs/stylegan2-ada TF: `G_synthesis` + `D_main`), which fixes the
defaults of the kwargs a pickle leaves out. Every kwarg is mapped, accepted because it
does not change the function the network computes, or refused with its name and value.
`nf(stage) = fmap_base / 2**stage` feature maps at resolution 2**(stage + 1), so
channel_base = 2 * fmap_base; fmap_decay / fmap_min are checked stage by stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stylegan_jax.convert.pickle_reader import TFNetwork
from stylegan_jax.convert.safe_pickle import plain_value, short_repr
from stylegan_jax.models import stylegan2


class ConversionError(ValueError):
    """TF network state that does not describe a supported StyleGAN2 network."""


@dataclass(frozen=True)
class CodeBase:
    """One TF code base: its build functions and the defaults of their kwargs."""

    name: str
    synthesis: str
    discriminator: str
    g_defaults: Mapping[str, Any]
    d_defaults: Mapping[str, Any]


_FILTER = [1, 3, 3, 1]
_G_COMMON = dict(
    latent_size=512, label_size=0, dlatent_size=512, mapping_layers=8, mapping_lrmul=0.01,
    mapping_nonlinearity="lrelu", normalize_latents=True, dtype="float32", num_channels=3,
    resolution=1024, fmap_decay=1.0, fmap_min=1, fmap_max=512, architecture="skip",
    nonlinearity="lrelu", resample_kernel=_FILTER, dlatent_avg_beta=0.995,
    mapping_func="G_mapping",
)
_D_COMMON = dict(
    num_channels=3, resolution=1024, label_size=0, fmap_decay=1.0, fmap_min=1,
    fmap_max=512, architecture="resnet", nonlinearity="lrelu", mbstd_num_features=1,
    dtype="float32", resample_kernel=_FILTER,
)
STYLEGAN2 = CodeBase(
    "NVlabs/stylegan2", "G_synthesis_stylegan2", "D_stylegan2",
    dict(_G_COMMON, mapping_fmaps=512, fmap_base=16 << 10, fused_modconv=True,
         synthesis_func="G_synthesis_stylegan2"),
    dict(_D_COMMON, fmap_base=16 << 10, mbstd_group_size=4),
)
STYLEGAN2_ADA = CodeBase(
    "NVlabs/stylegan2-ada", "G_synthesis", "D_main",
    dict(_G_COMMON, mapping_fmaps=None, label_fmaps=None, fmap_base=16384, fmap_const=None,
         use_noise=True, num_fp16_res=0, conv_clamp=None, fused_modconv=False,
         synthesis_func="G_synthesis"),
    dict(_D_COMMON, fmap_base=16384, mapping_layers=0, mapping_fmaps=None, mapping_lrmul=0.1,
         mbstd_group_size=None, num_fp16_res=0, conv_clamp=None, augment_strength=0,
         use_pagan=False, pagan_num=16, pagan_fade=0.5, score_size=1, score_max=1,
         use_spectral_norm=False, adaptive_dropout=0, freeze_layers=0),
)
CODE_BASES = (STYLEGAN2, STYLEGAN2_ADA)
PROGRESSIVE = ("G_synthesis_stylegan_revised", "D_stylegan")

# Kwargs that choose how the official code evaluates or trains, not what it computes:
# fused_modconv (one grouped conv or scaled activations: the same function),
# num_fp16_res (imported networks compute in float32), freeze_layers (Freeze-D).
_RUNTIME = frozenset({
    "truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val",
    "style_mixing_prob", "is_training", "is_validation", "return_dlatents",
    "is_template_graph", "force_clean_graph", "randomize_noise", "structure",
    "fused_modconv", "num_fp16_res", "freeze_layers",
})
# Kwargs whose only supported value is the official default (the value they must have).
_FIXED = {"mapping_nonlinearity": "lrelu", "nonlinearity": "lrelu", "normalize_latents": True,
          "dtype": "float32", "use_noise": True, "use_pagan": False, "score_size": 1,
          "score_max": 1, "use_spectral_norm": False, "adaptive_dropout": 0}
# Used only by the features _FIXED switches off (PA-GAN, adaptive dropout).
_UNUSED = frozenset({"augment_strength", "pagan_num", "pagan_fade"})


def is_stylegan2(build_func_name: str) -> bool:
    """True for the TF StyleGAN2 generator's build function (`G_main`)."""
    return build_func_name == "G_main"


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _read_kwargs(given: Mapping[str, Any], defaults: Mapping[str, Any], func: str,
                 where: str) -> dict[str, Any]:
    """Official defaults overridden by `given`; unknown or unsupported kwargs raise."""
    kw = dict(defaults)
    for key, value in given.items():
        if key in _RUNTIME or key in _UNUSED:
            continue
        value = _plain(plain_value(value, f"{where}: {func} kwarg {short_repr(key)}"))
        if key not in defaults:
            raise ConversionError(f"{where}: unexpected {func} kwarg {key}={short_repr(value)}")
        if key in _FIXED and value != _FIXED[key]:
            raise ConversionError(f"{where}: {func} kwarg {key}={short_repr(value)} is not "
                                  f"supported (only {_FIXED[key]!r})")
        kw[key] = value
    if kw["resample_kernel"] != _FILTER:
        raise ConversionError(f"{where}: {func} kwarg resample_kernel="
                              f"{short_repr(kw['resample_kernel'])} is not supported (only "
                              f"{_FILTER})")
    return kw


def _nf(kw: Mapping[str, Any], stage: int) -> int:
    """The official feature-map count of a stage (resolution 2**(stage + 1))."""
    n = int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"])))
    return int(np.clip(n, kw["fmap_min"], kw["fmap_max"]))


def _channels(kw: Mapping[str, Any], first_stage: int, func: str, where: str) -> dict:
    """channel_base / channel_max giving the official nf() at every stage, or raise."""
    base, cmax = int(round(2 * kw["fmap_base"])), int(kw["fmap_max"])
    log2 = stylegan2.check_resolution(int(kw["resolution"]), "resolution")
    ours = [stylegan2.channels_at(2 ** max(s + 1, 2), base, cmax)
            for s in range(first_stage, log2)]
    theirs = [_nf(kw, s) for s in range(first_stage, log2)]
    if ours != theirs:
        raise ConversionError(
            f"{where}: {func} with fmap_base={kw['fmap_base']}, fmap_decay={kw['fmap_decay']}, "
            f"fmap_min={kw['fmap_min']}, fmap_max={kw['fmap_max']} has {theirs} feature maps "
            f"(stages {first_stage}..{log2 - 1}); a StyleGAN2 network has {ours}")
    return {"channel_base": base, "channel_max": cmax}


def code_base_of(G: TFNetwork, D: TFNetwork, where: str) -> CodeBase:
    """The code base of a (G_main, discriminator) pair, from its build functions."""
    comps = G.components
    names = {key: comp.build_func_name for key, comp in comps.items()}
    if sorted(names) != ["mapping", "synthesis"]:
        raise ConversionError(f"{where}: G_main has components {sorted(names)}, expected "
                              "['mapping', 'synthesis']")
    synthesis, disc = names["synthesis"], D.build_func_name
    if synthesis in PROGRESSIVE or disc in PROGRESSIVE:
        raise ConversionError(
            f"{where}: {synthesis} / {disc} are the progressively grown StyleGAN2 configs "
            "B-D, which are not supported (configs E-F and StyleGAN2-ADA are)")
    for base in CODE_BASES:
        if (synthesis, disc) == (base.synthesis, base.discriminator):
            if names["mapping"] != "G_mapping":
                raise ConversionError(f"{where}: mapping build function "
                                      f"{names['mapping']!r}, expected 'G_mapping'")
            return base
    known = [(b.synthesis, b.discriminator) for b in CODE_BASES]
    raise ConversionError(f"{where}: synthesis / discriminator build functions "
                          f"{(synthesis, disc)} are not one of {known}")


def _generator_static_kwargs(G: TFNetwork, where: str) -> dict[str, Any]:
    """G_main's kwargs merged with its components' (which the official code builds from)."""
    merged = dict(G.static_kwargs)
    for key, comp in G.components.items():
        for k, v in comp.static_kwargs.items():
            if k == "dlatent_broadcast":
                continue
            if k in merged and _plain(merged[k]) != _plain(v):
                raise ConversionError(f"{where}: component {key} has {k}={_plain(v)!r}, "
                                      f"G_main has {_plain(merged[k])!r}")
            merged[k] = v
    return merged


def generator_kwargs(G: TFNetwork, base: CodeBase, where: str = "G") -> dict[str, Any]:
    """Our `stylegan2.Generator` kwargs for a pickled TF `G_main`."""
    kw = _read_kwargs(_generator_static_kwargs(G, where), base.g_defaults, "G_main", where)
    for key, comp in (("synthesis_func", base.synthesis), ("mapping_func", "G_mapping")):
        if kw[key] != comp:
            raise ConversionError(f"{where}: G_main kwarg {key}={kw[key]!r} names another "
                                  f"network than its component {comp!r}")
    w_dim, labels = int(kw["dlatent_size"]), int(kw["label_size"])
    if labels and base is STYLEGAN2:
        raise ConversionError(
            f"{where}: label_size={labels}: NVlabs/stylegan2's G_mapping concatenates raw "
            "label embeddings before normalising (LabelConcat); only StyleGAN2-ADA's label "
            "embedding is supported")
    hidden = w_dim if kw["mapping_fmaps"] is None else int(kw["mapping_fmaps"])
    if kw["mapping_layers"] > 1 and hidden != w_dim:
        raise ConversionError(f"{where}: mapping_fmaps={hidden} differs from dlatent_size="
                              f"{w_dim}; not supported")
    if labels:
        embed = kw["label_fmaps"] if kw["label_fmaps"] is not None else kw["latent_size"]
        if int(embed) != w_dim:
            raise ConversionError(f"{where}: label embedding of {embed} features "
                                  f"(label_fmaps / latent_size) differs from dlatent_size="
                                  f"{w_dim}; not supported")
    channels = _channels(kw, 1, "G_synthesis", where)
    if kw.get("fmap_const") not in (None, _nf(kw, 1)):
        raise ConversionError(f"{where}: fmap_const={kw['fmap_const']} differs from the "
                              f"4x4 feature maps {_nf(kw, 1)}; not supported")
    beta = kw["dlatent_avg_beta"]
    clamp = kw.get("conv_clamp")
    out = dict(
        z_dim=int(kw["latent_size"]), c_dim=labels, w_dim=w_dim,
        img_resolution=int(kw["resolution"]), img_channels=int(kw["num_channels"]),
        mapping_layers=int(kw["mapping_layers"]),
        mapping_lr_multiplier=float(kw["mapping_lrmul"]),
        # None / 1 = not tracked; the stored dlatent_avg stays as it is either way.
        w_avg_beta=1.0 if beta is None else float(beta),
        architecture=kw["architecture"], conv_clamp=None if clamp is None else float(clamp),
        **channels,
    )
    stylegan2.check_architecture(out["architecture"], f"{where}: architecture")
    return out


def discriminator_kwargs(D: TFNetwork, base: CodeBase, where: str = "D") -> dict[str, Any]:
    """Our `stylegan2.Discriminator` kwargs for a pickled TF `D_stylegan2` / `D_main`."""
    func = base.discriminator
    kw = _read_kwargs(D.static_kwargs, base.d_defaults, func, where)
    labels = int(kw["label_size"])
    if labels and base is STYLEGAN2:
        raise ConversionError(
            f"{where}: label_size={labels}: NVlabs/stylegan2's D_stylegan2 projects scores "
            "onto the raw labels; only StyleGAN2-ADA's label mapping is supported")
    channels = _channels(kw, 0, func, where)
    group, features = kw["mbstd_group_size"], int(kw["mbstd_num_features"])
    if base is STYLEGAN2:
        if group is None:
            raise ConversionError(f"{where}: D_stylegan2 kwarg mbstd_group_size=None is "
                                  "not valid (an int; <= 1 disables the layer)")
        if group <= 1:  # D_stylegan2 appends the layer only for groups > 1
            features = 0
    out = dict(c_dim=labels, img_resolution=int(kw["resolution"]),
               img_channels=int(kw["num_channels"]), architecture=kw["architecture"],
               mbstd_group_size=None if group is None else int(group),
               mbstd_num_channels=features, **channels)
    if base is STYLEGAN2_ADA:
        clamp = kw["conv_clamp"]
        out["conv_clamp"] = None if clamp is None else float(clamp)
        layers = int(kw["mapping_layers"])
        if labels and layers and kw["mapping_lrmul"] != 0.01:
            raise ConversionError(
                f"{where}: D_main kwarg mapping_lrmul={kw['mapping_lrmul']} with "
                f"mapping_layers={layers} is not supported (this Discriminator's label "
                "mapping runs at 0.01, as stylegan2-ada-pytorch's)")
        out["mapping_layers"] = layers
        if labels:
            fmaps = kw["mapping_fmaps"]
            out["cmap_dim"] = _nf(kw, 0) if fmaps is None else int(fmaps)
    stylegan2.check_architecture(out["architecture"], f"{where}: architecture")
    return out
