"""`stylegan-jax serve`: a page with a new face on every load, editing sliders, an "is this
face real?" drop zone, and an image API.

Loads a generator as every tool does (`generate.add_network_arguments`; default:
the face network shipped with the package; --class / --label: what a conditional one renders
unless a request says, by generate's rules: a network trained on label vectors takes --label
only, and without it renders the zero vector), finds its sliders' latent directions
(--directions, else SeFa), compiles one program per batch bucket before accepting a
connection, prints the URL and the warm-up time, then serves on uvicorn until SIGINT /
SIGTERM, answering every request already accepted before it exits. Attribution
(POST /api/attribute) compiles its projection and calibrates its threshold on its own
thread after start-up; uploads wait for that, images do not.
"""

from __future__ import annotations

import argparse
import signal
import socket
from pathlib import Path
from typing import NamedTuple

import uvicorn
from starlette.applications import Starlette

from stylegan_jax.generate import (
    add_class_argument,
    add_network_arguments,
    class_from_args,
    class_names_from_args,
    label_kind_from_args,
    named_network_from_args,
)
from stylegan_jax.models import stylegan2
from stylegan_jax.serve import params, projector, sliders
from stylegan_jax.serve.app import create_app
from stylegan_jax.serve.attribution_queue import AttributionQueue
from stylegan_jax.serve.engine import BucketEngine, Engine
from stylegan_jax.serve.exported import ExportedEngine
from stylegan_jax.serve.params import Defaults


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = add_network_arguments(p)
    src.add_argument("--workdir", type=Path, help="a training workdir: its newest checkpoint")
    src.add_argument("--exported", type=Path, metavar="ARTIFACT",
                     help="a StableHLO or SavedModel artifact of `stylegan-jax export` (input "
                     "z): serves its program, no network is built")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "loopback only; 0.0.0.0 serves the network)")
    p.add_argument("--port", type=int, default=8000, help="0: any free port")
    p.add_argument("--trunc", type=float, default=1.0, help="default truncation psi")
    add_class_argument(p)
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
    e = p.add_argument_group("editing sliders (the API's edit=K:STRENGTH,...)")
    e.add_argument("--directions", type=Path, default=None, metavar="FILE.npz",
                   help="latent directions made by `stylegan-jax directions` (default: SeFa "
                   "directions computed at start-up)")
    e.add_argument("--sliders", type=int, default=None, metavar="N",
                   help=f"how many directions to offer (default: {sliders.DEFAULT_SLIDERS} "
                   "SeFa directions, or all of --directions; 0 turns the sliders off)")
    a = p.add_argument_group("attribution (POST /api/attribute: is this image the network's?)")
    a.add_argument("--attribute-steps", type=int, default=None, metavar="N",
                   help=f"projection steps per upload (default: {projector.DEFAULT_STEPS}, or "
                   "the --attribute-calibration file's; the official projector's is 1000)")
    thr = a.add_mutually_exclusive_group()
    thr.add_argument("--attribute-threshold", type=float, default=None, metavar="D",
                     help="distance at or below which an image is called generated")
    thr.add_argument("--attribute-calibration", type=Path, default=None, metavar="FILE.json",
                     help="a calibration of `stylegan-jax attribute --calibrate` (default, "
                     "with neither: self-calibration on the network's own images, once, "
                     "before the first answer)")
    a.add_argument("--attribute-queue", type=int, default=projector.DEFAULT_QUEUE, metavar="N",
                   help="uploads in the server at once (one projected at a time); beyond "
                   f"it: 503 with Retry-After (default: {projector.DEFAULT_QUEUE}; 0 turns "
                   "attribution off)")
    a.add_argument("--vgg16-weights", default=None, help="torchvision vgg16-*.pth for the "
                   "LPIPS distance (default: as the metrics find it; without the weight "
                   "files the distance is a named pixel-space fallback, named in every answer)")
    a.add_argument("--lpips-weights", default=None, help="LPIPS v0.1 vgg.pth (default: as "
                   "the metrics find it)")


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


class Served(NamedTuple):
    """What the flags serve, before warm-up: nothing is compiled yet."""

    app: Starlette
    engine: BucketEngine
    name: str
    sliders: sliders.Sliders
    attribution: AttributionQueue | None
    attribution_off: str  # why there is no attribution, when there is none


def build(args: argparse.Namespace) -> Served:
    """The app of the flags; a bad flag fails here, before anything compiles."""
    if args.exported:
        if args.noise_mode != "const":
            raise ValueError("--noise-mode: an exported generator has its noise mode built in "
                             "(`stylegan-jax export --noise-mode`)")
        if args.directions is not None or args.sliders:
            raise ValueError("--directions / --sliders: an exported artifact takes z only; "
                             "it has no ws to edit")
        engine, name = ExportedEngine(args.exported, args.max_batch), args.exported.name
        net = None
        edits = sliders.none("an exported artifact takes z only: it has no ws to edit")
    else:
        net, name = named_network_from_args(args)
        if args.class_idx is not None or args.label is not None:
            # generate's rules and messages: a name -> its index, --label checked, --class
            # refused (naming --label) on a network trained on label vectors.
            condition = class_from_args(args, net)
            if args.label is None:
                args.class_idx = condition
        engine = Engine(net, args.noise_mode, args.max_batch, class_names_from_args(args, net),
                        label_kind_from_args(args, net))
        edits = sliders.for_network(net, args.directions, args.sliders)
    attribution, attribution_off = projector.attribution_for(
        net, args.attribute_steps, args.attribute_queue, args.attribute_threshold,
        args.attribute_calibration, args.vgg16_weights, args.lpips_weights)
    app = create_app(engine, args.name or name, Defaults(args.trunc, args.class_idx, args.label),
                     args.batch_window_ms / 1000, args.queue_limit, sliders=edits,
                     attribution=attribution, attribution_off=attribution_off)
    return Served(app, engine, args.name or name, edits, attribution, attribution_off)


def run(args: argparse.Namespace) -> int:
    if args.batch_window_ms < 0:
        raise ValueError(f"--batch-window-ms must be >= 0, got {args.batch_window_ms}")
    sock = bind(args.host, args.port)
    app, engine, name, edits, attribution, attribution_off = build(args)
    seconds = engine.warm_up()
    s = engine.spec
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(f"{name}: {s.family} {s.width}x{s.height}, buckets "
          f"{','.join(map(str, engine.buckets))} warmed up in {seconds:.1f} s", flush=True)
    label = app.state.serve.defaults.label
    if s.vector_labels:
        print(f"labels: vectors of {s.c_dim} numbers (label=V1,V2,...), default "
              f"{params.label_text(label)}", flush=True)
    names = ", ".join(d.name for d in edits.directions)
    print(f"sliders: {names} ({edits.source})" if names else f"sliders: none ({edits.source})",
          flush=True)
    if attribution is None:
        print(f"attribution: none ({attribution_off})", flush=True)
    else:
        p = attribution.projector
        print(f"attribution: {p.distance_name} distance, {p.steps} projection steps, "
              f"threshold from {attribution.threshold_source}", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30,
                            access_log=False)
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then re-raises the signal into
    # the handler it found: this one notes it, so the command ends with status 0. It is in
    # place before the URL is printed, and a signal that comes before uvicorn has put in
    # its own handlers stops the server as soon as it has started.
    caught: list[int] = []

    def note(sig, _frame):
        caught.append(sig)
        server.should_exit = True

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"serving on http://{url_host}:{port}/", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    how = signal.Signals(caught[0]).name if caught else "shutdown"
    print(f"stopped ({how}) after answering every accepted request", flush=True)
    return 0
