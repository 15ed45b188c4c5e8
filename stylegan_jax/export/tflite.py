"""TFLite (LiteRT) models: the SavedModel's program (lowered for the CPU) through
`TFLiteConverter.from_saved_model`, float32 weights or float16 weights (half the size;
the interpreter computes in float32 after dequantising them). The batch stays dynamic:
the signature runner resizes it per call.

TFLite cannot carry JAX's random draws (threefry is uint32 arithmetic), so random noise
is refused; const and none export. Running one needs only `ai-edge-litert` (in the
`export` extra).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from stylegan_jax.export import savedmodel
from stylegan_jax.export.program import Program, arguments

tf = savedmodel.tf
PAYLOAD = "generator.tflite"
F16_LEVELS = 2  # the most 8-bit levels float16 weights may move an image (measured: 1)


def check_carries(program: Program, fmt: str) -> None:
    if program.details["noise_mode"] == "random":
        raise ValueError(f"--format {fmt} --noise-mode random: TFLite cannot carry JAX's "
                         "random draws (threefry's uint32 arithmetic); export with "
                         "--noise-mode const or none, or as stablehlo / savedmodel")


def first_error(text: str) -> str:
    """The converter's first diagnostic without its location trail (one line)."""
    for line in text.splitlines():
        if "error: " in line:
            return line.split("error: ", 1)[1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


@contextlib.contextmanager
def _saved_model(program: Program) -> Iterator[str]:
    """The program as a CPU SavedModel in a temporary directory, without the optimization
    barrier (TFLite folds the weights into its constants)."""
    with tempfile.TemporaryDirectory() as tmp:
        savedmodel.write(dataclasses.replace(program, barrier=False), Path(tmp),
                         platforms=("cpu",))
        yield tmp


def _tflite(saved_model: str, float16: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as e:  # the converter's errors have no common type
        raise ValueError(f"the TFLite converter (tensorflow {tf.__version__}) refused "
                         f"this generator: {first_error(str(e))}") from None


def convert(program: Program) -> bytes:
    """The float32 .tflite bytes of `program`."""
    with _saved_model(program) as saved:
        return _tflite(saved, float16=False)


def _run(data: bytes, inputs: dict):
    interpreter = Interpreter(model_content=data)
    return interpreter.get_signature_runner(savedmodel.SIGNATURE)(**inputs)[savedmodel.OUTPUT]


def check_float16(program: Program, data16: bytes, data32: bytes) -> int:
    """Levels by which float16 weights move images of 4 latents against float32 weights;
    refused above F16_LEVELS (a constant that float16 cannot hold, e.g. an epsilon of
    1e-8 that becomes 0, turns an image into NaNs)."""
    d = program.details
    inputs = arguments(program.inputs,
                       np.random.RandomState(0).randn(4, d["z_dim"]).astype(np.float32),
                       np.eye(4, d["c_dim"], dtype=np.float32))
    diff = np.abs(_run(data16, inputs).astype(int) - _run(data32, inputs)).max()
    if diff > F16_LEVELS:
        raise ValueError(f"--format tflite-f16: float16 weights move this generator's images "
                         f"by up to {diff} levels against float32 ones (allowed: "
                         f"{F16_LEVELS}); export it as tflite")
    return int(diff)


def write(program: Program, directory: Path, float16: bool = False) -> dict:
    check_carries(program, "tflite-f16" if float16 else "tflite")
    about = {}
    with _saved_model(program) as saved:  # one SavedModel for both precisions
        data = _tflite(saved, float16)
        if float16:
            about["float16_levels"] = check_float16(program, data, _tflite(saved, False))
    (directory / PAYLOAD).write_bytes(data)
    return dict(payload=PAYLOAD, signature=savedmodel.SIGNATURE,
                output_key=savedmodel.OUTPUT, weights="float16" if float16 else "float32",
                **about)


def load(directory: Path, manifest: dict):
    """A call of the artifact (ai-edge-litert's interpreter): named numpy inputs -> uint8
    images; the runner resizes the batch itself."""
    run = Interpreter(model_path=str(directory / manifest["payload"])).get_signature_runner(
        manifest["signature"])

    def call(**inputs):
        return run(**inputs)[manifest["output_key"]]

    return call
