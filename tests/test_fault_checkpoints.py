"""Damaged checkpoints: readers and the trainer use the newest one that restores, say
which one they skipped and why, and never delete or rewrite the damaged one; a named
damaged checkpoint is a one-line error; a real config mismatch keeps its own message."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from train_fixtures import tiny_config

from stylegan_jax.distributed import with_host_devices
from stylegan_jax.store.checkpoints import CheckpointError, Checkpoints, DamagedCheckpointError
from stylegan_jax.store.load import load_networks
from stylegan_jax.train import loop
from stylegan_jax.train.stylegan2 import config as stylegan2_config
from stylegan_jax.train.stylegan2 import step as step_lib


def config3():
    c = tiny_config()
    c.log.keep_last = 3
    return c


@pytest.fixture(scope="module")
def finished(tiny_run):
    """A finished run with three checkpoints: 32, 64 and 96 images (conftest's, shared with
    test_train_loop; every test here damages a copy)."""
    workdir = tiny_run[0]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["32", "64", "96"]
    return workdir


def restored(workdir, step, config=None):
    """Reference restore of one checkpoint (state, data position)."""
    config = config or tiny_config()
    nets = step_lib.build_networks(config.model, 16, 1, 0)
    template = jax.eval_shape(  # the layout is all a restore needs
        functools.partial(step_lib.init_state, nets, stylegan2_config.step_config(config)), 0)
    ckpts = Checkpoints(workdir / "checkpoints", keep_last=10, keep_every=None, writer=False)
    try:
        state, data, _ = ckpts.restore(step, template)
    finally:
        ckpts.close()
    return state, data


def files_digest(directory) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _files(ckpt, pattern="state/**/d/*"):
    found = [p for p in ckpt.glob(pattern) if p.is_file()]
    assert found, pattern
    return found


def damage(ckpt, kind: str) -> None:
    """What partial copies, failing disks and interrupted writes leave behind."""
    if kind == "truncated data files":
        for f in _files(ckpt):
            os.truncate(f, f.stat().st_size // 2)
    elif kind == "empty files":
        for f in _files(ckpt, "**/*"):
            os.truncate(f, 0)
    elif kind == "garbled bytes":
        for f in _files(ckpt):
            data = bytearray(f.read_bytes())
            data[len(data) // 2] ^= 0xFF
            f.write_bytes(bytes(data))
    elif kind == "garbled manifest":
        (ckpt / "state" / "manifest.ocdbt").write_bytes(b"\0" * 64)
    elif kind == "state missing":
        shutil.rmtree(ckpt / "state")
    elif kind == "array metadata missing":
        (ckpt / "state" / "_METADATA").unlink()
    elif kind == "garbled meta":
        (ckpt / "meta" / "metadata").write_text('{"tick": ')
    elif kind == "empty directory":
        shutil.rmtree(ckpt)
        ckpt.mkdir()
    else:
        raise AssertionError(kind)


KINDS = ["truncated data files", "empty files", "garbled bytes", "garbled manifest",
         "state missing", "array metadata missing", "garbled meta", "empty directory"]


@pytest.mark.parametrize("kind", KINDS)
def test_readers_use_newest_readable_checkpoint(finished, tmp_path, capsys, kind):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    damage(run / "checkpoints" / "96", kind)
    before = files_digest(run / "checkpoints")
    capsys.readouterr()
    nets = load_networks(run)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: "), err
    assert f"{run}/checkpoints/96 is damaged" in err[0] and "using checkpoint 64" in err[0]
    expected, _ = restored(finished, 64)
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(expected.G_ema),
                                 jax.tree_util.tree_leaves(nets["G_ema"].variables["params"]),
                                 strict=True):
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=jax.tree_util.keystr(path))
    with pytest.raises(DamagedCheckpointError, match="checkpoints/96 is damaged") as e:
        load_networks(run / "checkpoints" / "96")
    assert "different config" not in str(e.value) and "\n" not in str(e.value)
    assert files_digest(run / "checkpoints") == before  # nothing deleted or rewritten


def test_unfinished_save_is_ignored(finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    # A save killed before Orbax renamed it into place.
    shutil.copytree(run / "checkpoints" / "96", run / "checkpoints" / "128.orbax-checkpoint-tmp")
    nets = load_networks(run)
    assert capsys.readouterr().err == ""
    expected, _ = restored(finished, 96)
    np.testing.assert_array_equal(nets["G_ema"].variables["params"]["synthesis"]["b16"]
                                  ["torgb"]["bias"],
                                  expected.G_ema["synthesis"]["b16"]["torgb"]["bias"])


def test_named_damaged_checkpoint_is_one_line_without_noise(finished, tmp_path):
    """As a user runs it: no traceback, no asyncio 'Event loop is closed' at exit."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    damage(run / "checkpoints" / "96", "truncated data files")
    proc = subprocess.run(
        [sys.executable, "-m", "stylegan_jax.cli", "generate", "--network",
         str(run / "checkpoints" / "96"), "--seeds", "0", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu",
             "XLA_FLAGS": with_host_devices(os.environ.get("XLA_FLAGS", ""), None)})
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("stylegan-jax generate: error: ")
    assert "checkpoints/96 is damaged" in lines[0] and "local file" in lines[0]


def test_train_resumes_from_newest_readable_and_sets_damaged_aside(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    damage(run / "checkpoints" / "96", "truncated data files")
    damaged = files_digest(run / "checkpoints" / "96")
    lines = []
    summary = loop.train(config3(), run, stop_at_step=6, log=lines.append)
    warnings = [x for x in lines if x.startswith("warning:")]
    assert len(warnings) == 1 and "checkpoints/96 is damaged" in warnings[0]
    assert f"moved to {run}/checkpoints/96.damaged" in warnings[0]
    assert any(x.startswith(f"Resuming from {run}/checkpoints/64 ") for x in lines)
    assert summary["checkpoint"] == 96
    assert files_digest(run / "checkpoints" / "96.damaged") == damaged  # kept as it was
    # Resumed from 64, the run arrives at bitwise the 96 the original run saved.
    want_state, want_data = restored(finished, 96)
    got_state, got_data = restored(run, 96)
    assert got_data == want_data
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(want_state),
                                 jax.tree_util.tree_leaves(got_state), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want),
                                      err_msg=jax.tree_util.keystr(path))


def test_train_refuses_when_no_checkpoint_is_readable(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for step in ("32", "64", "96"):
        damage(run / "checkpoints" / step, "truncated data files")
    before = files_digest(run / "checkpoints")
    with pytest.raises(DamagedCheckpointError, match="no checkpoint in .* can be read"):
        loop.train(config3(), run, stop_at_step=8, log=lambda _: None)
    assert files_digest(run / "checkpoints") == before


def test_config_mismatch_keeps_its_message(finished):
    other = tiny_config()
    other.model.channel_max = 16
    with pytest.raises(CheckpointError, match="different config") as e:
        restored(finished, 96, other)
    assert not isinstance(e.value, DamagedCheckpointError)
    assert "this config expects" in str(e.value)
