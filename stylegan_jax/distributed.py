"""Multi-process start-up: `jax.distributed` on clusters, and a local N-process launcher.

`initialize()` must run before anything touches a device. It does nothing for a
single-process run; on SLURM, Open MPI, Cloud TPU pods and Kubernetes (JobSet /
indexed Jobs) JAX detects the cluster itself; elsewhere the coordinator address,
process count and id come from flags or SGJ_COORDINATOR / SGJ_NUM_PROCESSES /
SGJ_PROCESS_ID. `launch_local()` starts N processes on this machine with a loopback
coordinator and ends all of them as soon as one fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

# Environment variables by which a multi-process cluster launch can be recognised.
_CLUSTER_SIGNS = {
    "SLURM": lambda e: int(e.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in e,
    "Open MPI": lambda e: int(e.get("OMPI_COMM_WORLD_SIZE", "1")) > 1,
    "Cloud TPU pod": lambda e: "," in e.get("TPU_WORKER_HOSTNAMES", ""),
    "Kubernetes JobSet": lambda e: "JOBSET_NAME" in e and "JOB_COMPLETION_INDEX" in e,
}


def detect_cluster(environ=None) -> str | None:
    """The kind of multi-process launch this process is part of, or None."""
    environ = os.environ if environ is None else environ
    for name, sign in _CLUSTER_SIGNS.items():
        try:
            if sign(environ):
                return name
        except ValueError:
            continue
    return None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, heartbeat_timeout_s: int = 60) -> bool:
    """Starts jax.distributed when this is a multi-process run; returns whether it did.

    A process that stops answering is noticed by the others within about
    `heartbeat_timeout_s`, which then stop with an error instead of waiting forever.
    """
    import jax

    env = os.environ
    coordinator = coordinator or env.get("SGJ_COORDINATOR")
    if num_processes is None and env.get("SGJ_NUM_PROCESSES"):
        num_processes = int(env["SGJ_NUM_PROCESSES"])
    if process_id is None and env.get("SGJ_PROCESS_ID"):
        process_id = int(env["SGJ_PROCESS_ID"])
    explicit = (coordinator, num_processes, process_id)
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise ValueError(
                "a multi-process run needs all of --coordinator, --num-processes and "
                f"--process-id (got {coordinator!r}, {num_processes!r}, {process_id!r})")
        if num_processes == 1:
            return False
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process-id {process_id} outside [0, {num_processes})")
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   heartbeat_timeout_seconds=heartbeat_timeout_s)
        return True
    cluster = detect_cluster()
    if cluster is None:
        return False
    jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout_s)
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_commands(n: int, argv: Sequence[str], port: int) -> list[list[str]]:
    """The command line of each local process (the same train command, its own id)."""
    base = [sys.executable, "-m", "stylegan_jax.cli", *argv]
    return [base + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n),
                    "--process-id", str(i)] for i in range(n)]


def launch_local(n: int, argv: Sequence[str], devices_per_process: int | None = None,
                 poll_s: float = 0.5) -> int:
    """Runs `stylegan-jax <argv>` as n processes on 127.0.0.1; returns the first failure's code.

    When one process fails, the others get SIGTERM (they checkpoint and exit) and
    then SIGKILL after 60 s.
    """
    env = dict(os.environ)
    if devices_per_process:
        flags = [f for f in env.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_force_host_platform_device_count")]
        flags.append(f"--xla_force_host_platform_device_count={devices_per_process}")
        env["XLA_FLAGS"] = " ".join(flags)
    procs = [subprocess.Popen(cmd, env=env) for cmd in local_commands(n, argv, free_port())]
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                _stop(procs)
                print(f"stylegan-jax: a process exited with code {failed[0]}; stopped the "
                      f"other {n - 1}", file=sys.stderr)
                return failed[0]
            if all(c == 0 for c in codes):
                return 0
            time.sleep(poll_s)
    except KeyboardInterrupt:
        _stop(procs)
        return 130


def _stop(procs, grace_s: float = 60.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
