"""`stylegan-jax bench-export`: what each exported format costs and gives on this machine.

Exports the generator (default: the shipped faces) to every format whose converter is
installed, then prints one table: the export's seconds and size, the cold start (a new
Python process that imports only the format's runtime, loads the artifact and makes one
image: what a server or a phone app pays at start-up), and per batch size the latency of
one call and the img/s. The first row is the generator run by this package (Flax and
jit), the reference every format is measured against.

  stylegan-jax bench-export --batches 1,8,32 --formats stablehlo,savedmodel
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_jax.export import artifact, formats, program
from stylegan_jax.generate import add_network_arguments, named_network_from_args
from stylegan_jax.models.sampling import latents_for_seeds

# A format's cold start: its runtime alone, as a user's process would run it.
COLD = {
    "stablehlo": """
        import jax
        f = jax.export.deserialize(bytearray(open(art + "/" + m["payload"], "rb").read()))
        images = f.call(*[inputs[t["name"]] for t in m["inputs"]])
    """,
    "savedmodel": """
        import tensorflow as tf
        run = tf.saved_model.load(art).signatures[m["signature"]]
        images = run(**{k: tf.constant(v) for k, v in inputs.items()})[m["output_key"]]
    """,
    "tflite": """
        from ai_edge_litert.interpreter import Interpreter
        run = Interpreter(model_path=art + "/" + m["payload"]).get_signature_runner(
            m["signature"])
        images = run(**inputs)[m["output_key"]]
    """,
    "onnx": """
        import onnxruntime
        session = onnxruntime.InferenceSession(art + "/" + m["payload"],
                                               providers=["CPUExecutionProvider"])
        images = session.run([m["output_key"]], {k: np.asarray(v) for k, v in inputs.items()})
    """,
}
COLD["tflite-f16"] = COLD["tflite"]
COLD_HEAD = """
import json, sys, time
import numpy as np
art = sys.argv[1]
m = json.load(open(art + "/export.json"))
z = np.zeros((1, m["z_dim"]), np.float32)
given = dict(z=z, c=np.eye(1, m["c_dim"], dtype=np.float32), psi=np.float32(1),
             noise_seed=np.uint32(0))
inputs = {t["name"]: given[t["name"]] for t in m["inputs"]}
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)
    p.add_argument("--formats", default=",".join(formats.FORMATS),
                   help="comma-separated formats (default: all; a missing converter is "
                   "reported and skipped)")
    p.add_argument("--batches", default="1,8,32", help="batch sizes to time")
    p.add_argument("--min-seconds", type=float, default=2.0,
                   help="time each (format, batch) for at least this long")
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")


def _inputs(manifest: dict, batch: int) -> dict:
    z = latents_for_seeds(list(range(batch)), manifest["z_dim"])
    c = np.zeros((batch, manifest["c_dim"]), np.float32)
    c[:, :1] = 1  # class 0 where there are classes
    return program.arguments(manifest["inputs"], z, c)


def _time(call, min_seconds: float) -> tuple[float, int]:
    """Seconds per call (after a warm-up call) over at least `min_seconds`, and calls."""
    call()
    n, t0 = 0, time.perf_counter()
    while True:
        call()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds and n >= 3:
            return elapsed / n, n


def cold_start(fmt: str, path: Path) -> float:
    """Seconds from a new Python process to its first image, runtime import included."""
    script = COLD_HEAD + textwrap.dedent(COLD[fmt]) + "np.asarray(images)\n"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", script, str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> int:
    batches = [int(b) for b in args.batches.split(",")]
    net, name = named_network_from_args(args)
    prog = program.build(net)
    rows = []
    reference = jax.jit(prog.fn)  # the same program, run by this package

    def jax_call(batch):
        arrays = [jnp.asarray(v) for v in _inputs(prog.describe(), batch).values()]
        return lambda: np.asarray(reference(*arrays))

    rows.append(dict(format="jax (this package)", export_s=None, mib=None, cold_s=None,
                     per_batch={b: _time(jax_call(b), args.min_seconds)[0] for b in batches}))
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            try:
                write = formats.writer(fmt)
            except ValueError as e:
                print(f"{fmt}: skipped ({e})", file=sys.stderr)
                continue
            path = Path(tmp) / fmt
            t0 = time.perf_counter()
            artifact.write(path, fmt, prog, write, name)
            export_s = time.perf_counter() - t0
            mib = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
            manifest, call = formats.open_artifact(path)
            per_batch = {}
            for b in batches:
                inputs = _inputs(manifest, b)
                per_batch[b] = _time(lambda call=call, inputs=inputs: call(**inputs),
                                     args.min_seconds)[0]
            rows.append(dict(format=fmt, export_s=export_s, mib=mib,
                             cold_s=cold_start(fmt, path), per_batch=per_batch))
    _print(rows, batches, name, prog.describe())
    if args.json:
        print(json.dumps(dict(network=name, batches=batches, rows=rows)))
    return 0


def _print(rows: list[dict], batches: list[int], name: str, m: dict) -> None:
    print(f"{name}: {m['family']} {m['resolution']}², {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}")
    head = "| format | export s | MiB | cold start s | " + " | ".join(
        f"batch {b}: ms, img/s" for b in batches) + " |"
    print(head)
    print("|" + "---|" * (4 + len(batches)))
    for r in rows:
        cells = [r["format"],
                 "" if r["export_s"] is None else f"{r['export_s']:.1f}",
                 "" if r["mib"] is None else f"{r['mib']:.2f}",
                 "" if r["cold_s"] is None else f"{r['cold_s']:.1f}"]
        cells += [f"{r['per_batch'][b] * 1e3:.1f}, {b / r['per_batch'][b]:.0f}" for b in batches]
        print("| " + " | ".join(cells) + " |")
