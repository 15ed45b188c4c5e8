"""The server's handlers: the page at `/`, the image API (with latent edits), attribution
of an uploaded image, info, health, metrics, static files and the JSON error for any other
path. Each reads the shared `ServeState` from the app.

Seeded images are deterministic and cacheable; an unseeded request (and the page at `/`)
gets a fresh seed from the server and `Cache-Control: no-store`. Images are encoded, and
uploads decoded, in a thread pool so the event loop only ever routes, queues and answers.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import secrets
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from stylegan_jax.serve import codec, params, uploads
from stylegan_jax.serve.batcher import Overloaded
from stylegan_jax.serve.metrics import CONTENT_TYPE
from stylegan_jax.serve.render import Spec
from stylegan_jax.serve.state import STATIC, ServeState
from stylegan_jax.shapes import ImageShape
from stylegan_jax.tools.projection import fit_image

ROUTES = {"/": "page", "/api/image": "image", "/api/info": "info",
          "/api/attribute": "attribute", "/healthz": "healthz", "/metrics": "metrics",
          "/static/page.js": "static", "/static/page.css": "static"}
SEEDED_CACHE = "public, max-age=86400"


def _state(request: Request) -> ServeState:
    return request.app.state.serve


def _error(status: int, message: str, parameter: str | None = None,
           allowed: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": message}
    if parameter is not None:
        body |= {"parameter": parameter, "allowed": allowed}
    return JSONResponse(body, status, headers=headers)


def _query_or_error(request: Request) -> params.ImageQuery | Response:
    s = _state(request)
    try:
        return params.parse(s.spec, s.defaults, request.query_params, s.sliders.rule)
    except params.BadParameter as e:
        return _error(400, str(e), e.name, e.allowed)


def _image_query(spec: Spec, seed: int, q: params.ImageQuery) -> str:
    """The canonical query of an image: what a permalink needs, nothing at its default."""
    text = f"seed={seed}" + (f"&psi={q.psi!r}" if spec.truncates else "")
    if q.label is not None:
        text += f"&label={params.label_text(q.label)}"
    elif spec.c_dim:
        text += f"&class={q.class_idx}"
    if q.translate != (0.0, 0.0):
        text += f"&translate={q.translate[0]!r},{q.translate[1]!r}"
    text += f"&rotate={q.rotate!r}" if q.rotate else ""
    return text + (f"&edit={params.edit_text(q.edits)}" if q.edits else "")


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


async def page(request: Request) -> Response:
    q = _query_or_error(request)
    if isinstance(q, Response):
        return q
    s = _state(request)
    spec = s.spec
    seed = secrets.randbelow(params.SEED_MAX + 1) if q.seed is None else q.seed
    link = _image_query(spec, seed, q)
    values = dict(name=s.name, family=spec.family, width=spec.width, height=spec.height,
                  seed=seed,
                  psi=repr(q.psi), class_idx="" if q.class_idx is None else q.class_idx,
                  classes=spec.c_dim, class_names=json.dumps(list(spec.class_names)),
                  label_kind=_label_kind(spec) or "",
                  label="" if q.label is None else params.label_text(q.label),
                  truncates=str(spec.truncates).lower(), moves=str(spec.moves).lower(),
                  translate=f"{q.translate[0]!r},{q.translate[1]!r}",
                  rotate=repr(q.rotate), edit=params.edit_text(q.edits),
                  directions=json.dumps([{"index": d["index"], "name": d["name"]}
                                         for d in s.sliders.describe()]),
                  strength_max=f"{params.STRENGTH_MAX:g}",
                  attribute=str(s.attribution is not None).lower(),
                  max_bytes=uploads.MAX_BYTES,
                  image_url="/api/image?" + link, permalink="/?" + link)
    text = s.page.substitute({k: html.escape(str(v)) for k, v in values.items()})
    cache = "no-store" if q.seed is None else SEEDED_CACHE
    return HTMLResponse(text, headers={"Cache-Control": cache})


async def image(request: Request) -> Response:
    q = _query_or_error(request)
    if isinstance(q, Response):
        return q
    s = _state(request)
    seed = secrets.randbelow(params.SEED_MAX + 1) if q.seed is None else q.seed
    try:
        future = s.batcher.submit(seed, q.psi, q.condition, q.move, s.sliders.offset(q.edits))
    except Overloaded as e:
        return _error(503, f"server busy: {e}; retry shortly", headers={"Retry-After": "1"})
    try:
        img = await _result_unless_gone(request, future)
    except Exception as e:  # the generator failed for this batch; the server lives on
        return _error(500, f"generator failed: {type(e).__name__}: {e}")
    if img is None:
        s.metrics.disconnects += 1
        return Response(status_code=499)
    body = await asyncio.get_running_loop().run_in_executor(
        s.encoder, codec.encode, img, q.format)
    headers = {"Cache-Control": "no-store" if q.seed is None else SEEDED_CACHE,
               "X-Seed": str(seed), "X-Psi": repr(q.psi),
               "Content-Disposition": f'inline; filename="seed{seed:04d}.{q.format}"'}
    if q.class_idx is not None:
        headers["X-Class"] = str(q.class_idx)
    if q.label is not None:
        headers["X-Label"] = params.label_text(q.label)
    if s.spec.moves:
        headers |= {"X-Translate": f"{q.translate[0]!r},{q.translate[1]!r}",
                    "X-Rotate": repr(q.rotate)}
    if s.sliders.directions:
        headers["X-Edit"] = params.edit_text(q.edits)  # canonical: '' for none
    return Response(body, media_type=codec.MEDIA_TYPES[q.format], headers=headers)


def _prepare_upload(body: bytes, size: ImageShape, channels: int):
    """(the decoded upload, its uint8 target at the generator's size: its largest centred
    window of the generator's aspect ratio, resized); runs in a thread."""
    upload = uploads.decode(body)
    return upload, fit_image(upload.image, size, channels)


def _retry_after(s: ServeState) -> str:
    """Seconds until a place is likely free: the uploads in, at the mean projection time."""
    st = s.attribution.stats
    mean = st.busy_s / st.projections if st.projections else 1.0
    return str(max(1, math.ceil(mean * s.attribution.pending)))


async def attribute(request: Request) -> Response:
    """POST an image file as the body: is it one of this network's images? The projection
    distance, the threshold (and where it came from) and the verdict, as JSON."""
    s = _state(request)
    a = s.attribution
    if a is None:
        return _error(501, f"attribution: not on this server: {s.attribution_off}")
    spec, t0 = s.spec, time.perf_counter()
    try:
        uploads.check_length(request)
        with a.admit():
            body = await uploads.read_body(request)
            upload, target = await asyncio.get_running_loop().run_in_executor(
                s.encoder, _prepare_upload, body, ImageShape(spec.height, spec.width),
                spec.channels)
            del body
            t1 = time.perf_counter()
            result = await _result_unless_gone(request, a.submit(target))
    except uploads.BadUpload as e:
        return _error(e.status, str(e), "body", uploads.allowed())
    except Overloaded as e:
        return _error(503, f"attribution busy: {e}; retry shortly",
                      headers={"Retry-After": _retry_after(s)})
    except Exception as e:  # a projection failed; the server lives on
        return _error(500, f"attribution failed: {type(e).__name__}: {e}")
    if result is None:
        s.metrics.disconnects += 1
        return Response(status_code=499)
    seconds = time.perf_counter() - t1
    return JSONResponse({
        "verdict": result["verdict"], "distance": result["distance"],
        "distance_name": a.projector.distance_name, "threshold": result["threshold"],
        "threshold_source": a.threshold_source, "steps": a.projector.steps,
        "seconds": result["seconds"], "waited_seconds": seconds - result["seconds"],
        "total_seconds": time.perf_counter() - t0, "network": s.name,
        "image": {"format": upload.format, "width": upload.width, "height": upload.height},
    }, headers={"Cache-Control": "no-store"})


def _attribution_info(s: ServeState) -> dict:
    a = s.attribution
    if a is None:
        return {"available": False, "reason": s.attribution_off}
    return {"available": True, "ready": a.ready, "failed": a.failed,
            "distance_name": a.projector.distance_name, "steps": a.projector.steps,
            "threshold": a.threshold, "threshold_source": a.threshold_source,
            "queue_limit": a.limit, "max_bytes": uploads.MAX_BYTES,
            "max_pixels": uploads.MAX_PIXELS, "allowed": uploads.allowed()}


def _label_kind(spec: Spec) -> str | None:
    """What the network's c is: 'vector' (label vectors), 'class' (one-hot), None (none)."""
    if not spec.c_dim:
        return None
    return "vector" if spec.vector_labels else "class"


async def info(request: Request) -> Response:
    s = _state(request)
    spec, label = s.spec, s.defaults.label
    return JSONResponse({
        "name": s.name, "family": spec.family, "resolution": spec.resolution,
        "width": spec.width, "height": spec.height,
        "channels": spec.channels, "classes": spec.c_dim,
        "class_names": list(spec.class_names), "z_dim": spec.z_dim,
        "label_kind": _label_kind(spec), "label_dim": spec.c_dim,
        "label_default": None if label is None else list(label),
        "label_allowed": params.label_allowed(spec),
        "class_allowed": params.class_allowed(spec),
        "psi_default": s.defaults.psi, "class_default": s.defaults.class_idx,
        "psi_allowed": params.psi_allowed(spec), "truncation": spec.truncates,
        "moves": spec.moves, "translate_allowed": params.translate_allowed(spec),
        "rotate_allowed": params.rotate_allowed(spec),
        "noise_mode": s.engine.noise_mode, "formats": sorted(codec.MEDIA_TYPES),
        "buckets": list(s.engine.buckets), "queue_limit": s.queue_limit,
        "directions": s.sliders.describe(), "directions_source": s.sliders.source,
        "edit_allowed": params.edit_allowed(s.sliders.rule),
        "strength_range": [-params.STRENGTH_MAX, params.STRENGTH_MAX],
        "attribution": _attribution_info(s),
    })


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics_text(request: Request) -> Response:
    s = _state(request)
    metrics, batcher, b = s.metrics, s.batcher, s.batcher.stats
    gauges = {
        "sgj_requests_in_flight": ("Requests being answered (this one included).",
                                   metrics.in_flight),
        "sgj_queue_depth": ("Requests waiting for a batch.", batcher.depth),
        "sgj_batches_total": ("Generator calls.", b.batches),
        "sgj_batch_images_total": ("Images rendered (without bucket padding).", b.images),
        "sgj_generator_busy_seconds_total": ("Seconds inside the generator.", b.busy_s),
        "sgj_dropped_total": ("Requests dropped: client left before its batch.", b.dropped),
        "sgj_disconnects_total": ("Clients that left while waiting.", metrics.disconnects),
    }
    if (a := s.attribution) is not None:
        gauges |= {
            "sgj_attribution_pending": ("Uploads in the server (read, queued, projected).",
                                        a.pending),
            "sgj_attribution_projections_total": ("Projections answered.",
                                                  a.stats.projections),
            "sgj_attribution_busy_seconds_total": ("Seconds inside projections.",
                                                   a.stats.busy_s),
            "sgj_attribution_refused_total": ("Uploads refused: the queue was full.",
                                              a.stats.refused),
        }
    return Response(metrics.render(gauges), media_type=CONTENT_TYPE)


async def static_file(request: Request) -> Response:
    static, n = _state(request).static, request.path_params["name"]
    if n not in static:
        allowed = "one of " + ", ".join(f"/static/{k}" for k in sorted(static))
        return _error(404, f"path: got {request.url.path!r}, expected {allowed}", "path",
                      allowed)
    return Response(static[n], media_type=STATIC[n],
                    headers={"Cache-Control": "public, max-age=300"})


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Any path or method the routes do not take, answered in the API's JSON error shape."""
    if exc.status_code == 404:
        allowed = "one of " + ", ".join(p for p in ROUTES if not p.startswith("/static"))
        return _error(404, f"path: got {request.url.path!r}, expected {allowed}", "path",
                      allowed)
    return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                  headers=exc.headers)
