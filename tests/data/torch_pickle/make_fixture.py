"""Writes tiny.pkl with real torch (run once: `python make_fixture.py`, torch installed).

The file has the structure of NVIDIA's network pickles: a dict whose networks are
`torch_utils.persistence` records (class source + state) holding real torch tensors
pickled the way torch pickles them (nested legacy storages). `expected.npz` holds the
tensors as NumPy saw them before pickling, for the reader's test. Our reader must
read this without torch and without running the embedded source.
"""

import pickle
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from torch_utils import persistence  # noqa: E402


@persistence.persistent_class
class Child(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn([n, 3, 2, 2]))
        self.register_buffer("fp16_buf", torch.randn([n]).half())
        self.register_buffer("scratch", torch.zeros([2]), persistent=False)


@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self, z_dim, mapping_kwargs):
        super().__init__()
        self.gain = np.float64(0.5)
        self.fc = Child(4)
        base = torch.randn([6, 5])
        self.bias = torch.nn.Parameter(torch.randn([5]))
        self.register_buffer("w_avg", base[2])  # a view into a larger storage
        self.register_buffer("steps", torch.tensor(7, dtype=torch.int64))
        self.register_buffer("t_view", base.t())  # non-contiguous


torch.manual_seed(0)
G = Generator(z_dim=3, mapping_kwargs=dict(num_layers=2))
here = Path(__file__).parent
with open(here / "tiny.pkl", "wb") as f:
    pickle.dump(dict(G=G, training_set_kwargs=None), f)
sd = {k: v.detach().numpy() for k, v in G.state_dict().items()}
np.savez(here / "expected.npz", **sd)
