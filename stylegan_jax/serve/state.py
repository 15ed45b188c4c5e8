"""What the server's handlers share, kept on the Starlette app as `app.state.serve`.

The handlers in `routes` are module-level functions, so everything that outlives a request
(the engine, the batcher, the encoder threads, the counters, the page, the sliders'
directions, the attribution queue) lives here.
"""

from __future__ import annotations

import concurrent.futures
import os
import string
from dataclasses import dataclass
from importlib import resources

from stylegan_jax.serve import params, sliders
from stylegan_jax.serve.attribution_queue import AttributionQueue
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
    sliders: sliders.Sliders  # the latent directions `edit` may name (maybe none)
    attribution: AttributionQueue | None  # POST /api/attribute, None where it cannot run
    attribution_off: str  # why there is no attribution, when there is none

    @property
    def spec(self) -> Spec:
        return self.engine.spec


def build_state(engine: BucketEngine, name: str, defaults: params.Defaults | None,
                window_s: float, queue_limit: int, encode_threads: int | None,
                edit_sliders: sliders.Sliders | None = None,
                attribution: AttributionQueue | None = None,
                attribution_off: str = "attribution is off on this server") -> ServeState:
    """Checks the defaults against the network (a bad one fails here, at start-up)."""
    return ServeState(
        engine=engine, name=name,
        defaults=params.check_defaults(engine.spec, defaults or params.Defaults()),
        queue_limit=queue_limit,
        batcher=Batcher(engine, engine.max_batch, window_s, queue_limit),
        encoder=concurrent.futures.ThreadPoolExecutor(
            encode_threads or min(8, os.cpu_count() or 1), "encode"),
        metrics=Metrics(), page=string.Template(_asset("page.html")),
        static={n: _asset(n) for n in STATIC},
        sliders=edit_sliders or sliders.none("this server has no latent directions"),
        attribution=attribution, attribution_off=attribution_off)
