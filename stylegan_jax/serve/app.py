"""The Starlette application: the page at `/`, the image API, info, health and metrics.

Seeded images are deterministic and cacheable; an unseeded request (and the page at `/`)
gets a fresh seed from the server and `Cache-Control: no-store`. Images are encoded in a
thread pool so the event loop only ever routes, queues and answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import html
import os
import secrets
import string
import time
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from stylegan_jax.serve import codec, params
from stylegan_jax.serve.batcher import Batcher, Overloaded
from stylegan_jax.serve.engine import Engine
from stylegan_jax.serve.metrics import CONTENT_TYPE, Metrics

ROUTES = {"/": "page", "/api/image": "image", "/api/info": "info", "/healthz": "healthz",
          "/metrics": "metrics", "/static/page.js": "static", "/static/page.css": "static"}
STATIC = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
SEEDED_CACHE = "public, max-age=86400"


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _error(status: int, message: str, parameter: str | None = None,
           allowed: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": message}
    if parameter is not None:
        body |= {"parameter": parameter, "allowed": allowed}
    return JSONResponse(body, status, headers=headers)


async def _result_unless_gone(request: Request, future: asyncio.Future):
    """The future's result, or None when the client disconnects first (the future is
    then cancelled, so the batcher skips it if its batch has not run yet)."""

    async def gone():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({future, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not future.done():
            future.cancel()
    return None if future.cancelled() else future.result()


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
            route = ROUTES.get(scope["path"], "other")
            self.metrics.observe(route, status[0], time.perf_counter() - t0)


def create_app(engine: Engine, name: str, defaults: params.Defaults | None = None,
               window_s: float = 0.005, queue_limit: int = 256,
               encode_threads: int | None = None) -> Starlette:
    spec = engine.spec
    defaults = params.check_defaults(spec, defaults or params.Defaults())
    batcher = Batcher(engine, engine.max_batch, window_s, queue_limit)
    encoder = concurrent.futures.ThreadPoolExecutor(
        encode_threads or min(8, os.cpu_count() or 1), "encode")
    metrics = Metrics()
    template = string.Template(_asset("page.html"))
    static = {n: _asset(n) for n in STATIC}

    def query_or_error(request: Request):
        try:
            return params.parse(spec, defaults, request.query_params)
        except params.BadParameter as e:
            return _error(400, str(e), e.name, e.allowed)

    def image_query(seed: int, q: params.ImageQuery) -> str:
        """The canonical query of an image: what a permalink needs, nothing at its default."""
        text = f"seed={seed}" + (f"&psi={q.psi!r}" if spec.truncates else "")
        text += f"&class={q.class_idx}" if spec.c_dim else ""
        if q.translate != (0.0, 0.0):
            text += f"&translate={q.translate[0]!r},{q.translate[1]!r}"
        return text + (f"&rotate={q.rotate!r}" if q.rotate else "")

    async def page(request: Request) -> Response:
        q = query_or_error(request)
        if isinstance(q, Response):
            return q
        seed = secrets.randbelow(params.SEED_MAX + 1) if q.seed is None else q.seed
        link = image_query(seed, q)
        values = dict(name=name, family=spec.family, resolution=spec.resolution, seed=seed,
                      psi=repr(q.psi), class_idx="" if q.class_idx is None else q.class_idx,
                      classes=spec.c_dim, class_max=max(spec.c_dim - 1, 0),
                      truncates=str(spec.truncates).lower(), moves=str(spec.moves).lower(),
                      translate=f"{q.translate[0]!r},{q.translate[1]!r}",
                      rotate=repr(q.rotate),
                      image_url="/api/image?" + link, permalink="/?" + link)
        text = template.substitute({k: html.escape(str(v)) for k, v in values.items()})
        cache = "no-store" if q.seed is None else SEEDED_CACHE
        return HTMLResponse(text, headers={"Cache-Control": cache})

    async def image(request: Request) -> Response:
        q = query_or_error(request)
        if isinstance(q, Response):
            return q
        seed = secrets.randbelow(params.SEED_MAX + 1) if q.seed is None else q.seed
        try:
            future = batcher.submit(seed, q.psi, q.class_idx, q.move)
        except Overloaded as e:
            return _error(503, f"server busy: {e}; retry shortly", headers={"Retry-After": "1"})
        try:
            img = await _result_unless_gone(request, future)
        except Exception as e:  # the generator failed for this batch; the server lives on
            return _error(500, f"generator failed: {type(e).__name__}: {e}")
        if img is None:
            metrics.disconnects += 1
            return Response(status_code=499)
        body = await asyncio.get_running_loop().run_in_executor(
            encoder, codec.encode, img, q.format)
        headers = {"Cache-Control": "no-store" if q.seed is None else SEEDED_CACHE,
                   "X-Seed": str(seed), "X-Psi": repr(q.psi),
                   "Content-Disposition": f'inline; filename="seed{seed:04d}.{q.format}"'}
        if q.class_idx is not None:
            headers["X-Class"] = str(q.class_idx)
        if spec.moves:
            headers |= {"X-Translate": f"{q.translate[0]!r},{q.translate[1]!r}",
                        "X-Rotate": repr(q.rotate)}
        return Response(body, media_type=codec.MEDIA_TYPES[q.format], headers=headers)

    async def info(request: Request) -> Response:
        return JSONResponse({
            "name": name, "family": spec.family, "resolution": spec.resolution,
            "channels": spec.channels, "classes": spec.c_dim, "z_dim": spec.z_dim,
            "psi_default": defaults.psi, "class_default": defaults.class_idx,
            "psi_allowed": params.psi_allowed(spec), "truncation": spec.truncates,
            "moves": spec.moves, "translate_allowed": params.translate_allowed(spec),
            "rotate_allowed": params.rotate_allowed(spec),
            "noise_mode": engine.noise_mode, "formats": sorted(codec.MEDIA_TYPES),
            "buckets": list(engine.buckets), "queue_limit": queue_limit,
        })

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_text(request: Request) -> Response:
        s = batcher.stats
        gauges = {
            "sgj_requests_in_flight": ("Requests being answered (this one included).",
                                       metrics.in_flight),
            "sgj_queue_depth": ("Requests waiting for a batch.", batcher.depth),
            "sgj_batches_total": ("Generator calls.", s.batches),
            "sgj_batch_images_total": ("Images rendered (without bucket padding).", s.images),
            "sgj_generator_busy_seconds_total": ("Seconds inside the generator.", s.busy_s),
            "sgj_dropped_total": ("Requests dropped: client left before its batch.", s.dropped),
            "sgj_disconnects_total": ("Clients that left while waiting.", metrics.disconnects),
        }
        return Response(metrics.render(gauges), media_type=CONTENT_TYPE)

    async def static_file(request: Request) -> Response:
        n = request.path_params["name"]
        if n not in static:
            allowed = "one of " + ", ".join(f"/static/{k}" for k in sorted(static))
            return _error(404, f"path: got {request.url.path!r}, expected {allowed}", "path",
                          allowed)
        return Response(static[n], media_type=STATIC[n],
                        headers={"Cache-Control": "public, max-age=300"})

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            allowed = "one of " + ", ".join(p for p in ROUTES if not p.startswith("/static"))
            return _error(404, f"path: got {request.url.path!r}, expected {allowed}", "path",
                          allowed)
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                      headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()  # every queued request is answered before exit
            encoder.shutdown(wait=True)

    app = Starlette(
        routes=[Route("/", page), Route("/api/image", image), Route("/api/info", info),
                Route("/healthz", healthz), Route("/metrics", metrics_text),
                Route("/static/{name}", static_file)],
        exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.batcher, app.state.metrics = batcher, metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
