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

import asyncio
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from ace.api.backend import Backend
from ace.errors import Busy, InputError, NotFound, StreamFinished
from ace.policy.state import CATEGORIES
from ace.store import TOKEN_PREFIX

log = logging.getLogger("ace.api")

STATIC = Path(__file__).with_name("static")
#: the web page's session cookie: a session secret (see ``Store.create_session``), never an API token
COOKIE = "ace_session"
#: the cookie older versions set to the API token itself: cleared at sign-in and sign-out, never read
OLD_COOKIE = "ace_token"
#: how long a web page session lives (the cookie's max-age too)
SESSION_TTL_S = 12 * 3600
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MOMENT_ID = re.compile(r"[A-Za-z0-9_:.-]{1,128}")
#: an Idempotency-Key: visible ASCII, spaces inside allowed (a header's value has no edge spaces)
_IDEMPOTENCY_KEY = re.compile(r"[!-~](?:[ -~]{0,198}[!-~])?")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers or {}, extra


# ----------------------------------------------------------------------------------- models


class StreamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048, description="http(s) HLS / HTTP-FLV, rtmp(s) or rtsp(s) URL")
    name: str = Field("", max_length=100)
    products: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=100)
    events: str | None = Field(None, max_length=2048, description="an http(s) JSONL events source, optional")
    category: str = Field("other", description=f"one of {', '.join(CATEGORIES)}")
    budget: float | None = Field(None, ge=0, strict=True, description="promoted impressions the room may receive in total")

    @field_validator("category")
    @classmethod
    def _category(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in CATEGORIES:
            raise ValueError(f"unknown category {v!r}; expected one of {', '.join(CATEGORIES)}")
        return v

    @field_validator("budget")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("budget must be a finite number")
        return v


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["approve", "reject"]
    note: str = Field("", max_length=2000)


class JobItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, max_length=1024, description="a file inside the media folder")
    url: str | None = Field(None, max_length=2048, description="an http(s) URL of a recorded show")


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=100)
    items: list[JobItem] = Field(min_length=1, max_length=100)


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=200)


# ----------------------------------------------------------------------------------- rate limit


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = float(rate), float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        level, at = self._buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - at) * self.rate)
        if level >= 1.0:
            self._buckets[key] = (level - 1.0, now)
            return 0.0
        self._buckets[key] = (level, now)
        if len(self._buckets) > 100_000:  # forget idle keys
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
        return (1.0 - level) / self.rate


# ----------------------------------------------------------------------------------- body limit


class BodyLimit:
    """Answers 413 for a request whose Content-Length is over ``limit`` without reading it (a
    body without a length is capped while it is read, see :func:`_read_body`)."""

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


# ----------------------------------------------------------------------------------- auth


async def _tenant(request: Request) -> str:
    """The caller's tenant, from a Bearer token or the web page's session cookie; 401 / 429 otherwise.
    A session is looked up in the store on every request (no cache), so sign-out and a revoked
    token end it at once, on every replica. Requests are counted per API token, sessions included."""
    backend = request.app.state.backend
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        if not token:
            raise ApiError(401, "an API token is needed (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"})
        who = await backend.tenant_of(token)
        if who is None:
            raise ApiError(401, "unknown or revoked API token", {"WWW-Authenticate": "Bearer"})
        key = _token_id(token)
    elif request.cookies.get(COOKIE):
        found = await backend._db(backend.store.get_session, request.cookies[COOKIE])
        if found is None:
            raise ApiError(401, "the session has ended (signed out, expired or its token revoked); sign in with an API token",
                           {"WWW-Authenticate": "Bearer"})
        who, key = found["tenant"], found["token_id"]
    else:
        raise ApiError(401, "an API token is needed (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"})
    _take(request, key)
    return who


def _token_id(token: str) -> str:
    """An API token's id (``ace_<id>_<secret>``): the rate limit's key, shared with its sessions."""
    return token[len(TOKEN_PREFIX):].split("_", 1)[0] if token.startswith(TOKEN_PREFIX) else token


def _take(request: Request, key: str) -> None:
    wait = request.app.state.limiter.take(key)
    if wait > 0:
        raise ApiError(429, "too many requests for this token", {"Retry-After": str(max(1, math.ceil(wait)))})


Tenant = Annotated[str, Depends(_tenant)]


# ----------------------------------------------------------------------------------- the app


def build_app(backend: Backend) -> FastAPI:
    s = backend.settings
    # the docs pages' Swagger/ReDoc assets are served from the package, not a CDN (works offline)
    app = FastAPIOffline(title="ACE back office", version="0.1.0",
                         description="Live streams, highlight moments and clips, batch jobs and ramp decisions, per tenant.")
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

    def _sid(sid: str) -> str:
        if not _ID.fullmatch(sid):
            raise NotFound(f"no stream {sid[:80]!r}")
        return sid

    def _mid(mid: str) -> str:
        if not _MOMENT_ID.fullmatch(mid):
            raise NotFound(f"no clip {mid[:80]!r}")
        return mid

    # -- health, page, session -----------------------------------------------------------

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict:
        return {"ok": True}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        allowed = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in allowed:
            raise NotFound("no such file")
        return FileResponse(allowed[name])

    @app.post("/session", tags=["meta"])
    async def sign_in(body: SessionIn, request: Request) -> Response:
        """Sign the web page in: a valid API token opens a session, whose secret (not the token) is
        set as an HttpOnly cookie for :data:`SESSION_TTL_S` seconds."""
        who = await backend.tenant_of(body.token)
        if who is not None:
            _take(request, _token_id(body.token))  # sign-ins count against the token's rate too
        secret = await backend._db(backend.store.create_session, body.token, SESSION_TTL_S) if who else None
        if secret is None:
            raise ApiError(401, "unknown or revoked API token")
        resp = JSONResponse({"tenant": who})
        resp.set_cookie(COOKIE, secret, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        max_age=SESSION_TTL_S)
        if OLD_COOKIE in request.cookies:
            resp.delete_cookie(OLD_COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return resp

    @app.delete("/session", tags=["meta"])
    async def sign_out(request: Request) -> Response:
        """Sign out: the session ends on the server (its cookie value is refused from now on, even
        replayed) and the cookie is deleted."""
        secret = request.cookies.get(COOKIE)
        if secret:
            await backend._db(backend.store.revoke_session, secret)
        resp = JSONResponse({"ok": True})
        for name in (COOKIE, OLD_COOKIE):
            resp.delete_cookie(name, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return resp

    @app.get("/me", tags=["meta"])
    async def me(who: Tenant) -> dict:
        return {"tenant": who}

    # -- streams -------------------------------------------------------------------------

    @app.post("/streams", status_code=201, tags=["streams"])
    async def submit_stream(body: StreamIn, who: Tenant) -> dict:
        return await backend.submit_stream(who, body.url, body.name, body.products, body.events, body.category, body.budget)

    @app.get("/streams", tags=["streams"])
    async def list_streams(who: Tenant) -> list[dict]:
        return await backend.streams(who)

    @app.get("/streams/{sid}", tags=["streams"])
    async def get_stream(sid: str, who: Tenant) -> dict:
        return await backend.stream(who, _sid(sid))

    @app.post("/streams/{sid}/stop", tags=["streams"])
    async def stop_stream(sid: str, who: Tenant) -> dict:
        return await backend.stop_stream(who, _sid(sid))

    @app.post("/streams/{sid}/events", tags=["streams"])
    async def push_events(sid: str, request: Request, who: Tenant) -> dict:
        """A JSON array of events, or NDJSON (one event per line). All or nothing: one bad event
        refuses the request, naming it. An ``Idempotency-Key`` header makes a retried batch count once."""
        sid = _sid(sid)
        body = await _read_body(request, s.api_max_body)
        events = _parse_events(body, request.headers.get("content-type", ""), s.api_max_events)
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
            raise ApiError(422, "Idempotency-Key must be 1-200 printable ASCII characters, not only spaces")
        try:
            n = await backend.push_events(who, sid, events, batch_id=key)
        except InputError as e:
            raise ApiError(422, str(e)) from None
        return {"accepted": n}

    @app.get("/streams/{sid}/moments", tags=["moments and clips"])
    async def moments(sid: str, who: Tenant, min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
                      start: Annotated[float | None, Query(ge=0)] = None, end: Annotated[float | None, Query(ge=0)] = None,
                      min_confidence: Annotated[float | None, Query(ge=0, le=100, description="0-100, calibrated")] = None,
                      order: Annotated[Literal["time", "rank"], Query(description="time, or rank: the best first")] = "time",
                      ) -> list[dict]:
        """The stream's moments, each with its ``rank`` (1 = the best, 0 = not ranked), ``confidence``
        (0-100: how often a moment this strong was right on labelled shows), ``strong`` (at or above
        the threshold on its own; weak ones are only the show's best few) and raw ``score`` (0-1)."""
        return await backend.moments(who, _sid(sid), min_score, start, end, min_confidence, order)

    @app.get("/streams/{sid}/clips", tags=["moments and clips"])
    async def clips(sid: str, who: Tenant, min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
                    min_confidence: Annotated[float | None, Query(ge=0, le=100, description="0-100, calibrated")] = None,
                    ) -> list[dict]:
        return [m["clip"] | {k: m[k] for k in ("score", "rank", "confidence", "strong", "review")}
                for m in await backend.moments(who, _sid(sid), min_score, min_confidence=min_confidence) if m["clip"]]

    @app.get("/streams/{sid}/ramp", tags=["ramp"])
    async def ramp(sid: str, who: Tenant, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
        return await backend.ramp(who, _sid(sid), limit)

    @app.get("/clips/{mid}", tags=["moments and clips"])
    async def clip(mid: str, who: Tenant) -> dict:
        row = await backend.clip(who, _mid(mid))
        keep = ("moment_id", "show_id", "start", "end", "mode", "seconds", "score", "rank", "confidence", "strong", "transcript",
                "reasons", "created_at")
        return {k: row.get(k) for k in keep} | {"video": f"/clips/{mid}/video", "captions": f"/clips/{mid}/captions",
                                                 "thumbnail": f"/clips/{mid}/thumbnail"}

    @app.get("/clips/{mid}/video", tags=["moments and clips"])
    async def clip_video(mid: str, who: Tenant, request: Request):
        """The clip's MP4, from wherever it is stored; HTTP Range requests are answered (206) so a
        browser can seek."""
        return await _stored_file(backend, backend.clip_file(await backend.clip(who, _mid(mid)), "video"), "video/mp4",
                                  request.headers.get("range"))

    @app.get("/clips/{mid}/captions", tags=["moments and clips"])
    async def clip_captions(mid: str, who: Tenant, format: Annotated[Literal["vtt", "srt"], Query()] = "vtt"):
        where = backend.clip_file(await backend.clip(who, _mid(mid)), "captions")
        text = (where.read_bytes() if isinstance(where, Path) else await asyncio.to_thread(_read_all, backend, where)
                ).decode("utf-8", errors="replace")
        if format == "srt":
            return Response(text, media_type="application/x-subrip")
        return Response(srt_to_vtt(text), media_type="text/vtt")

    @app.get("/clips/{mid}/thumbnail", tags=["moments and clips"])
    async def clip_thumbnail(mid: str, who: Tenant, request: Request):
        return await _stored_file(backend, backend.clip_file(await backend.clip(who, _mid(mid)), "thumbnail"), "image/jpeg",
                                  request.headers.get("range"))

    @app.post("/clips/{mid}/review", tags=["moments and clips"])
    async def review(mid: str, body: ReviewIn, who: Tenant) -> dict:
        return await backend.review(who, _mid(mid), body.verdict, body.note)

    # -- batch jobs --------------------------------------------------------------------------

    @app.post("/jobs", status_code=201, tags=["batch jobs"])
    async def submit_job(body: JobIn, who: Tenant) -> dict:
        items = []
        for i, it in enumerate(body.items):
            if bool(it.path) == bool(it.url):
                raise ApiError(422, f"items.{i}: give exactly one of 'path' or 'url'")
            items.append(it.model_dump(exclude_none=True))
        return await backend.submit_job(who, items, body.name)

    @app.get("/jobs", tags=["batch jobs"])
    async def jobs(who: Tenant) -> list[dict]:
        return await backend.jobs(who)

    @app.get("/jobs/{jid}", tags=["batch jobs"])
    async def job(jid: str, who: Tenant) -> dict:
        return await backend.job(who, _sid(jid))

    return app


_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_CHUNK = 256 << 10


def _read_all(backend: Backend, location: str) -> bytes:
    _size, fh = backend.open_stored(location)
    with fh:
        return fh.read()


async def _stored_file(backend: Backend, where: Path | str, media_type: str, range_header: str | None) -> Response:
    """A clip's file: a local one as it is (Starlette answers ranges), one in object storage streamed
    a chunk at a time, with a single ``Range`` answered (206; 416 when it lies outside the file)."""
    if isinstance(where, Path):
        return FileResponse(where, media_type=media_type)
    size, fh = await asyncio.to_thread(backend.open_stored, where)
    start, end, status = 0, size - 1, 200
    m = _RANGE.match((range_header or "").strip())
    if m and (m.group(1) or m.group(2)):
        if m.group(1):
            start, end = int(m.group(1)), min(size - 1, int(m.group(2)) if m.group(2) else size - 1)
        else:  # the last N bytes
            start, end = max(0, size - int(m.group(2))), size - 1
        if start > end or start >= size:
            fh.close()
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206

    async def body():
        try:
            await asyncio.to_thread(fh.seek, start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(fh.read, min(_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            fh.close()

    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1)}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(body(), status_code=status, media_type=media_type, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_events(body: bytes, content_type: str, limit: int) -> list:
    """A JSON array or NDJSON of event objects, checked and returned as :class:`~ace.types.Event`."""
    from ace.events import _event_from_obj

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text") from None
    stripped = text.lstrip()
    items: list[Any]
    if "ndjson" in content_type or "jsonl" in content_type or (stripped and not stripped.startswith("[")):
        items = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            if len(items) >= limit:
                raise ApiError(413, f"more than {limit} events in one request")
            try:
                items.append(json.loads(line))
            except (ValueError, RecursionError) as e:
                raise ApiError(400, f"line {n}: not valid JSON ({_json_problem(e)})") from None
    else:
        try:
            items = json.loads(text) if stripped else []
        except (ValueError, RecursionError) as e:
            raise ApiError(400, f"not valid JSON ({_json_problem(e)})") from None
        if not isinstance(items, list):
            raise ApiError(422, "expected a JSON array of events (or NDJSON)")
        if len(items) > limit:
            raise ApiError(413, f"{len(items)} events in one request; the limit is {limit}")
    bad, events = [], []
    for i, obj in enumerate(items):
        ev, problem = _event_from_obj(obj)
        if ev is None:
            bad.append(f"event {i}: {problem}")
        elif len(ev.user) > 200 or len(ev.text) > 2000:
            bad.append(f"event {i}: 'user' is limited to 200 characters and 'text' to 2000")
        else:
            events.append(ev)
    if bad:
        raise ApiError(422, f"{len(bad)} bad event(s), none accepted: " + "; ".join(bad[:5]), problems=bad[:100])
    return events


def _json_problem(e: Exception) -> str:
    """What is wrong with a JSON text, in a few words (nesting too deep for the parser, a number
    with too many digits, or the decoder's message)."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e)[:200]


def srt_to_vtt(srt: str) -> str:
    """SubRip captions as WebVTT (what a browser's <track> reads)."""
    body = re.sub(r"(\d\d:\d\d:\d\d),(\d\d\d)", r"\1.\2", srt.replace("\r\n", "\n"))
    return "WEBVTT\n\n" + body.lstrip("\ufeff")
