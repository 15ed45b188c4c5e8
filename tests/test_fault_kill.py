"""kill -9 around asynchronous checkpoint saves: every restart resumes from the newest
complete checkpoint, with bitwise the state that the killed trainer handed to the save.

The trainer runs in a subprocess (this file, run as a script) that SIGKILLs itself at a
chosen moment of its n-th save: before the save starts, right after Orbax made the
temporary directory, with everything written but not yet renamed into place, or just
after the rename. It records each state it hands to a save and each state it resumes
with (npz files); the test compares them. Restarts load the programs from the session's
compilation cache.

    python tests/test_fault_kill.py WORKDIR RECORDS STOP_AT_STEP [MOMENT:N]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stylegan_jax.distributed import with_host_devices

TMP_SUFFIX = ".orbax-checkpoint-tmp"
MOMENTS = ("save", "created", "written", "committed")


# One device, one compiled program (no regularisers: their second-order passes would
# triple its compile time, and checkpoints are what is tested), a checkpoint per
# iteration, every checkpoint kept (so each can be compared). As command-line overrides,
# so that the soak's `train` processes compile (and cache) the same program.
OVERRIDES = [
    "--config.data.resolution=16", "--config.model.z_dim=16", "--config.model.w_dim=16",
    "--config.model.channel_base=128", "--config.model.channel_max=8",
    "--config.model.mbstd_group_size=2", "--config.train.batch_size=4",
    "--config.train.r1_gamma=0", "--config.train.pl_weight=0",
    "--config.log.tick_kimg=0.016", "--config.log.snapshot_kimg=0.016",
    "--config.log.checkpoint_kimg=0.004", "--config.log.keep_last=100",
    "--config.log.grid_seeds=4", "--config.log.tensorboard=False",
]


def tiny_config():
    from stylegan_jax.train import config as config_lib

    return config_lib.load_config("quickstart", OVERRIDES)


def _save_npz(path: Path, tree) -> None:
    import jax

    flat = {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_leaves_with_path(tree)}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **flat)
    os.replace(tmp, path)


def worker(workdir: str, records: str, stop: str, kill: str | None) -> None:
    """Trains with the kill hooks installed (see the module docstring)."""
    import signal

    from orbax.checkpoint._src.path import atomicity

    from stylegan_jax import compilation_cache
    from stylegan_jax.store import checkpoints
    from stylegan_jax.train import loop

    compilation_cache.enable()
    records = Path(records)
    records.mkdir(parents=True, exist_ok=True)
    moment, n = (kill.split(":")[0], int(kill.split(":")[1])) if kill else (None, 0)
    saves = {"save": 0, "created": 0, "written": 0, "committed": 0}
    ckpt_dir = (Path(workdir) / "checkpoints").absolute()

    def reached(name):
        saves[name] += 1
        if moment == name and saves[name] == n:
            print(f"worker: SIGKILL at {name} {n}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    save, restore_newest = checkpoints.Checkpoints.save, checkpoints.Checkpoints.restore_newest

    def recording_save(self, step, state, *args, **kwargs):
        _save_npz(records / f"saved-{step}.npz", state)
        reached("save")
        return save(self, step, state, *args, **kwargs)

    def recording_restore(self, *args, **kwargs):
        found = restore_newest(self, *args, **kwargs)
        if found is not None:
            _save_npz(records / f"resumed-{found[0]}.npz", found[1][0])
        return found

    create, finalize = atomicity.AtomicRenameTemporaryPath.create, \
        atomicity.AtomicRenameTemporaryPath.finalize

    def is_step(path):  # the step directory, not one of its items
        return Path(path.get_final()).parent == ckpt_dir

    async def hooked_create(self, *args, **kwargs):
        made = await create(self, *args, **kwargs)
        if is_step(self):
            reached("created")
        return made

    async def hooked_finalize(self, *args, **kwargs):
        if is_step(self):
            reached("written")
        await finalize(self, *args, **kwargs)
        if is_step(self):
            reached("committed")

    checkpoints.Checkpoints.save = recording_save
    checkpoints.Checkpoints.restore_newest = recording_restore
    atomicity.AtomicRenameTemporaryPath.create = hooked_create
    atomicity.AtomicRenameTemporaryPath.finalize = hooked_finalize
    summary = loop.train(tiny_config(), workdir, stop_at_step=int(stop),
                         log=lambda s: print(s, flush=True))
    print(f"worker: finished at step {summary['step']}", flush=True)


def one_device_env():
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": with_host_devices(os.environ.get("XLA_FLAGS", ""), 1)}


def run_worker(workdir, records, stop, kill=None):
    env = one_device_env()
    cmd = [sys.executable, __file__, str(workdir), str(records), str(stop)]
    if kill:
        cmd.append(kill)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                          cwd=Path(__file__).parent)


def complete_steps(workdir) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def leftovers(workdir) -> list[str]:
    return sorted(p.name for p in (workdir / "checkpoints").iterdir() if TMP_SUFFIX in p.name)


def assert_same_npz(a: Path, b: Path) -> None:
    with np.load(a) as x, np.load(b) as y:
        assert sorted(x.files) == sorted(y.files)
        for key in x.files:
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"{a.name} vs {b.name}: {key}")


def resumed_from(output: str) -> int | None:
    found = re.search(r"Resuming from .*/checkpoints/(\d+) ", output)
    return int(found.group(1)) if found else None


@pytest.mark.slow  # a dozen killed and restarted processes: ~25 s
def test_kill_9_around_saves_resumes_from_newest_complete_checkpoint(tmp_path):
    workdir, records = tmp_path / "run", tmp_path / "records"
    # (moment, which save of that process): each process resumes from what the last left.
    kills = [("created", 2), ("written", 1), ("committed", 2), ("save", 1)]
    expected_resume = None
    for moment, n in kills + [(None, 0)]:
        stop = 200 if moment else (complete_steps(workdir)[-1] // 4 + 2)
        proc = run_worker(workdir, records, stop, f"{moment}:{n}" if moment else None)
        out = proc.stdout + proc.stderr
        assert resumed_from(out) == expected_resume, out[-3000:]
        if expected_resume is not None:  # bitwise what the checkpoint's writer handed over
            assert_same_npz(records / f"resumed-{expected_resume}.npz",
                            records / f"saved-{expected_resume}.npz")
        assert "Traceback" not in out, out[-3000:]
        if moment is None:
            assert proc.returncode == 0, out[-3000:]
            break
        assert proc.returncode == -9, out[-3000:]
        assert f"SIGKILL at {moment} {n}" in out
        steps, tmp = complete_steps(workdir), leftovers(workdir)
        if moment in ("created", "written"):  # the unfinished save stays a temporary
            assert len(tmp) == 1, tmp  # directory, newer than and never among the steps
            assert int(tmp[0].removesuffix(TMP_SUFFIX)) > steps[-1]
        else:  # nothing started, or renamed into place: complete
            assert tmp == [], tmp
        expected_resume = steps[-1]
    assert leftovers(workdir) == []  # the trainer cleaned up the unfinished saves


@pytest.mark.slow  # three train processes: ~20 s
def test_soak_kills_and_resumes(tmp_path, monkeypatch, capsys):
    """`stylegan-jax soak` with 2 kills (seed 0: a SIGKILL, then a SIGTERM) and a final
    run to the end (0.2 kimg)."""
    from stylegan_jax import cli

    monkeypatch.setenv("XLA_FLAGS", one_device_env()["XLA_FLAGS"])  # the trainers'
    code = cli.main(["soak", "--kills", "2", "--seed", "0", "--min-s", "0.5", "--max-s", "2",
                     "--workdir", str(tmp_path / "run"), "--", "--config", "quickstart",
                     *OVERRIDES, "--config.train.total_kimg=0.2"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert "soak: kill 1/2: SIGKILL" in out and "soak: kill 2/2: SIGTERM" in out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("soak: 2 kills (1 SIGKILL, 1 SIGTERM), 2 resumes, 0 wrong "
                              "resumes, 0 crashes, checkpoints lost 0, max kimg lost "), summary
    assert complete_steps(tmp_path / "run")[-1] == 200


if __name__ == "__main__":
    worker(*sys.argv[1:4], sys.argv[4] if len(sys.argv) > 4 else None)
