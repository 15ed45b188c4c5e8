"""Writes pickles in the layout of NVIDIA's TensorFlow network pickles (a test helper).

An independent writer of the format the reader parses: the file holds the tuple
(G, D, Gs); each network is an instance of `dnnlib.tflib.network.Network` (or, from the
original ProGAN code, `tfutil.Network`) pickled through its `__getstate__` dict
(NEWOBJ + BUILD, or `copy_reg._reconstructor` below protocol 2), with `version`,
`name`, `static_kwargs`, `components` (version 3), `build_module_src`,
`build_func_name` and `variables` = [(name, value)], values as numpy pickles them
(`numpy.core.multiarray._reconstruct` arrays, `scalar` for 0-d variables).
"""

from __future__ import annotations

import pickle

import numpy as np
from official_pickle import Call, Global

DNNLIB = "dnnlib.tflib.network"
TFUTIL = "tfutil"
SOURCE = "import tensorflow as tf\n\ndef {func}(*args, **kwargs):\n    raise NotImplementedError\n"


class NetworkObject:
    """Pickled as an instance of `<module>.Network` whose state is `state`."""

    def __init__(self, state: dict, module: str = DNNLIB):
        self.state, self.module = state, module


def network(name: str, func: str, static_kwargs: dict, variables: dict, components=None,
            module: str = DNNLIB, source: str | None = None, version: int | None = None,
            lod: bool = True) -> NetworkObject:
    """A Network as the official `__getstate__` returns it (with a `lod` variable if `lod`).

    `version`: 3 (StyleGAN, default for dnnlib), 4 (StyleGAN2), 5 (StyleGAN2-ADA).
    """
    items = [("lod", np.float32(0.0))] if lod else []
    items += [(k, np.asarray(v)) for k, v in variables.items()]
    state = {"version": version or (3 if module == DNNLIB else 2), "name": name,
             "static_kwargs": dict(static_kwargs)}
    if module == DNNLIB:
        state["components"] = dict(components or {})
    state["build_module_src"] = SOURCE.format(func=func) if source is None else source
    state["build_func_name"] = func
    state["variables"] = items
    return NetworkObject(state, module)


def _strip(named: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in named.items() if k.startswith(prefix)}


def networks_for(meta: dict, G_vars: dict, D_vars: dict, legacy: bool = False):
    """(G, D, Gs) of the official kind the reference meta describes.

    `G_vars` / `D_vars` are official variable names -> arrays (as the fixtures store
    them). StyleGAN's G gets `G_synthesis` and `G_mapping` components. `legacy`: the
    original ProGAN code's `tfutil.Network`, whose fused up-conv kernel is [k, k, out, in].
    """
    gk, dk = meta["G_kwargs"], meta["D_kwargs"]
    if meta["family"] == "progan":
        module = TFUTIL if legacy else DNNLIB
        if legacy:
            G_vars = {k: (v.transpose(0, 1, 3, 2) if k.endswith("Conv0_up/weight") else v)
                      for k, v in G_vars.items()}
        make_g = lambda name: network(name, "G_paper", gk, G_vars, module=module)  # noqa: E731
        D = network("D", "D_paper", dk, D_vars, module=module)
    else:
        own = {k: v for k, v in G_vars.items() if "/" not in k}
        num_layers = 2 * int(np.log2(gk["resolution"])) - 2

        def make_g(name):
            synthesis = network("G_synthesis", "G_synthesis", gk, _strip(G_vars, "G_synthesis/"))
            mapping = network("G_mapping", "G_mapping", dict(gk, dlatent_broadcast=num_layers),
                              _strip(G_vars, "G_mapping/"))
            return network(name, "G_style", gk, own,
                           components={"synthesis": synthesis, "mapping": mapping})

        D = network("D", "D_basic", dk, D_vars)
    return make_g("G"), D, make_g("Gs")


class _Pickler(pickle._Pickler):
    """Pure-Python pickler writing our stand-ins as the official globals and objects."""

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            if self.proto >= 4:
                self.save(obj.module)
                self.save(obj.name)
                self.write(pickle.STACK_GLOBAL)
            else:
                self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        if isinstance(obj, Call):
            self.save(obj.func)
            self.save(tuple(obj.args))
            self.write(pickle.REDUCE)
            return
        if isinstance(obj, NetworkObject):
            cls = Global(obj.module, "Network")
            if self.proto >= 2:
                self.save(cls)
                self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
            else:
                self.save(Call(Global("copy_reg", "_reconstructor"), cls,
                               Global("__builtin__", "object"), None))
            self.save(obj.state)
            self.write(pickle.BUILD)
            return
        if isinstance(obj, np.ndarray):
            self.save(Call(Global("numpy.core.multiarray", "_reconstruct"),
                           Global("numpy", "ndarray"), (0,), b"b"))
            a = np.require(obj, requirements="C")
            self.save((1, a.shape, a.dtype, False, a.tobytes()))
            self.write(pickle.BUILD)
            return
        if isinstance(obj, np.generic):
            self.save(Call(Global("numpy.core.multiarray", "scalar"), obj.dtype, obj.tobytes()))
            return
        return super().save(obj, save_persistent_id)


def dump(obj, path, protocol: int = 4) -> None:
    """Pickles `obj` (tuples of NetworkObjects, Globals, Calls, arrays, plain data)."""
    with open(path, "wb") as f:
        _Pickler(f, protocol).dump(obj)
