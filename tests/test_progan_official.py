"""ProGAN (`G_paper` / `D_paper`) against tensors from NVIDIA's official TF networks.

One test case per fixture file: tests/data/official_tf/progan_*.npz and, when
$SGJ_REFERENCE_DIR is set, every file in it whose meta.family is `progan`.
"""

from __future__ import annotations

import pytest
from official_tf_checks import check_matches_official, files

FILES = files("progan")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_matches_official(path):
    check_matches_official(path)
