"""An export's directory: the format's files and `export.json` beside them (the calling
convention, the generator's facts, versions and a sha256 of every file).

Written whole or not at all (a temporary directory renamed into place), and checked file
by file when read, so a damaged or half-copied artifact is refused with its name instead
of producing wrong images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stylegan_jax.atomic import new_directory, write_error
from stylegan_jax.export.program import CONVENTION, Program
from stylegan_jax.metrics.provenance import sha256_of, software

MANIFEST = "export.json"


def write(dest: str | Path, fmt: str, program: Program, write_payload, source: str,
          force: bool = False) -> dict[str, Any]:
    """Writes `dest`/ with `write_payload(program, directory) -> dict` (the format's own
    files and what export.json should say of them); returns the manifest."""
    dest = Path(dest)
    if dest.exists() and not force:
        raise FileExistsError(f"{dest} already exists; pass --force to replace it")
    try:
        with new_directory(dest, replace=True) as tmp:
            about = write_payload(program, tmp)
            files = {p.relative_to(tmp).as_posix(): sha256_of(p)
                     for p in sorted(tmp.rglob("*")) if p.is_file()}
            manifest = dict(format=fmt, **program.describe(), **about, source=source,
                            software=software(), files=files)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    except OSError as e:
        raise write_error(f"the {fmt} export to {dest}", e) from None
    return manifest


def read_manifest(path: str | Path, formats: tuple[str, ...] | None = None) -> dict[str, Any]:
    """export.json of the artifact at `path`, after checking every file it lists."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{path}: no {MANIFEST}; expected a directory written by "
                                "`stylegan-jax export`")
    try:
        manifest = json.loads(manifest_path.read_text())
        fmt, files, version = manifest["format"], manifest["files"], manifest[
            "calling_convention"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{manifest_path}: damaged ({type(e).__name__}: {e}); export the "
                         "generator again") from None
    if formats is not None and fmt not in formats:
        raise ValueError(f"{path}: a {fmt} artifact; expected {' or '.join(formats)}")
    if version > CONVENTION:
        raise ValueError(f"{path}: calling convention {version}, newer than this version's "
                         f"{CONVENTION}; upgrade stylegan_jax")
    for name, digest in files.items():
        f = path / name
        if not f.is_file():
            raise ValueError(f"{path}: {name} is missing (listed in {MANIFEST}); the artifact "
                             "is incomplete")
        if sha256_of(f) != digest:
            raise ValueError(f"{f}: its content does not match the sha256 in {MANIFEST} "
                             "(damaged or edited); export the generator again")
    return manifest
