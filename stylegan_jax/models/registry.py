"""The family table: what each family's networks are, how they are called, how a config or a
stored record builds them.

Every part of the package that needs to know "which family is this network" asks here
(`family_of`), so adding a family is one entry, not a hunt through `isinstance` chains.

    models/registry.py   <- store/ (records), convert/, train/, serve/, generate, tools/
        progan.py · stylegan.py (ProGAN lineage)  stylegan2.py · stylegan3.py
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_jax import shapes
from stylegan_jax.models import progan, stylegan, stylegan2, stylegan3


@dataclasses.dataclass(frozen=True)
class Family:
    """How a family's generator is called, and what it can do.

    `w_space`: a mapping network to ws [N, num_ws, w_dim] (StyleGAN v1 and later);
    `lod`: progressively grown, takes a level of detail per call (ProGAN, StyleGAN v1);
    `noise` / `truncation`: per-layer noise inputs and truncation toward w_avg;
    `input_transform`: StyleGAN3's translatable, rotatable input;
    `batch_styles`: styles normalised over the batch (StyleGAN3), so an image is only
    reproducible rendered one per call.
    """

    name: str
    generator: type[nn.Module]
    discriminator: type[nn.Module]
    lineage: str  # the training loop: "stylegan2" (StyleGAN2-ADA, StyleGAN3) or "progressive"
    w_space: bool
    lod: bool
    noise: bool
    truncation: bool
    input_transform: bool = False
    batch_styles: bool = False

    def each_image_alone(self, G: nn.Module) -> nn.Module:
        """G computing every image of a batch as if it were rendered alone (StyleGAN3:
        styles normalised per image), in one batched program."""
        return G.clone(per_image_styles=True) if self.batch_styles else G

    def resolution(self, G: nn.Module) -> int:
        """The shorter side of G's images (the square network's resolution)."""
        return G.resolution if self.lod else G.img_resolution

    def image_shape(self, G: nn.Module) -> shapes.ImageShape:
        """G's full image shape (W x H): see `image_shape`."""
        return image_shape(G)

    def channels(self, G: nn.Module) -> int:
        return G.num_channels if self.lod else G.img_channels


FAMILIES: dict[str, Family] = {
    "stylegan2": Family("stylegan2", stylegan2.Generator, stylegan2.Discriminator, "stylegan2",
                        w_space=True, lod=False, noise=True, truncation=True),
    "stylegan3": Family("stylegan3", stylegan3.Generator, stylegan2.Discriminator, "stylegan2",
                        w_space=True, lod=False, noise=False, truncation=True,
                        input_transform=True, batch_styles=True),
    "stylegan": Family("stylegan", stylegan.Generator, stylegan.Discriminator, "progressive",
                       w_space=True, lod=True, noise=True, truncation=True),
    "progan": Family("progan", progan.Generator, progan.Discriminator, "progressive",
                     w_space=False, lod=True, noise=False, truncation=False),
}

# Stored class names (networks.json) -> classes.
CLASSES: dict[str, type[nn.Module]] = {
    "stylegan2.Generator": stylegan2.Generator,
    "stylegan2.Discriminator": stylegan2.Discriminator,
    "stylegan3.Generator": stylegan3.Generator,
    "stylegan.Generator": stylegan.Generator,
    "stylegan.Discriminator": stylegan.Discriminator,
    "progan.Generator": progan.Generator,
    "progan.Discriminator": progan.Discriminator,
}


def family_named(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"config.family={name!r}: expected one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def family_of(module: nn.Module) -> Family:
    """The family of a generator; TypeError for anything else."""
    for family in FAMILIES.values():
        if type(module) is family.generator:
            return family
    raise TypeError(f"expected a generator ({', '.join(sorted(FAMILIES))}), got "
                    f"{type(module).__name__}")


def is_generator(module: nn.Module) -> bool:
    return any(type(module) is f.generator for f in FAMILIES.values())


def image_shape(module: nn.Module) -> shapes.ImageShape:
    """The images a stored network (generator or discriminator) makes or judges: its
    resolution (the shorter side) stretched by its `img_aspect` (absent: square)."""
    if type(module) not in CLASSES.values():
        raise TypeError(f"no image shape for {type(module).__name__}: not a stored network")
    res = module.resolution if hasattr(module, "resolution") else module.img_resolution
    return shapes.ImageShape.of(res, getattr(module, "img_aspect", (1, 1)))


def family_label(module: nn.Module) -> str:
    """'stylegan2.Generator'-style name of any stored network class (for messages)."""
    return f"{type(module).__module__.rsplit('.', 1)[-1]}.{type(module).__name__}"


@dataclasses.dataclass
class Network:
    """A module definition with its variables (`params` and `buffers`).

    `lod` is the level of detail a progressively grown network was left at (the official
    ProGAN / StyleGAN v1 networks keep it as a variable; ours take it per call): 0 is full
    resolution, and a snapshot taken mid-growth renders as it did in training.
    """

    module: nn.Module
    variables: dict
    lod: float = 0.0

    @property
    def class_key(self) -> str:
        for key, cls in CLASSES.items():
            if type(self.module) is cls:
                return key
        raise TypeError(f"no stored class for {type(self.module).__name__}")


class Networks(NamedTuple):
    """The generator and discriminator modules a training config builds."""

    G: nn.Module
    D: nn.Module


def module_kwargs(module: nn.Module) -> dict[str, Any]:
    """The dataclass fields that define a module (no Flax bookkeeping).

    A square network leaves out `img_aspect` (1, 1), its default: its record stays the one
    earlier versions wrote and read.
    """
    kwargs = {f: getattr(module, f) for f in module.__dataclass_fields__
              if f not in ("parent", "name")}
    if "img_aspect" in kwargs and tuple(kwargs["img_aspect"]) == (1, 1):
        del kwargs["img_aspect"]
    return kwargs


def build_module(class_key: str, kwargs: dict[str, Any]) -> nn.Module:
    """A module from its stored class name and kwargs (as networks.json records them)."""
    if class_key not in CLASSES:
        raise ValueError(f"unknown network class {class_key!r}; expected one of {sorted(CLASSES)}")
    cls = CLASSES[class_key]
    known = set(cls.__dataclass_fields__) - {"parent", "name"}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"{class_key}: unknown kwargs {sorted(unknown)}")
    # JSON turns tuples (filter taps, img_aspect) into lists; modules need hashable fields.
    # Records older than a field (img_aspect) leave it at its default.
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})


def config_image_shape(data) -> shapes.ImageShape:
    """The images of a config's `data` section: `resolution` (the shorter side) with
    `aspect` (absent: square), or 'WxH' text in `resolution`."""
    res = data.resolution
    if isinstance(res, str) and not res.strip().isdigit():
        return shapes.parse_size(res, "config.data.resolution")
    try:
        return shapes.data_shape(data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"config.data.resolution={res!r} with config.data.aspect="
                         f"{data.get('aspect', None)!r}: {e}") from None


def stylegan2_networks(model_cfg, size, img_channels: int, c_dim: int,
                       family: str = "stylegan2", batch_size: int | None = None,
                       axis_name: str | None = None) -> Networks:
    """Generator and discriminator of the StyleGAN2 lineage from a config's `model` section.

    `size`: the images (an int R, 'WxH' text or a shapes.ImageShape, such as
    `config_image_shape(config.data)`); W x H builds the square network of the shorter side
    stretched by its aspect. StyleGAN3 (`family='stylegan3'`) pairs the
    alias-free generator with this discriminator, as officially; its magnitude EMA halves
    every `magnitude_ema_kimg` kimg of the global `batch_size` (official beta
    0.5 ** (batch / 20000)).
    """
    if not isinstance(size, shapes.ImageShape):
        size = shapes.parse_size(size, "config.data.resolution")
    common = dict(img_resolution=size.resolution, img_channels=img_channels,
                  conv_clamp=model_cfg.conv_clamp, num_bf16_res=model_cfg.num_bf16_res)
    d_channels = dict(channel_base=model_cfg.channel_base, channel_max=model_cfg.channel_max)
    if family == "stylegan3":
        if batch_size is None:
            raise ValueError("a StyleGAN3 generator's magnitude EMA needs the batch size")
        scale = model_cfg.g_channel_multiplier
        G = stylegan3.Generator(
            z_dim=model_cfg.z_dim, c_dim=c_dim, w_dim=model_cfg.w_dim,
            mapping_layers=model_cfg.mapping_layers, channel_base=model_cfg.channel_base * scale,
            channel_max=model_cfg.channel_max * scale, num_layers=model_cfg.num_layers,
            conv_kernel=model_cfg.conv_kernel, use_radial_filters=model_cfg.use_radial_filters,
            magnitude_ema_beta=0.5 ** (batch_size / (model_cfg.magnitude_ema_kimg * 1000)),
            axis_name=axis_name, img_aspect=size.aspect, **common)
    else:
        G = stylegan2.Generator(z_dim=model_cfg.z_dim, c_dim=c_dim, w_dim=model_cfg.w_dim,
                                mapping_layers=model_cfg.mapping_layers,
                                architecture=model_cfg.g_architecture, axis_name=axis_name,
                                remat_resolution=model_cfg.get("remat_resolution", 0),
                                img_aspect=size.aspect, **d_channels, **common)
    D = stylegan2.Discriminator(c_dim=c_dim, architecture=model_cfg.d_architecture,
                                mbstd_group_size=model_cfg.mbstd_group_size,
                                mbstd_num_channels=model_cfg.mbstd_num_channels,
                                remat_resolution=model_cfg.get("remat_resolution", 0),
                                img_aspect=size.aspect, **d_channels, **common)
    return Networks(G, D)


def parse_fused_scale(value):
    """Config strings 'True'/'False' (a command-line override) -> the official bools."""
    return {"true": True, "false": False}.get(str(value).lower(), value)


def progressive_networks(config, c_dim: int, axis_name: str | None = None) -> Networks:
    """G and D of a ProGAN / StyleGAN v1 config, with the official kwargs from `config.model`."""
    m, ch = config.model, config.data.channels
    size = config_image_shape(config.data)
    res = size.resolution
    fmaps = dict(fmap_base=m.fmap_base, fmap_decay=float(m.fmap_decay), fmap_max=m.fmap_max)
    if config.family == "progan":
        G = progan.Generator(
            num_channels=ch, resolution=res, label_size=c_dim, latent_size=m.latent_size,
            normalize_latents=m.normalize_latents, use_pixelnorm=m.use_pixelnorm,
            pixelnorm_epsilon=float(m.pixelnorm_epsilon), use_leakyrelu=m.use_leakyrelu,
            fused_scale=parse_fused_scale(m.fused_scale),
            img_aspect=size.aspect, **fmaps)
        D = progan.Discriminator(num_channels=ch, resolution=res, label_size=c_dim,
                                 mbstd_group_size=m.mbstd_group_size,
                                 fused_scale=parse_fused_scale(m.fused_scale),
                                 img_aspect=size.aspect, **fmaps)
        return Networks(G, D)
    blur = None if not m.blur_filter else tuple(float(x) for x in m.blur_filter)
    G = stylegan.Generator(
        num_channels=ch, resolution=res, label_size=c_dim, latent_size=m.latent_size,
        dlatent_size=m.dlatent_size, mapping_layers=m.mapping_layers,
        mapping_fmaps=m.mapping_fmaps, mapping_lrmul=float(m.mapping_lrmul),
        mapping_nonlinearity=m.mapping_nonlinearity, normalize_latents=m.normalize_latents,
        use_noise=m.use_noise, nonlinearity=m.nonlinearity, use_pixel_norm=m.use_pixel_norm,
        use_instance_norm=m.use_instance_norm, fused_scale=parse_fused_scale(m.fused_scale),
        blur_filter=blur, dlatent_avg_beta=float(m.dlatent_avg_beta), axis_name=axis_name,
        img_aspect=size.aspect, **fmaps)
    D = stylegan.Discriminator(
        num_channels=ch, resolution=res, label_size=c_dim, nonlinearity=m.nonlinearity,
        mbstd_group_size=m.mbstd_group_size, mbstd_num_features=m.mbstd_num_features,
        fused_scale=parse_fused_scale(m.fused_scale), blur_filter=blur,
        img_aspect=size.aspect, **fmaps)
    return Networks(G, D)


def networks_from_config(config, c_dim: int, axis_name: str | None = None) -> Networks:
    """The G and D modules a training config (`config.family`, `.model`, `.data`) trains."""
    family = family_named(config.family)
    if family.lineage == "progressive":
        return progressive_networks(config, c_dim, axis_name)
    return stylegan2_networks(config.model, config_image_shape(config.data),
                              config.data.channels, c_dim, config.family,
                              config.train.batch_size, axis_name)


def random_generator(resolution: int = 32, channels: int = 3, seed: int = 0,
                     aspect: tuple[int, int] = (1, 1)) -> Network:
    """A small randomly initialised generator (for trying the tools before training);
    `aspect` (height, width multiples of `resolution`) makes it W x H."""
    G = stylegan2.Generator(
        z_dim=64, c_dim=0, w_dim=64, img_resolution=resolution, img_channels=channels,
        mapping_layers=2, channel_base=2048, channel_max=64, conv_clamp=256.0,
        img_aspect=shapes.check_aspect(aspect, "aspect"),
    )
    key = jax.random.PRNGKey(seed)
    variables = G.init({"params": key, "noise": key}, jnp.zeros((1, 64)), jnp.zeros((1, 0)))
    return Network(G, variables)
