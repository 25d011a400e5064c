"""Streams: submit, list, show, stop; the platform's events webhook; the ramp's decisions
(tags ``streams`` and ``ramp``)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from ace import jsontext
from ace.api.deps import ApiError, BackendDep, Tenant, _sid, errors
from ace.api.models import (
    EventsAccepted,
    RampOut,
    StreamAccepted,
    StreamIn,
    StreamStatus,
)
from ace.errors import InputError

#: an Idempotency-Key: visible ASCII, spaces inside allowed (a header's value has no edge spaces)
_IDEMPOTENCY_KEY = re.compile(r"[!-~](?:[ -~]{0,198}[!-~])?")

router = APIRouter(responses=errors(401, 429, 503))


@router.post("/streams", status_code=201, tags=["streams"], response_model=StreamAccepted,
             response_model_exclude_unset=True, responses=errors(422))
async def submit_stream(body: StreamIn, who: Tenant, backend: BackendDep) -> dict:
    """Start following a stream. ``products`` lists what it sells: product objects (``id``, ``name``,
    optional ``aliases``, ``price``, ``sku``, ``image``) or plain names; a bad one is refused (422)
    naming the item and the field."""
    return await backend.submit_stream(who, body.url, body.name, body.product_dicts(), body.events, body.category,
                                       body.budget, clip_format=body.format, burn_captions=body.burn_captions)


@router.get("/streams", tags=["streams"], response_model=list[StreamStatus], response_model_exclude_unset=True)
async def list_streams(who: Tenant, backend: BackendDep) -> list[dict]:
    return await backend.streams(who)


@router.get("/streams/{sid}", tags=["streams"], response_model=StreamStatus, response_model_exclude_unset=True,
            responses=errors(404, 422))
async def get_stream(sid: str, who: Tenant, backend: BackendDep) -> dict:
    return await backend.stream(who, _sid(sid))


@router.post("/streams/{sid}/stop", tags=["streams"], response_model=StreamStatus, response_model_exclude_unset=True,
             responses=errors(404, 422))
async def stop_stream(sid: str, who: Tenant, backend: BackendDep) -> dict:
    return await backend.stop_stream(who, _sid(sid))


@router.post("/streams/{sid}/events", tags=["streams"], response_model=EventsAccepted, response_model_exclude_unset=True,
             responses=errors(400, 404, 409, 413, 422))
async def push_events(sid: str, request: Request, who: Tenant, backend: BackendDep) -> dict:
    """A JSON array of events, or NDJSON (one event per line). All or nothing: one bad event
    refuses the request, naming it. An ``Idempotency-Key`` header makes a retried batch count once."""
    s = backend.settings
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


@router.get("/streams/{sid}/ramp", tags=["ramp"], response_model=RampOut, response_model_exclude_unset=True,
            responses=errors(404, 422))
async def ramp(sid: str, who: Tenant, backend: BackendDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    return await backend.ramp(who, _sid(sid), limit)


# ----------------------------------------------------------------------------------- events' body


async def _read_body(request: Request, limit: int) -> bytes:
    """The request's body, 413 once it is over ``limit`` bytes (a body without a Content-Length
    is capped while it is read)."""
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
                items.append(jsontext.loads(line))
            except (ValueError, RecursionError) as e:
                raise ApiError(400, f"line {n}: not valid JSON ({_json_problem(e)})") from None
    else:
        try:
            items = jsontext.loads(text) if stripped else []
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
