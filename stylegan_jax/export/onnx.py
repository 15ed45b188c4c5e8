"""ONNX models: the float32 TFLite model converted by tf2onnx (`from_tflite`), run by
onnxruntime, with this convention's names (inputs z, c, psi; output images) and a
dynamic batch named `batch`.

Why this route: tf2onnx cannot read a jax2tf SavedModel (its program is an XlaCallModule
op), and jax2onnx pins orbax-checkpoint < 0.11.37, which would downgrade this package's
checkpointing. Random noise is refused as for TFLite.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import tf2onnx

from stylegan_jax.export import tflite
from stylegan_jax.export.program import BATCH, Program

PAYLOAD = "generator.onnx"
OPSET = 18


def _renamed(model: onnx.ModelProto, names: dict[str, str]) -> onnx.ModelProto:
    """`model` with its graph inputs and outputs renamed (and every use of them), and the
    batch dimension named."""
    g = model.graph
    for node in g.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    for value in (*g.input, *g.output):
        value.name = names.get(value.name, value.name)
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH
    return model


def write(program: Program, directory: Path) -> dict:
    tflite.check_carries(program, "onnx")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / tflite.PAYLOAD
        path.write_bytes(tflite.convert(program))
        try:
            model, _ = tf2onnx.convert.from_tflite(str(path), opset=OPSET)
        except Exception as e:  # tf2onnx's errors have no common type
            raise ValueError(f"tf2onnx {tf2onnx.__version__} (opset {OPSET}) could not "
                             f"convert this generator: {tflite.first_error(str(e))}"
                             ) from None
    names = {f"serving_default_{t.name}:0": t.name for t in program.inputs}
    (output,) = model.graph.output
    names[output.name] = program.output.name
    model = _renamed(model, names)
    onnx.checker.check_model(model)
    onnx.save(model, str(directory / PAYLOAD))
    return dict(payload=PAYLOAD, opset=OPSET, output_key=program.output.name)


def load(directory: Path, manifest: dict):
    """A call of the artifact (onnxruntime, CPU): named numpy inputs -> uint8 images."""
    session = onnxruntime.InferenceSession(str(directory / manifest["payload"]),
                                           providers=["CPUExecutionProvider"])

    def call(**inputs):
        feed = {k: np.asarray(v) for k, v in inputs.items()}  # 0-d arrays, not scalars
        return session.run([manifest["output_key"]], feed)[0]

    return call
