"""A tenant's own settings: its ad-wording list and its publish webhook (tag ``settings``)."""

from __future__ import annotations

from fastapi import APIRouter

from ace.api.deps import BackendDep, Tenant, errors
from ace.api.models import AdWordsIn, AdWordsOut, PublishSettingsIn, PublishSettingsOut

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


@router.get("/settings/publish", response_model=PublishSettingsOut, response_model_exclude_unset=True)
async def get_publish(who: Tenant, backend: BackendDep) -> dict:
    """The tenant's publish webhook (``url`` null when none is set) and whether a secret is kept;
    the secret itself is never shown."""
    return await backend.publish_settings(who)


@router.put("/settings/publish", response_model=PublishSettingsOut, response_model_exclude_unset=True, responses=errors(422))
async def put_publish(body: PublishSettingsIn, who: Tenant, backend: BackendDep) -> dict:
    """Keep the webhook that ``POST /clips/{id}/publish`` sends clips to: an http(s) URL whose host
    resolves to public addresses only (or ones ``ACE_URL_ALLOWLIST`` lists), checked again at every
    delivery. Each request is signed with the secret (``X-ACE-Signature``); give one, or one is made
    and answered once as ``secret`` (also with ``rotate_secret``). Without a ``secret`` the one kept
    before stays."""
    return await backend.set_publish_settings(who, body.url, body.secret, body.rotate_secret)


@router.delete("/settings/publish", response_model=PublishSettingsOut, response_model_exclude_unset=True)
async def delete_publish(who: Tenant, backend: BackendDep) -> dict:
    """Forget the webhook and its secret: clips are no longer published."""
    return await backend.set_publish_settings(who, None)
