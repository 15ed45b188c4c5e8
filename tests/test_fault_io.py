"""Full disks, I/O errors and refused permissions (injected): essential outputs stop the
run with a one-line error and the previous checkpoint intact; grids and TensorBoard warn
once and training goes on; the dataset tool leaves nothing half-written; a damaged
shard met in training names the shard and the record."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil

import numpy as np
import pytest
from train_fixtures import tiny_config

from stylegan_jax import cli
from stylegan_jax.atomic import WriteError
from stylegan_jax.data.shards import DatasetError, record_layout
from stylegan_jax.store.checkpoints import Checkpoints
from stylegan_jax.train import loop

ERRORS = {
    "ENOSPC": OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    "EIO": OSError(errno.EIO, os.strerror(errno.EIO)),
    "EACCES": PermissionError(errno.EACCES, os.strerror(errno.EACCES)),
}


def quiet(_line):
    pass


@pytest.fixture(scope="module")
def first_checkpoint(tmp_path_factory):
    """A run stopped after its first checkpoint (32 images)."""
    workdir = tmp_path_factory.mktemp("first")
    assert loop.train(tiny_config(), workdir, stop_at_step=2, log=quiet)["checkpoint"] == 32
    return workdir


def digest(directory) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def copy_run(first_checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(first_checkpoint, run)
    return run


def latest(run):
    ckpts = Checkpoints(run / "checkpoints", keep_last=10, keep_every=None, writer=False)
    try:
        return ckpts.latest_step()
    finally:
        ckpts.close()


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_checkpoint_write_error_stops_with_previous_intact(first_checkpoint, tmp_path,
                                                           monkeypatch, name):
    from orbax.checkpoint._src.path import async_path

    run = copy_run(first_checkpoint, tmp_path)
    before = digest(run / "checkpoints" / "32")

    async def failing_write_text(path, text):  # Orbax writes its metadata files with it
        raise type(ERRORS[name])(ERRORS[name].errno, ERRORS[name].strerror, str(path))

    monkeypatch.setattr(async_path, "write_text", failing_write_text)
    with pytest.raises(WriteError) as e:
        loop.train(tiny_config(), run, stop_at_step=6, log=quiet)
    message = str(e.value)
    assert "\n" not in message and ERRORS[name].strerror in message
    assert f"cannot write a checkpoint in {run}/checkpoints" in message
    assert "newest complete one, 32, is intact" in message
    monkeypatch.undo()
    assert latest(run) == 32 and digest(run / "checkpoints" / "32") == before


def test_stats_jsonl_write_error_stops_the_run(first_checkpoint, tmp_path, monkeypatch):
    from stylegan_jax.train import report

    run = copy_run(first_checkpoint, tmp_path)

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, _text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(report, "open", lambda *a, **k: FullDisk(open(*a, **k)),  # noqa: SIM115
                        raising=False)
    with pytest.raises(WriteError, match=f"cannot write {run}/stats.jsonl: .*No space left"):
        loop.train(tiny_config(), run, stop_at_step=6, log=quiet)
    monkeypatch.undo()
    assert latest(run) >= 32  # what was saved before the failure is complete


def test_grid_and_tensorboard_errors_warn_once_and_training_goes_on(first_checkpoint, tmp_path,
                                                                    monkeypatch):
    from tensorboardX import record_writer

    from stylegan_jax import images

    run = copy_run(first_checkpoint, tmp_path)

    def no_space(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(images, "save_image", no_space)
    monkeypatch.setattr(record_writer.RecordWriter, "flush", no_space)
    config = tiny_config()
    config.log.tensorboard = True
    lines = []
    summary = loop.train(config, run, stop_at_step=6, log=lines.append)
    assert summary["step"] == 6 and summary["checkpoint"] == 96
    warnings = [x for x in lines if x.startswith("warning:")]
    assert len(warnings) == 2, warnings
    assert any("image grid" in w and "No space left" in w for w in warnings)
    assert any("TensorBoard" in w and "No space left" in w for w in warnings)
    assert sum(x.startswith("tick ") for x in lines) >= 2  # ticks went on after both


def make_images(folder, n=16, size=16):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(
            folder / f"{i:02d}.png")
    return folder


def dataset_cli(src, dest):
    return cli.main(["dataset", "--source", str(src), "--dest", str(dest), "--resolution", "16",
                     "--channels", "1", "--no-progress", "--shard-mb", "1"])


def tf_errors():
    from stylegan_jax.data.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    return {**ERRORS, "tf ResourceExhausted": tf.errors.ResourceExhaustedError(
        None, None, "No space left on device")}


@pytest.mark.parametrize("name", [*sorted(ERRORS), "tf ResourceExhausted"])
def test_dataset_tool_leaves_no_half_written_destination(tmp_path, monkeypatch, capsys, name):
    from stylegan_jax.data import tf_runtime

    src = make_images(tmp_path / "images")
    tf = tf_runtime.import_tensorflow()
    error = tf_errors()[name]

    class FailingWriter:
        """TensorFlow's writer that fails at the 4th record (a disk filling up)."""

        def __init__(self, path):
            self.real, self.count = tf.io.TFRecordWriter(path), 0

        def write(self, record):
            self.count += 1
            if self.count == 4:
                raise error
            self.real.write(record)

        def close(self):
            self.real.close()

    class FakeIO:
        TFRecordWriter = FailingWriter

    class FakeTF:
        io, errors = FakeIO, tf.errors

    monkeypatch.setattr(tf_runtime, "import_tensorflow", lambda: FakeTF)
    capsys.readouterr()
    assert dataset_cli(src, tmp_path / "out" / "ds") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shard-00000.tfrecord: cannot write" in err[0], err
    assert "No space left" in err[0] or os.strerror(error.errno or 0) in err[0]
    assert list((tmp_path / "out").iterdir()) == []  # no dataset, no partial directory


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    assert dataset_cli(make_images(root / "images"), root / "ds") == 0
    return root / "ds"


def tfrecord_config(path):
    config = tiny_config()
    config.data.source = "tfrecord"
    config.data.path = str(path)
    return config


def test_damaged_shard_in_training_names_shard_and_record(dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    shard = ds / "r16" / "shard-00000.tfrecord"
    record_bytes = record_layout(16, 1)[0]
    data = bytearray(shard.read_bytes())
    data[5 * record_bytes + 3] ^= 0xFF  # in record 5's frame header
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=re.escape(f"{shard}: record 5 is corrupt")):
        loop.train(tfrecord_config(ds), tmp_path / "run", stop_at_step=4, log=quiet)


def test_truncated_shard_names_the_first_missing_record(dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    shard = ds / "r16" / "shard-00000.tfrecord"
    record_bytes = record_layout(16, 1)[0]
    os.truncate(shard, 9 * record_bytes + 10)
    with pytest.raises(DatasetError, match=f"{shard}: .*record 9 onwards is missing"):
        loop.train(tfrecord_config(ds), tmp_path / "run", stop_at_step=4, log=quiet)
