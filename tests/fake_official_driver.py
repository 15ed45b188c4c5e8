"""A stand-in for `official_driver.py` in tests (CI has neither torch nor NVIDIA's code).

Takes the driver's command line and SPEC.json and writes what the driver writes: an official
network pickle per snapshot point (random networks of the spec's shapes, a different draw per
point, written by the test helper that produces NVIDIA's pickle format without torch),
snapshots.jsonl and done.json. Nothing is trained: the parity command's orchestration,
conversion, evaluation and report are what the test checks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import official_pickle as op  # noqa: E402

from stylegan_jax.convert.torch_kwargs import discriminator_kwargs, generator_kwargs  # noqa: E402
from stylegan_jax.convert.torch_stylegan2 import (  # noqa: E402
    sample_inputs,
    variables_to_state_dict,
)
from stylegan_jax.models import stylegan2  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    for flag in ("--official", "--spec", "--data", "--out", "--threads"):
        p.add_argument(flag, required=True)
    args = p.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    meta = json.loads((Path(args.data) / "dataset.json").read_text())
    png = next(Path(args.data).rglob("*.png"))
    from PIL import Image

    with Image.open(png) as im:
        res, channels = im.size[0], len(im.getbands())
    common = dict(c_dim=0 if meta["labels"] is None else 2, img_resolution=res,
                  img_channels=channels)
    g_init, d_init = dict(spec["G_kwargs"], **common), dict(spec["D_kwargs"], **common)
    G = stylegan2.Generator(**generator_kwargs(g_init))
    D = stylegan2.Discriminator(**discriminator_kwargs(d_init))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, kimg in enumerate(spec["snapshot_kimg"]):
        key = jax.random.PRNGKey(1000 * spec["random_seed"] + i)
        rngs = {"params": key, "noise": key}
        g_vars = G.init(rngs, *(np.zeros(s.shape, np.float32) for s in sample_inputs(G)))
        d_vars = D.init(rngs, *(np.zeros(s.shape, np.float32) for s in sample_inputs(D)))
        g = op.records_from_state_dict("Generator", g_init, variables_to_state_dict(g_vars, G))
        d = op.records_from_state_dict("Discriminator", d_init,
                                       variables_to_state_dict(d_vars, D))
        name = f"network-snapshot-{round(kimg * 1000):06d}.pkl"
        op.dump(dict(G=g, D=d, G_ema=g, augment_pipe=None,
                     training_set_kwargs={"resolution": res}), out / name)
        lines.append(json.dumps(dict(kimg=kimg, nimg=round(kimg * 1000), pkl=name)))
    (out / "snapshots.jsonl").write_text("\n".join(lines) + "\n")
    (out / "done.json").write_text(json.dumps(dict(kimg=spec["total_kimg"])) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
