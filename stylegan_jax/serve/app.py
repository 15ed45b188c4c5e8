"""The Starlette application: one `ServeState` on `app.state.serve`, the route table over
`routes`' handlers, request metrics, and a lifespan that starts the attribution worker and
drains the batcher on exit."""

from __future__ import annotations

import contextlib
import time

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from stylegan_jax.serve import params, routes
from stylegan_jax.serve.attribution_queue import AttributionQueue
from stylegan_jax.serve.engine import BucketEngine
from stylegan_jax.serve.metrics import Metrics
from stylegan_jax.serve.sliders import Sliders
from stylegan_jax.serve.state import ServeState, build_state


class MetricsMiddleware:
    """Counts every response by route (a fixed set of names) and status, with latency."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [499]  # 499: the client left before an answer

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight -= 1
            route = routes.ROUTES.get(scope["path"], "other")
            self.metrics.observe(route, status[0], time.perf_counter() - t0)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette):
    state: ServeState = app.state.serve
    state.batcher.start()
    if state.attribution is not None:
        state.attribution.start()  # its warm-up and calibration begin on its own thread
    try:
        yield
    finally:
        await state.batcher.stop()  # every queued request is answered before exit
        if state.attribution is not None:
            state.attribution.stop()  # every accepted upload was answered before this
        state.encoder.shutdown(wait=True)


def create_app(engine: BucketEngine, name: str, defaults: params.Defaults | None = None,
               window_s: float = 0.005, queue_limit: int = 256,
               encode_threads: int | None = None, sliders: Sliders | None = None,
               attribution: AttributionQueue | None = None,
               attribution_off: str = "attribution is off on this server") -> Starlette:
    """`sliders`: the directions `edit` may name (default: none); `attribution`: the queue
    behind POST /api/attribute, or None and `attribution_off` says why."""
    state = build_state(engine, name, defaults, window_s, queue_limit, encode_threads,
                        sliders, attribution, attribution_off)
    app = Starlette(
        routes=[Route("/", routes.page), Route("/api/image", routes.image),
                Route("/api/info", routes.info), Route("/healthz", routes.healthz),
                Route("/api/attribute", routes.attribute, methods=["POST"]),
                Route("/metrics", routes.metrics_text),
                Route("/static/{name}", routes.static_file)],
        exception_handlers={HTTPException: routes.http_error}, lifespan=_lifespan)
    app.state.serve = state
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app
