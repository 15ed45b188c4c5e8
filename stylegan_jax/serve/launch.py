"""`stylegan-jax serve` in a child process, for the load benchmark and the tests: started
on a free loopback port, ready once it prints its URL, stopped with SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

URL_LINE = re.compile(r"serving on (http://\S+/)")


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    lines: list[str] = field(default_factory=list)  # everything it printed so far

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (in-flight requests finish), then its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def start(serve_args: list[str], timeout: float = 300.0, env: dict | None = None
          ) -> ServerProcess:
    """Runs `stylegan-jax serve --host 127.0.0.1 --port 0 *serve_args` and waits for its URL."""
    cmd = [sys.executable, "-m", "stylegan_jax.cli", "serve", "--host", "127.0.0.1",
           "--port", "0", *serve_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    lines: list[str] = []
    found = threading.Event()

    def read():  # keeps draining the pipe for the server's whole life
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if URL_LINE.search(line):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            tail = "\n".join(lines[-20:])
            raise RuntimeError(f"`{' '.join(cmd)}` did not start serving "
                               f"(exit status {proc.returncode}):\n{tail}")
    url = next(m.group(1) for line in lines if (m := URL_LINE.search(line)))
    return ServerProcess(proc, url, lines)
