"""The export formats and the modules that write and read them.

Each module has `write(program, directory) -> dict` (its files, and what export.json
should say of them) and `load(directory, manifest) -> call(**inputs) -> uint8 images`.
They are imported only when chosen: the converters and runtimes beyond jax are the
optional extra `stylegan-jax[export]`.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from types import ModuleType

from stylegan_jax.export import artifact

# format -> (module, the options its `write` takes for it)
FORMATS = {
    "stablehlo": ("stylegan_jax.export.stablehlo", {}),
    "savedmodel": ("stylegan_jax.export.savedmodel", {}),
    "tflite": ("stylegan_jax.export.tflite", {}),
    "tflite-f16": ("stylegan_jax.export.tflite", {"float16": True}),
    "onnx": ("stylegan_jax.export.onnx", {}),
}
EXTRA = "pip install 'stylegan-jax[export]'"


def module(fmt: str) -> ModuleType:
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    try:
        return importlib.import_module(FORMATS[fmt][0])
    except ImportError as e:
        raise ValueError(f"--format {fmt} needs {e.name or 'a converter'}, which is not "
                         f"installed: {EXTRA}") from None


def writer(fmt: str):
    """`write(program, directory) -> dict` of `fmt`."""
    return functools.partial(module(fmt).write, **FORMATS[fmt][1])


def open_artifact(path: str | Path, formats: tuple[str, ...] | None = None):
    """(export.json, call(**inputs) -> uint8 images) of the checked artifact at `path`."""
    path = Path(path)
    manifest = artifact.read_manifest(path, formats)
    return manifest, module(manifest["format"]).load(path, manifest)
