"""The back office's HTTP API and web page (FastAPI; served by Ray Serve, see :mod:`workers.serve`).

Every route but ``/healthz``, the web page's static files and the sign-in needs an API token
(``ace tokens create --tenant NAME``), sent as ``Authorization: Bearer <token>``, or, for the web
page, a session: ``POST /session`` checks a token and sets the ``ace_session`` cookie (HttpOnly,
SameSite=Strict, 12 h) to a random session secret, never the token; the store keeps only its hash.
``DELETE /session`` ends the session on the server, and revoking the token ends its sessions. A tenant
sees and touches only its own streams, jobs and clips: another tenant's id answers 404, exactly
like an id that does not exist. Errors are JSON: ``{"error": "what is wrong", ...}``.

Limits (settings): request body size (413), events per request (413), string lengths and
shapes (422), requests per second per token (429 with Retry-After), stream submissions at once
(503 with Retry-After) and live streams per tenant (429).
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from ace.api.backend import Backend
from ace.api.deps import (
    COOKIE,
    OLD_COOKIE,
    SESSION_TTL_S,
    ApiError,
    RateLimiter,
    Tenant,
)
from ace.api.models import JobIn, JobItem, ReviewIn, SessionIn, StreamIn
from ace.api.routes import ROUTERS
from ace.api.routes.clips import srt_to_vtt
from ace.api.routes.session import STATIC
from ace.api.routes.streams import _IDEMPOTENCY_KEY
from ace.errors import Busy, InputError, NotFound, StreamFinished

log = logging.getLogger("ace.api")

__all__ = ["COOKIE", "OLD_COOKIE", "SESSION_TTL_S", "STATIC", "_IDEMPOTENCY_KEY", "ApiError", "BodyLimit", "JobIn",
           "JobItem", "RateLimiter", "ReviewIn", "SessionIn", "StreamIn", "Tenant", "build_app", "srt_to_vtt"]

#: the OpenAPI tags, in the order the docs page shows them
TAGS = [
    {"name": "meta", "description": "health, the web page's sign-in and sign-out, who am I"},
    {"name": "streams", "description": "live streams: submit, list, show, stop; the platform's events webhook"},
    {"name": "moments and clips", "description": "highlight moments, their clips (video, captions, thumbnail) and reviews"},
    {"name": "ramp", "description": "the traffic-ramp policy's level and decisions for a stream"},
    {"name": "batch jobs", "description": "reprocessing of recorded shows"},
    {"name": "products", "description": "a stream's products: their segments (where the host explains each), the segments' "
                                        "clips and the ad-wording phrases heard"},
    {"name": "settings", "description": "the tenant's own settings: its ad-wording list and its publish webhook"},
]


# ----------------------------------------------------------------------------------- body limit


class BodyLimit:
    """Answers 413 for a request whose Content-Length is over ``limit`` without reading it (a
    body without a length is capped while it is read, see :func:`ace.api.routes.streams._read_body`)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    try:
                        n = int(value)
                    except ValueError:
                        n = -1
                    if n < 0 or n > self.limit:
                        msg = "bad Content-Length" if n < 0 else f"request body of {n} bytes is over the limit of {self.limit}"
                        resp = JSONResponse({"error": msg}, status_code=400 if n < 0 else 413)
                        return await resp(scope, receive, send)
                    break
        return await self.app(scope, receive, send)


# ----------------------------------------------------------------------------------- the app


def build_app(backend: Backend) -> FastAPI:
    """The back office on ``backend``: its routers (:mod:`ace.api.routes`), errors as JSON, the
    body limit and the rate limiter per API token."""
    s = backend.settings
    # the docs pages' Swagger/ReDoc assets are served from the package, not a CDN (works offline)
    app = FastAPIOffline(title="ACE back office", version="0.1.0", openapi_tags=TAGS,
                         description="Live streams, highlight moments and clips, product segments and ad-wording checks, batch jobs and "
                                     "ramp decisions, per tenant.")
    app.state.backend = backend
    app.state.limiter = RateLimiter(s.api_rate, 2 * s.api_rate)

    # -- errors as JSON ---------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, e: ApiError):
        return JSONResponse({"error": e.message, **e.extra}, status_code=e.status, headers=e.headers)

    @app.exception_handler(NotFound)
    async def _not_found(_req: Request, e: NotFound):
        return JSONResponse({"error": str(e) or "not found"}, status_code=404)

    @app.exception_handler(InputError)  # Refused, and any other bad input
    async def _refused(_req: Request, e: InputError):
        return JSONResponse({"error": str(e)}, status_code=422)

    @app.exception_handler(StreamFinished)
    async def _finished(_req: Request, e: StreamFinished):
        return JSONResponse({"error": str(e)}, status_code=409)

    @app.exception_handler(Busy)
    async def _busy(_req: Request, e: Busy):
        return JSONResponse({"error": str(e)}, status_code=e.status, headers={"Retry-After": str(max(1, math.ceil(e.retry_after)))})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, e: RequestValidationError):
        problems = [f"{'.'.join(str(x) for x in err.get('loc', ()) if x != 'body') or 'body'}: {err.get('msg')}"
                    for err in e.errors()[:20]]
        return JSONResponse({"error": "invalid request: " + "; ".join(problems[:5]), "problems": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, e: StarletteHTTPException):
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RecursionError)
    async def _too_deep(_req: Request, _e: RecursionError):  # a JSON body nested deeper than the parser goes
        return JSONResponse({"error": "not valid JSON (nested too deeply)"}, status_code=400)

    @app.exception_handler(Exception)
    async def _crash(_req: Request, e: Exception):  # a bug answers 500 as JSON; the server keeps serving
        log.exception("request failed")
        return JSONResponse({"error": f"internal error ({type(e).__name__})"}, status_code=500)

    # -- body size: refuse before reading (a plain ASGI middleware: cheap on the hot path) --------
    app.add_middleware(BodyLimit, limit=s.api_max_body)

    # -- the routes: meta and the web page, streams (events, ramp), moments and clips, batch jobs, products, settings --
    for router in ROUTERS:
        app.include_router(router)
    return app
