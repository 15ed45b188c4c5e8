"""Writes tiny torch state dicts in both `torch.save` formats (run once, torch installed).

`/tmp/torchenv/bin/python make_fixture.py` writes
- `tiny_zip.pth`: the zip format (torch >= 1.6 default),
- `tiny_legacy.pth`: `_use_new_zipfile_serialization=False`, the format of older
  releases such as torchvision's `vgg16-397923af.pth`,
- `expected.npz`: the same tensors as NumPy saw them before saving.
The state dict mixes what released weight files hold: float32 conv / BN tensors,
`num_batches_tracked` int64 scalars, a float16 tensor, tensors sharing one storage at
different offsets, a non-contiguous (transposed) tensor, and a Parameter.
"""

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

torch.manual_seed(0)
base = torch.randn(6, 5)
conv = torch.nn.Conv2d(3, 4, 3)
bn = torch.nn.BatchNorm2d(4)
bn.running_mean.normal_()
sd = OrderedDict()
for k, v in conv.state_dict().items():
    sd["block.conv." + k] = v
for k, v in bn.state_dict().items():
    sd["block.bn." + k] = v
sd["half"] = torch.randn(7).half()
sd["row2"] = base[2]  # a view into a larger storage, at offset 10
sd["row4"] = base[4]
sd["t_view"] = base.t()  # non-contiguous
sd["param"] = torch.nn.Parameter(torch.randn(2, 3))

here = Path(__file__).parent
torch.save(sd, here / "tiny_zip.pth")
torch.save(sd, here / "tiny_legacy.pth", _use_new_zipfile_serialization=False)
np.savez(here / "expected.npz", **{k: v.detach().numpy() for k, v in sd.items()})
