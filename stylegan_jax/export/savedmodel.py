"""TensorFlow SavedModels: the generator program through jax2tf (native serialisation: the
StableHLO inside an XlaCallModule op), with a `serving_default` signature that TF Serving
serves and a batch dimension of None.

Inputs are the signature's named arguments (export.json lists them), the output is named
`images`. The embedded program is lowered for CPU, CUDA and TPU, as the StableHLO artifact.
"""

from __future__ import annotations

from pathlib import Path

from jax.experimental import jax2tf

from stylegan_jax.data.tf_runtime import import_tensorflow
from stylegan_jax.export.program import BATCH, Program
from stylegan_jax.export.stablehlo import PLATFORMS

tf = import_tensorflow()  # kept off the GPUs, which JAX owns

SIGNATURE = "serving_default"
OUTPUT = "images"


def _poly(shape) -> str:
    return "(" + ", ".join("b" if d == BATCH else str(d) for d in shape) + (
        ",)" if len(shape) == 1 else ")")


def write(program: Program, directory: Path, platforms=PLATFORMS) -> dict:
    converted = jax2tf.convert(program.fn, polymorphic_shapes=[_poly(t.shape)
                                                               for t in program.inputs],
                               with_gradient=False,
                               native_serialization_platforms=tuple(platforms))
    spec = [tf.TensorSpec([None if d == BATCH else d for d in t.shape], t.dtype, name=t.name)
            for t in program.inputs]
    module = tf.Module()
    module.generate = tf.function(lambda *arrays: {OUTPUT: converted(*arrays)},
                                  input_signature=spec, autograph=False)
    tf.saved_model.save(module, str(directory),
                        signatures={SIGNATURE: module.generate.get_concrete_function()})
    return dict(signature=SIGNATURE, output_key=OUTPUT, platforms=list(platforms))


def load(directory: Path, manifest: dict):
    """A call of the artifact: named numpy inputs -> uint8 images."""
    run = tf.saved_model.load(str(directory)).signatures[manifest["signature"]]

    def call(**inputs):
        return run(**{k: tf.constant(v) for k, v in inputs.items()})[
            manifest["output_key"]].numpy()

    return call

