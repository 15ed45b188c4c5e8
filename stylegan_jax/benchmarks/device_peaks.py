"""Peak dense TFLOP/s of common accelerators, for model FLOP utilisation (MFU).

Per chip, bfloat16 dense matrix throughput from the vendors' data sheets (the figure MFU
is customarily quoted against; float32 training on GPUs runs its convolutions in TF32
at half that). CPUs have no entry: pass `--peak-tflops`.
"""

from __future__ import annotations

# (substring of jax's device_kind, lower-cased) -> peak bf16 dense TFLOP/s. First match wins,
# so the more specific names come first.
PEAKS: tuple[tuple[str, float], ...] = (
    ("h200", 989.0),
    ("h100", 989.0),  # SXM; the PCIe card is lower (756): pass --peak-tflops
    ("a100", 312.0),
    ("tpu v5 lite", 197.0),  # v5e
    ("tpu v5e", 197.0),
    ("tpu v5p", 459.0),
    ("tpu v5", 459.0),  # v5p reports itself as "TPU v5"
    ("tpu v4", 275.0),
)


def peak_tflops(device_kind: str) -> float | None:
    kind = device_kind.lower()
    for name, peak in PEAKS:
        if name in kind:
            return peak
    return None
