"""StableHLO artifacts: `jax.export` serialisation of a generator program with a symbolic
batch, lowered for every platform JAX runs on, so one file serves CPUs, GPUs and TPUs and
any batch size.

Reading one needs only jax (`jax.export.deserialize`); this module's `load` adds the
checks of export.json that `serve --exported` relies on.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from stylegan_jax.export.program import BATCH, Program

PAYLOAD = "generator.stablehlo"
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def abstract_args(program: Program) -> list[jax.ShapeDtypeStruct]:
    """The program's argument shapes with the batch dimension symbolic."""
    (batch,) = jax_export.symbolic_shape(BATCH)
    return [jax.ShapeDtypeStruct(tuple(batch if d == BATCH else d for d in t.shape),
                                 jnp.dtype(t.dtype)) for t in program.inputs]


def serialize(program: Program, platforms=PLATFORMS) -> bytes:
    exported = jax_export.export(jax.jit(program.fn), platforms=platforms)(
        *abstract_args(program))
    return bytes(exported.serialize())


def write(program: Program, directory: Path) -> dict:
    """Writes the payload into `directory`; what export.json should add about it."""
    (directory / PAYLOAD).write_bytes(serialize(program))
    return dict(payload=PAYLOAD, platforms=list(PLATFORMS))


def deserialize(path: Path) -> jax_export.Exported:
    try:
        return jax_export.deserialize(bytearray(path.read_bytes()))
    except Exception as e:  # flatbuffer and version errors have no common type
        raise ValueError(f"{path}: not a readable StableHLO artifact ({type(e).__name__}: "
                         f"{e})") from None


def load(directory: Path, manifest: dict):
    """A call of the artifact: named numpy inputs -> uint8 images (compiled per batch size
    on first use)."""
    run = jax.jit(deserialize(directory / manifest["payload"]).call)
    names = [t["name"] for t in manifest["inputs"]]

    def call(**inputs):
        return np.asarray(run(*(inputs[n] for n in names)))

    return call
