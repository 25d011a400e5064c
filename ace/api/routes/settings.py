"""A tenant's own settings: its ad-wording list (tag ``settings``)."""

from __future__ import annotations

from fastapi import APIRouter

from ace.api.deps import BackendDep, Tenant, errors
from ace.api.models import AdWordsIn, AdWordsOut

TAG = "settings"

router = APIRouter(tags=[TAG], responses=errors(401, 429))


@router.get("/settings/ad-words", response_model=AdWordsOut, response_model_exclude_unset=True)
async def get_ad_words(who: Tenant, backend: BackendDep) -> dict:
    """The ad-wording phrases the tenant's streams and shows are checked with: its own list
    (``source: "tenant"``), or the server's (``"default"``)."""
    return await backend.ad_words(who)


@router.put("/settings/ad-words", response_model=AdWordsOut, response_model_exclude_unset=True, responses=errors(422))
async def put_ad_words(body: AdWordsIn, who: Tenant, backend: BackendDep) -> dict:
    """Keep the tenant's own list (at most 500 phrases of 1-100 characters; ``"phrase!exception"``
    spares a longer word, e.g. ``"第一!第一次"``; an empty list turns the check off). Streams started
    and shows processed from now on use it."""
    return await backend.set_ad_words(who, body.ad_words)


@router.delete("/settings/ad-words", response_model=AdWordsOut, response_model_exclude_unset=True)
async def delete_ad_words(who: Tenant, backend: BackendDep) -> dict:
    """Forget the tenant's own list: back to the server's."""
    return await backend.set_ad_words(who, None)
