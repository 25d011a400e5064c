"""A stream's products: its product list, the product segments (看点: where the host explains each
product) with their clips' files (video with HTTP Range, captions, thumbnail), and the ad-wording
phrases heard (tag ``products``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ace.api.deps import BackendDep, Tenant, _segid, _sid, errors
from ace.api.models import ProductsOut
from ace.api.routes.clips import _media, _stored_file, captions_response

TAG = "products"

router = APIRouter(tags=[TAG], responses=errors(401, 404, 422, 429))


@router.get("/streams/{sid}/products", response_model=ProductsOut, response_model_exclude_unset=True)
async def products(sid: str, who: Tenant, backend: BackendDep) -> dict:
    """The stream's (or recorded show's) product list, its product segments in time order, each
    with its ``confidence`` (0-100), what was ``heard``, its clip's links once cut and the
    ad-wording phrases heard inside it, and every ad-wording phrase heard in the stream."""
    return await backend.products(who, _sid(sid))


@router.get("/products/{seg}/video", response_class=Response, responses=_media("video/mp4", ranges=True))
async def product_video(seg: str, who: Tenant, request: Request, backend: BackendDep):
    """The product segment's MP4, from wherever it is stored; HTTP Range requests are answered (206)."""
    return await _stored_file(backend, backend.clip_file(await backend.product_clip(who, _segid(seg)), "video"),
                              "video/mp4", request.headers.get("range"))


@router.get("/products/{seg}/captions", response_class=Response,
            responses=_media("text/vtt", also=("application/x-subrip",)))
async def product_captions(seg: str, who: Tenant, backend: BackendDep,
                           format: Annotated[Literal["vtt", "srt"], Query()] = "vtt"):
    return await captions_response(backend, backend.clip_file(await backend.product_clip(who, _segid(seg)), "captions"), format)


@router.get("/products/{seg}/thumbnail", response_class=Response, responses=_media("image/jpeg", ranges=True))
async def product_thumbnail(seg: str, who: Tenant, request: Request, backend: BackendDep):
    return await _stored_file(backend, backend.clip_file(await backend.product_clip(who, _segid(seg)), "thumbnail"),
                              "image/jpeg", request.headers.get("range"))
