"""`stylegan-jax serve`: a page with a new face on every load, and an image API.

Loads a generator (as `generate` does; default: the face network shipped with the
package), compiles one program per batch bucket before accepting a connection, prints
the URL and the warm-up time, then serves on uvicorn until SIGINT / SIGTERM, answering
every request already accepted before it exits.
"""

from __future__ import annotations

import argparse
import signal
import socket
from pathlib import Path

from stylegan_jax.model_store import Network
from stylegan_jax.models import stylegan2


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--network", type=Path, help="an official .pkl, a directory written by "
                     "`stylegan-jax convert`, or a training workdir (default: the face "
                     "network shipped with the package)")
    src.add_argument("--workdir", type=Path, help="a training workdir: its newest checkpoint")
    src.add_argument("--random-init", action="store_true",
                     help="a small randomly initialised generator (for trying the server)")
    p.add_argument("--which", default=None, help="network name in the directory or pickle "
                   "(default: G_ema if present, else G)")
    p.add_argument("--resolution", type=int, default=32, help="with --random-init")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "loopback only; 0.0.0.0 serves the network)")
    p.add_argument("--port", type=int, default=8000, help="0: any free port")
    p.add_argument("--trunc", type=float, default=1.0, help="default truncation psi")
    p.add_argument("--class", dest="class_idx", type=int, default=None,
                   help="default class of a conditional generator (default: 0)")
    p.add_argument("--noise-mode", choices=stylegan2.NOISE_MODES, default="const",
                   help="random: each seed draws its own noise, as `generate --seeds N`")
    p.add_argument("--max-batch", type=int, default=32,
                   help="largest generator batch; buckets 1, 2, 4, ... up to it")
    p.add_argument("--batch-window-ms", type=float, default=5.0,
                   help="how long the first request of a batch waits for others")
    p.add_argument("--queue-limit", type=int, default=256,
                   help="requests that may wait; beyond it: 503 with Retry-After")
    p.add_argument("--name", default=None, help="name shown on the page (default: the "
                   "network's directory or file name)")


def load(args: argparse.Namespace) -> tuple[Network, str]:
    """The generator the flags name, and a display name for it."""
    from stylegan_jax.generate import load_generator, random_generator

    if args.random_init:
        return random_generator(args.resolution), f"random-init-{args.resolution}"
    source = args.network or args.workdir
    if source is None:
        from stylegan_jax import pretrained

        source = pretrained.path()
    source = Path(source).absolute()
    return load_generator(source, args.which), source.stem


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound before warm-up so a taken port fails at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({e})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from stylegan_jax.serve.app import create_app
    from stylegan_jax.serve.engine import Engine
    from stylegan_jax.serve.params import Defaults

    if args.batch_window_ms < 0:
        raise ValueError(f"--batch-window-ms must be >= 0, got {args.batch_window_ms}")
    sock = bind(args.host, args.port)
    net, name = load(args)
    engine = Engine(net, args.noise_mode, args.max_batch)
    app = create_app(engine, args.name or name, Defaults(args.trunc, args.class_idx),
                     args.batch_window_ms / 1000, args.queue_limit)
    seconds = engine.warm_up()
    s = engine.spec
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(f"{args.name or name}: {s.family} {s.resolution}x{s.resolution}, buckets "
          f"{','.join(map(str, engine.buckets))} warmed up in {seconds:.1f} s", flush=True)
    print(f"serving on http://{url_host}:{port}/", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30,
                            access_log=False)
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then re-raises the signal into
    # the handler it found: this one notes it, so the command ends with status 0.
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _: caught.append(s))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    how = signal.Signals(caught[0]).name if caught else "shutdown"
    print(f"stopped ({how}) after answering every accepted request", flush=True)
    return 0
