"""Batch jobs: reprocess recorded shows (files inside the media folder, or http(s) URLs) and
follow their progress (tag ``batch jobs``)."""

from __future__ import annotations

from fastapi import APIRouter

from ace.api.deps import ApiError, BackendDep, Tenant, _sid, errors
from ace.api.models import JobAccepted, JobIn, JobOut

TAG = "batch jobs"

router = APIRouter(tags=[TAG], responses=errors(401, 429, 503))


@router.post("/jobs", status_code=201, response_model=JobAccepted, response_model_exclude_unset=True,
             responses=errors(422))
async def submit_job(body: JobIn, who: Tenant, backend: BackendDep) -> dict:
    items = []
    for i, it in enumerate(body.items):
        if bool(it.path) == bool(it.url):
            raise ApiError(422, f"items.{i}: give exactly one of 'path' or 'url'")
        items.append(it.model_dump(exclude_none=True))
    return await backend.submit_job(who, items, body.name, clip_format=body.format, burn_captions=body.burn_captions)


@router.get("/jobs", response_model=list[JobOut], response_model_exclude_unset=True)
async def jobs(who: Tenant, backend: BackendDep) -> list[dict]:
    return await backend.jobs(who)


@router.get("/jobs/{jid}", response_model=JobOut, response_model_exclude_unset=True, responses=errors(404, 422))
async def job(jid: str, who: Tenant, backend: BackendDep) -> dict:
    return await backend.job(who, _sid(jid))
