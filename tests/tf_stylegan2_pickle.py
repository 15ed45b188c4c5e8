"""Writes NVIDIA's TensorFlow StyleGAN2 pickles from PyTorch reference state dicts (a test helper).

The inverse of the official mapping, written from the official TF code
(NVlabs/stylegan2 `training/networks_stylegan2.py`, NVlabs/stylegan2-ada
`training/networks.py`) independently of stylegan_jax/convert: TF keeps dense weights
as [in, out] and conv weights as HWIO; its `upsample_conv_2d` flips the kernel before a
transposed convolution, so an up-sampling kernel is stored flipped relative to
PyTorch's; the style affine's bias is stored without the + 1 that TF adds after it; the
constant input is [1, C, 4, 4] and noise<i> [1, 1, H, W], i counting the layers from 4x4.
"""

from __future__ import annotations

import re

import numpy as np
import tf_pickle as tp

ORIGINAL, ADA = "stylegan2", "stylegan2-ada"
# (synthesis build function, discriminator build function, Network state version)
FUNCS = {ORIGINAL: ("G_synthesis_stylegan2", "D_stylegan2", 4),
         ADA: ("G_synthesis", "D_main", 5)}


def _dense(w):
    return np.ascontiguousarray(w.T)


def _conv(w):
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _up_conv(w):
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0)[::-1, ::-1])


def _same(v):
    return v


def _noise(r: int, layer: str) -> int:
    return 0 if r == 4 else 2 * (r.bit_length() - 1) - (5 if layer == "conv0" else 4)


def generator_variables(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch Generator state dict -> TF variables (`G_mapping/...`, `G_synthesis/...`)."""
    out = {}
    for name, v in state.items():
        v = np.asarray(v, np.float32)
        parts = name.split(".")
        if parts[-1] == "resample_filter":
            continue
        if name == "mapping.w_avg":
            out["dlatent_avg"] = v
        elif parts[0] == "mapping":
            scope = "LabelEmbed" if parts[1] == "embed" else "Dense" + parts[1][2:]
            out[f"G_mapping/{scope}/{parts[2]}"] = _dense(v) if parts[2] == "weight" else v
        elif name == "synthesis.b4.const":
            out["G_synthesis/4x4/Const/const"] = v[None]
        else:
            r, layer, leaf = int(parts[1][1:]), parts[2], ".".join(parts[3:])
            scope = {"conv0": "Conv0_up", "conv1": "Conv" if r == 4 else "Conv1",
                     "torgb": "ToRGB", "skip": "Skip"}[layer]
            prefix = f"G_synthesis/{r}x{r}/{scope}/"
            if leaf == "noise_const":
                out[f"G_synthesis/noise{_noise(r, layer)}"] = v[None, None]
            elif leaf == "weight":
                flip = layer in ("conv0", "skip")
                out[prefix + "weight"] = _up_conv(v) if flip else _conv(v)
            elif leaf == "affine.weight":
                out[prefix + "mod_weight"] = _dense(v)
            elif leaf == "affine.bias":
                out[prefix + "mod_bias"] = v - 1
            else:  # bias, noise_strength
                out[prefix + leaf] = v
    return out


_D_SCOPES = {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down", "skip": "Skip",
             "conv": "Conv", "fc": "Dense0"}


def discriminator_variables(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch Discriminator state dict -> TF variables (no kernel flips: TF's down-sampling
    conv is a plain strided conv)."""
    out = {}
    for name, v in state.items():
        v = np.asarray(v, np.float32)
        parts = name.split(".")
        if parts[-1] == "resample_filter":
            continue
        m = re.fullmatch(r"mapping\.(embed|fc(\d+))", ".".join(parts[:-1]))
        if m:
            scope, dense = ("LabelEmbed" if m[1] == "embed" else f"Mapping{m[2]}"), True
        elif parts[:2] == ["b4", "out"]:
            scope, dense = "Output", True
        else:
            r = int(parts[0][1:])
            scope, dense = f"{r}x{r}/{_D_SCOPES[parts[1]]}", parts[1] == "fc"
        leaf = parts[-1]
        out[f"{scope}/{leaf}"] = v if leaf == "bias" else (_dense(v) if dense else _conv(v))
    return out


def static_kwargs(meta: dict, code_base: str) -> tuple[dict, dict]:
    """(G_main, discriminator) static kwargs of the network the reference meta describes.

    Includes runtime kwargs official pickles carry (truncation_psi, ...).
    """
    g = dict(latent_size=meta["z_dim"], label_size=meta["c_dim"], dlatent_size=meta["w_dim"],
             num_channels=meta["img_channels"], resolution=meta["img_resolution"],
             mapping_layers=meta["mapping_layers"], fmap_base=meta["channel_base"] // 2,
             fmap_max=meta["channel_max"], architecture=meta["g_architecture"],
             truncation_psi=0.5, fused_modconv=code_base == ORIGINAL)
    d = dict(num_channels=meta["img_channels"], resolution=meta["img_resolution"],
             label_size=meta["c_dim"], fmap_base=meta["channel_base"] // 2,
             fmap_max=meta["channel_max"], architecture=meta["d_architecture"],
             mbstd_group_size=meta["mbstd_group_size"],
             mbstd_num_features=meta.get("mbstd_num_channels", 1))
    if code_base == ORIGINAL:  # its mapping layers default to 512 features
        g.update(mapping_fmaps=meta["w_dim"])
    if code_base == ADA:
        g.update(conv_clamp=meta["conv_clamp"], num_fp16_res=0)
        d.update(conv_clamp=meta["conv_clamp"], num_fp16_res=0)
        if meta["c_dim"]:
            # stylegan2-ada-pytorch's defaults: embedding of w_dim features; D's label
            # mapping of 8 layers at lr multiplier 0.01.
            g.update(label_fmaps=meta["w_dim"])
            d.update(mapping_layers=8, mapping_lrmul=0.01)
    return g, d


def networks(meta: dict, G_state: dict, D_state: dict, code_base: str, g_kwargs=None,
             d_kwargs=None):
    """(G, D, Gs) NetworkObjects in the layout of `code_base`'s pickles."""
    synthesis_func, d_func, version = FUNCS[code_base]
    gk, dk = static_kwargs(meta, code_base)
    gk.update(g_kwargs or {})
    dk.update(d_kwargs or {})
    G_vars, D_vars = generator_variables(G_state), discriminator_variables(D_state)
    own = {k: v for k, v in G_vars.items() if "/" not in k}
    num_ws = 2 * (meta["img_resolution"].bit_length() - 1) - 2
    runtime = ("truncation_psi",)
    comp_kwargs = {k: v for k, v in gk.items() if k not in runtime}

    def net(name, func, kwargs, variables, components=None, lod=False):
        obj = tp.network(name, func, kwargs, variables, components, version=version, lod=lod)
        if version >= 5:  # StyleGAN2-ADA's state also records its inputs and outputs
            obj.state.update(input_shapes=[[None, 1]], output_shapes=[[None, 1]],
                             input_names=["in"], output_names=["out"])
        return obj

    def make_g(name):
        sub = lambda p: {k[len(p):]: v for k, v in G_vars.items() if k.startswith(p)}  # noqa: E731
        synthesis = net("G_synthesis", synthesis_func, comp_kwargs, sub("G_synthesis/"))
        mapping = net("G_mapping", "G_mapping", dict(comp_kwargs, dlatent_broadcast=num_ws),
                      sub("G_mapping/"))
        # NVlabs/stylegan2's G_main keeps a `lod` variable; the ADA one does not.
        return net(name, "G_main", gk, own, {"synthesis": synthesis, "mapping": mapping},
                   lod=code_base == ORIGINAL)

    return make_g("G"), net("D", d_func, dk, D_vars), make_g("Gs")
