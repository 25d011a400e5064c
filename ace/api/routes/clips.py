"""A stream's moments and clips, one clip's details and files (video with HTTP Range, captions,
thumbnail), its review and its publication to the tenant's webhook (tag ``moments and clips``).
Each moment and clip carries ``ad_words``: the ad-wording phrases heard inside the clip."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from ace.api.backend import Backend, NotFinal, clip_state
from ace.api.backend import NoWebhook
from ace.api.deps import ApiError, BackendDep, Tenant, _mid, _sid, errors
from ace.api.models import ClipOut, MomentOut, PublicationOut, ReviewIn, ReviewOut, StreamClip

TAG = "moments and clips"

router = APIRouter(tags=[TAG], responses=errors(401, 404, 422, 429))


def _media(media_type: str, *, ranges: bool = False, also: tuple[str, ...] = ()) -> dict:
    """The OpenAPI ``responses`` of a route that answers a file of ``media_type`` (or ``also``)."""
    content = {t: {"schema": {"type": "string"} if t.startswith("text/") or t.endswith("subrip")
                   else {"type": "string", "format": "binary"}} for t in (media_type, *also)}
    out: dict = {200: {"content": content, "description": "the file"}}
    if ranges:
        out[206] = {"content": content, "description": "the part of the file a Range asked for"}
        out[416] = {"description": "the Range lies outside the file (Content-Range: bytes */SIZE)"}
    return out


@router.get("/streams/{sid}/moments", response_model=list[MomentOut], response_model_exclude_unset=True)
async def moments(sid: str, who: Tenant, backend: BackendDep, min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
                  start: Annotated[float | None, Query(ge=0)] = None, end: Annotated[float | None, Query(ge=0)] = None,
                  min_confidence: Annotated[float | None, Query(ge=0, le=100, description="0-100, calibrated")] = None,
                  order: Annotated[Literal["time", "rank"], Query(description="time, or rank: the best first")] = "time",
                  ) -> list[dict]:
    """The stream's moments, each with its ``rank`` (1 = the best, 0 = not ranked), ``confidence``
    (0-100: how often a moment this strong was right on labelled shows), ``strong`` (at or above
    the threshold on its own; weak ones are only the show's best few) and raw ``score`` (0-1)."""
    return await backend.moments(who, _sid(sid), min_score, start, end, min_confidence, order)


@router.get("/streams/{sid}/clips", response_model=list[StreamClip], response_model_exclude_unset=True)
async def clips(sid: str, who: Tenant, backend: BackendDep, min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
                min_confidence: Annotated[float | None, Query(ge=0, le=100, description="0-100, calibrated")] = None,
                ) -> list[dict]:
    return [m["clip"] | {k: m[k] for k in ("score", "rank", "confidence", "strong", "review")}
            for m in await backend.moments(who, _sid(sid), min_score, min_confidence=min_confidence) if m["clip"]]


@router.get("/clips/{mid}", response_model=ClipOut, response_model_exclude_unset=True)
async def clip(mid: str, who: Tenant, backend: BackendDep) -> dict:
    row = await backend.clip(who, _mid(mid))
    keep = ("moment_id", "show_id", "start", "end", "mode", "seconds", "score", "rank", "confidence", "strong", "transcript",
            "reasons", "created_at")
    return {k: row.get(k) for k in keep} | clip_state(row) | {
        "video": f"/clips/{mid}/video", "captions": f"/clips/{mid}/captions", "thumbnail": f"/clips/{mid}/thumbnail",
        "ad_words": row.get("ad_words") or []}


@router.get("/clips/{mid}/video", response_class=Response, responses=_media("video/mp4", ranges=True))
async def clip_video(mid: str, who: Tenant, request: Request, backend: BackendDep):
    """The clip's MP4, from wherever it is stored; HTTP Range requests are answered (206) so a
    browser can seek."""
    return await _stored_file(backend, backend.clip_file(await backend.clip(who, _mid(mid)), "video"), "video/mp4",
                              request.headers.get("range"))


@router.get("/clips/{mid}/captions", response_class=Response,
            responses=_media("text/vtt", also=("application/x-subrip",)))
async def clip_captions(mid: str, who: Tenant, backend: BackendDep,
                        format: Annotated[Literal["vtt", "srt"], Query()] = "vtt"):
    return await captions_response(backend, backend.clip_file(await backend.clip(who, _mid(mid)), "captions"), format)


@router.get("/clips/{mid}/thumbnail", response_class=Response, responses=_media("image/jpeg", ranges=True))
async def clip_thumbnail(mid: str, who: Tenant, request: Request, backend: BackendDep):
    return await _stored_file(backend, backend.clip_file(await backend.clip(who, _mid(mid)), "thumbnail"), "image/jpeg",
                              request.headers.get("range"))


@router.post("/clips/{mid}/review", response_model=ReviewOut, response_model_exclude_unset=True)
async def review(mid: str, body: ReviewIn, who: Tenant, backend: BackendDep) -> dict:
    return await backend.review(who, _mid(mid), body.verdict, body.note)


@router.post("/clips/{mid}/publish", status_code=202, response_model=PublicationOut, response_model_exclude_unset=True,
             responses=errors(409, 503))
async def publish(mid: str, who: Tenant, backend: BackendDep,
                  force: Annotated[bool, Query(description="send it again although it was published before")] = False,
                  ) -> dict:
    """Send the clip to the tenant's publish webhook (``PUT /settings/publish``): its metadata and
    a link back to the live room, signed (``X-ACE-Signature``), with ``Idempotency-Key: <clip id>``.
    Delivery goes on in the background with retries; the answer (202) is the publication record,
    ``pending`` until it is ``sent`` or ``failed`` (``GET /clips/{id}/publication``). A clip
    published before is not sent again: its record answers as it is, unless ``force=true`` (never
    while a delivery of it is under way). 409 when no webhook is set, and for a provisional clip
    (``state: provisional``: its moment is not final yet and the clip may still be cut again; it is
    final seconds later)."""
    try:
        return await backend.publish(who, _mid(mid), force)
    except (NoWebhook, NotFinal) as e:
        raise ApiError(409, str(e)) from None


@router.get("/clips/{mid}/publication", response_model=PublicationOut, response_model_exclude_unset=True)
async def publication(mid: str, who: Tenant, backend: BackendDep) -> dict:
    """The clip's publication: status, attempts, the webhook's last answer, the receiver's id, and
    the distinct viewers and clickers the platform reported. 404 when it was never published."""
    return await backend.publication(who, _mid(mid))


# ----------------------------------------------------------------------------------- files


async def captions_response(backend: Backend, where: Path | str, format: str) -> Response:
    """A clip's captions as WebVTT (for a browser's <track>) or as the SRT file itself."""
    text = (where.read_bytes() if isinstance(where, Path) else await asyncio.to_thread(_read_all, backend, where)
            ).decode("utf-8", errors="replace")
    if format == "srt":
        return Response(text, media_type="application/x-subrip")
    return Response(srt_to_vtt(text), media_type="text/vtt")

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


def srt_to_vtt(srt: str) -> str:
    """SubRip captions as WebVTT (what a browser's <track> reads)."""
    body = re.sub(r"(\d\d:\d\d:\d\d),(\d\d\d)", r"\1.\2", srt.replace("\r\n", "\n"))
    return "WEBVTT\n\n" + body.lstrip("\ufeff")
