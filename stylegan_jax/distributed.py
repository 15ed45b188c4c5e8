"""Multi-process start-up: `jax.distributed` on clusters, and a local N-process launcher.

`initialize()` must run before anything touches a device. It does nothing for a
single-process run; on SLURM, Open MPI, Cloud TPU pods and Kubernetes (JobSet /
indexed Jobs) JAX detects the cluster itself; elsewhere the coordinator address,
process count and id come from flags or SGJ_COORDINATOR / SGJ_NUM_PROCESSES /
SGJ_PROCESS_ID. `launch_local()` starts N processes on this machine with a loopback
coordinator and ends all of them as soon as one fails.

Timeouts, all set here:
- heartbeat (`--heartbeat-timeout`, default 60 s): a process that stops answering is
  declared dead and the others stop with an error, also while they wait at a barrier;
- barriers (`barrier`, e.g. after compiling, `--compile-timeout`, default 3600 s): how
  long a process waits for the slowest peer to arrive;
- collectives: XLA's CPU collectives give up after `xla_cpu_collective_timeout_seconds`
  (XLA's default, 30 min); but gloo's connection set-up at the *first* collective of a
  device group waits only 30 s for a peer and cannot be configured, which is why every
  process compiles first and then meets the others at a barrier (train/programs.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

import jax
from jax._src import distributed as jax_distributed  # the client has no public accessor

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


_barriers = 0  # processes pass the same barriers in the same order; ids must be unique


class BarrierTimeout(RuntimeError):
    """A peer did not reach a barrier in time (or died before it)."""


def barrier(name: str, timeout_s: float) -> float:
    """Waits until every process has reached this point; returns the seconds waited.

    Uses the coordination service (no device collective), so it works before the first
    step and fails, instead of hanging, when a peer has died (heartbeat) or is later
    than `timeout_s`. A single-process run returns at once.
    """
    if jax.process_count() == 1:
        return 0.0
    global _barriers
    _barriers += 1
    barrier_id = f"stylegan_jax/{_barriers}/{name}"
    start = time.perf_counter()
    try:
        jax_distributed.global_state.client.wait_at_barrier(barrier_id, int(timeout_s * 1000))
    except Exception as e:  # JaxRuntimeError: DEADLINE_EXCEEDED, or a peer's failure
        raise BarrierTimeout(
            f"process {jax.process_index()} waited {time.perf_counter() - start:.0f} s at "
            f"barrier {name!r} (timeout {timeout_s:.0f} s) and not every process arrived: "
            f"one is slower than the timeout (raise --compile-timeout) or has died ({e})"
        ) from e
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_commands(n: int, argv: Sequence[str], port: int) -> list[list[str]]:
    """The command line of each local process (the same train command, its own id)."""
    base = [sys.executable, "-m", "stylegan_jax.cli", *argv]
    return [base + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n),
                    "--process-id", str(i)] for i in range(n)]


def with_host_devices(xla_flags: str, count: int | None) -> str:
    """`xla_flags` with its fake CPU device count set to `count` (None: the flag removed,
    one device), every other flag kept."""
    flags = [f for f in xla_flags.split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    if count is not None:
        flags.append(f"--xla_force_host_platform_device_count={count}")
    return " ".join(flags)


def launch_local(n: int, argv: Sequence[str], devices_per_process: int | None = None,
                 poll_s: float = 0.5) -> int:
    """Runs `stylegan-jax <argv>` as n processes on 127.0.0.1; returns the first failure's code.

    When one process fails, the others get SIGTERM (they checkpoint and exit) and
    then SIGKILL after 60 s.
    """
    env = dict(os.environ)
    if devices_per_process:
        env["XLA_FLAGS"] = with_host_devices(env.get("XLA_FLAGS", ""), devices_per_process)
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
