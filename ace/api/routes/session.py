"""Health, the web page and its static files, sign-in / sign-out (a server-side session in a
cookie) and "who am I" (tag ``meta``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ace.api.deps import (
    COOKIE,
    OLD_COOKIE,
    SESSION_TTL_S,
    ApiError,
    BackendDep,
    Tenant,
    _take,
    _token_id,
    errors,
)
from ace.api.models import OkOut, SessionIn, TenantOut
from ace.errors import NotFound

#: the web page's files
STATIC = Path(__file__).parent.parent / "static"

router = APIRouter()


@router.get("/healthz", tags=["meta"], response_model=OkOut, response_model_exclude_unset=True)
async def healthz() -> dict:
    return {"ok": True}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page():
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str):
    allowed = {p.name: p for p in STATIC.iterdir() if p.is_file()}
    if name not in allowed:
        raise NotFound("no such file")
    return FileResponse(allowed[name])


@router.post("/session", tags=["meta"], response_model=TenantOut, response_model_exclude_unset=True,
             responses=errors(401, 422, 429))
async def sign_in(body: SessionIn, request: Request, backend: BackendDep) -> Response:
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


@router.delete("/session", tags=["meta"], response_model=OkOut, response_model_exclude_unset=True)
async def sign_out(request: Request, backend: BackendDep) -> Response:
    """Sign out: the session ends on the server (its cookie value is refused from now on, even
    replayed) and the cookie is deleted."""
    secret = request.cookies.get(COOKIE)
    if secret:
        await backend._db(backend.store.revoke_session, secret)
    resp = JSONResponse({"ok": True})
    for name in (COOKIE, OLD_COOKIE):
        resp.delete_cookie(name, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return resp


@router.get("/me", tags=["meta"], response_model=TenantOut, response_model_exclude_unset=True, responses=errors(401, 429))
async def me(who: Tenant) -> dict:
    return {"tenant": who}
