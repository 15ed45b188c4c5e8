"""Write-then-rename helpers: an interrupted write never looks like a finished one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def new_directory(dest: str | Path) -> Iterator[Path]:
    """Yields a temporary directory beside `dest`, renamed to `dest` if the block succeeds.

    Refuses an existing `dest` (nothing already written is replaced); on any error the
    temporary directory is removed.
    """
    dest = Path(dest).absolute()
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; choose a new destination")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
