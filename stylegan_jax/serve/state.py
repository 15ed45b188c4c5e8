"""What the server's handlers share, kept on the Starlette app as `app.state.serve`.

The handlers in `routes` are module-level functions, so everything that outlives a request
(the engine, the batcher, the encoder threads, the counters, the page) lives here.
"""

from __future__ import annotations

import concurrent.futures
import os
import string
from dataclasses import dataclass
from importlib import resources

from stylegan_jax.serve import params
from stylegan_jax.serve.batcher import Batcher
from stylegan_jax.serve.engine import BucketEngine
from stylegan_jax.serve.metrics import Metrics
from stylegan_jax.serve.render import Spec

STATIC = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class ServeState:
    engine: BucketEngine
    name: str
    defaults: params.Defaults
    queue_limit: int
    batcher: Batcher
    encoder: concurrent.futures.ThreadPoolExecutor  # PNG/JPEG encoding off the event loop
    metrics: Metrics
    page: string.Template
    static: dict[str, str]  # file name under /static/ -> its text

    @property
    def spec(self) -> Spec:
        return self.engine.spec


def build_state(engine: BucketEngine, name: str, defaults: params.Defaults | None,
                window_s: float, queue_limit: int, encode_threads: int | None) -> ServeState:
    """Checks the defaults against the network (a bad one fails here, at start-up)."""
    return ServeState(
        engine=engine, name=name,
        defaults=params.check_defaults(engine.spec, defaults or params.Defaults()),
        queue_limit=queue_limit,
        batcher=Batcher(engine, engine.max_batch, window_s, queue_limit),
        encoder=concurrent.futures.ThreadPoolExecutor(
            encode_threads or min(8, os.cpu_count() or 1), "encode"),
        metrics=Metrics(), page=string.Template(_asset("page.html")),
        static={n: _asset(n) for n in STATIC})
