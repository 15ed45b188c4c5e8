"""ProGAN (`G_paper` / `D_paper`) against tensors from NVIDIA's official TF networks.

One test case per fixture file: tests/data/official_tf/progan_*.npz and, when
$SGJ_REFERENCE_DIR is set, every file in it whose meta.family is `progan`.
"""

from __future__ import annotations

import pytest
from official_fixtures import DATA
from official_tf_checks import check_matches_official, files

FILES = files("progan")


def test_fixtures_present():
    """Every bundled reference is found (a missing one would drop its case silently)."""
    bundled = [f.name for f in FILES if f.parent == DATA / "official_tf"]
    assert bundled == ["progan_32.npz", "progan_32_separate_labels_1ch.npz"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_matches_official(path):
    check_matches_official(path)
