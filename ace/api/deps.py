"""What the back office's routes share: the backend, the caller's tenant (API token or the web
page's session cookie), rate limiting per token, id checks and :class:`ApiError`."""

from __future__ import annotations

import math
import re
import time
from typing import Annotated, Any

from fastapi import Depends, Request

from ace.api.backend import Backend
from ace.errors import NotFound
from ace.schema import TOKEN_PREFIX

#: the web page's session cookie: a session secret (see ``Store.create_session``), never an API token
COOKIE = "ace_session"
#: the cookie older versions set to the API token itself: cleared at sign-in and sign-out, never read
OLD_COOKIE = "ace_token"
#: how long a web page session lives (the cookie's max-age too)
SESSION_TTL_S = 12 * 3600
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MOMENT_ID = re.compile(r"[A-Za-z0-9_:.-]{1,128}")


class ApiError(Exception):
    """An error answer: ``{"error": message, **extra}`` with ``status`` and ``headers``."""

    def __init__(self, status: int, message: str, headers: dict | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers or {}, extra


# ----------------------------------------------------------------------------------- backend


def _backend(request: Request) -> Backend:
    return request.app.state.backend


#: the app's :class:`~ace.api.backend.Backend` (``build_app``'s argument)
BackendDep = Annotated[Backend, Depends(_backend)]


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


def _take(request: Request, key: str) -> None:
    """Count a request against ``key``'s rate (the app's :class:`RateLimiter`); 429 with Retry-After over it."""
    wait = request.app.state.limiter.take(key)
    if wait > 0:
        raise ApiError(429, "too many requests for this token", {"Retry-After": str(max(1, math.ceil(wait)))})


def _token_id(token: str) -> str:
    """An API token's id (``ace_<id>_<secret>``): the rate limit's key, shared with its sessions."""
    return token[len(TOKEN_PREFIX):].split("_", 1)[0] if token.startswith(TOKEN_PREFIX) else token


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


#: the caller's tenant (authenticated and counted against its token's rate)
Tenant = Annotated[str, Depends(_tenant)]


# ----------------------------------------------------------------------------------- ids


def _sid(sid: str) -> str:
    """A stream's (or job's) id as given in a path; an id of another shape is no stream (404)."""
    if not _ID.fullmatch(sid):
        raise NotFound(f"no stream {sid[:80]!r}")
    return sid


def _mid(mid: str) -> str:
    """A moment's (clip's) id as given in a path; an id of another shape is no clip (404)."""
    if not _MOMENT_ID.fullmatch(mid):
        raise NotFound(f"no clip {mid[:80]!r}")
    return mid


def _segid(seg: str) -> str:
    """A product segment's id as given in a path; an id of another shape is no product clip (404)."""
    if not _MOMENT_ID.fullmatch(seg):
        raise NotFound(f"no product clip {seg[:80]!r}")
    return seg


# ----------------------------------------------------------------------------------- OpenAPI


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of the error answers ``codes`` (each an :class:`~ace.api.models.ErrorOut`)."""
    from ace.api.models import ErrorOut

    what = {400: "malformed request", 401: "no valid API token or session", 404: "no such thing for this tenant",
            409: "the stream has finished", 413: "request too large", 422: "invalid request",
            429: "too many requests (Retry-After)", 503: "busy; try again (Retry-After)"}
    return {c: {"model": ErrorOut, "description": what.get(c, "error")} for c in codes}
