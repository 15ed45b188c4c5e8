"""Write-then-rename helpers: an interrupted write never looks like a finished one; and
the error that stops a command when an essential output cannot be written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class WriteError(ValueError):
    """An essential output cannot be written (disk full, I/O error, no permission).

    A ValueError so that the CLI prints it as one line instead of a traceback.
    """


def write_error(what: str, error: OSError) -> WriteError:
    """WriteError naming the output and the system's reason (the OSError names the file)."""
    return WriteError(f"cannot write {what}: {error}")


@contextlib.contextmanager
def new_directory(dest: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yields a temporary directory beside `dest`, renamed to `dest` if the block succeeds.

    Refuses an existing `dest` (nothing already written is replaced) unless `replace`, and
    then the old one is swapped out only once the new one is complete. On any error the
    temporary directory is removed and the old `dest` stays.
    """
    dest = Path(dest).absolute()
    if dest.exists() and not replace:
        raise FileExistsError(f"{dest} already exists; choose a new destination")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs get the usual mode
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.rename(dest, old / dest.name)
            try:
                os.rename(tmp, dest)
            except BaseException:
                os.rename(old / dest.name, dest)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def replace_file(path: str | Path, data: bytes | str) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`: readers
    see the old file or the new one, never part of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
