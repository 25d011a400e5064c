"""The back office's request bodies and answers (pydantic models; the OpenAPI schemas at ``/openapi.json``).

Request models refuse unknown fields. Answer models declare the documented core fields and allow
the rest (``extra="allow"``): a stream's status, for one, carries more keys while it is live than
once it has finished, and every key the backend gives reaches the client as it is. The routes
answer with ``response_model_exclude_unset``, so a field the backend left out stays out (it is
not added as ``null``).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from ace.policy.state import CATEGORIES

# ----------------------------------------------------------------------------------- requests


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


# ----------------------------------------------------------------------------------- answers

#: a JSON number as the backend gives it: an integer stays an integer (``12``, not ``12.0``)
Number = Annotated[float | int, WithJsonSchema({"type": "number"})]


class _Out(BaseModel):
    """An answer: the declared fields, and any other key the backend gives, as it is."""

    model_config = ConfigDict(extra="allow")


class ErrorOut(_Out):
    """Every error's body."""

    error: str = Field(description="what is wrong, in words")
    problems: list[str] | None = Field(None, description="each problem found (invalid requests, bad events)")


class OkOut(_Out):
    ok: bool


class TenantOut(_Out):
    """Who the caller is (``GET /me``), or whom a sign-in opened a session for (``POST /session``)."""

    tenant: str


# -- streams ------------------------------------------------------------------------------------


class StreamAccepted(_Out):
    """A submitted stream: its id, and ``starting``."""

    id: str
    status: str


class StreamStatus(_Out):
    """A stream's status: the fields below, and more by kind. A live stream's (and a finished one's,
    as it was when it ended) also has ``lag_s`` (analysis lag), ``level`` (degrade level),
    ``seconds_behind_live``, ``reconnects``, ``gaps``, ``segments``, ``moments`` and ``clips``
    (counts so far), clip latencies, ``restarts``, ``outages``, ``node``, ``epoch``,
    ``events_received`` and the analyser's timings; a stream run by another controller has
    ``restarts``, ``outages`` and ``node``; a recorded show (a batch job's item) has
    ``kind: "recorded"`` and ``duration``. Every key is kept, in the order the backend gives it."""

    id: str
    name: str | None = None
    tenant: str | None = None
    kind: str | None = Field(None, description="'recorded' for a batch job's show; absent for a live stream")
    url: str | None = Field(None, description="the stream's URL, credentials redacted")
    status: str = Field(description="starting, live, stopping, resuming, unavailable, or how it ended (ended, stopped, "
                                    "failed, ...); a recorded show's processing status")
    error: str | None = None
    analysed_until: Number | None = Field(None, description="seconds of the stream analysed")
    duration: Number | None = Field(None, description="a recorded show's length in seconds")


class EventsAccepted(_Out):
    """How many events the request added (a retried batch with the same Idempotency-Key: as many
    as the first time, counted once)."""

    accepted: int


class RampDecision(_Out):
    stream_id: str
    t: Number = Field(description="when (wall clock, seconds)")
    level: str
    share: Number
    reason: str = ""


class RampOut(_Out):
    """The stream's current ramp level and its recent decisions, oldest first (level and share
    null and the history empty before the first decision)."""

    stream_id: str
    level: str | None = None
    share: Number | None = None
    history: list[RampDecision] = Field(default_factory=list)


# -- moments and clips --------------------------------------------------------------------------


class Reason(_Out):
    """Why a moment was chosen: one source's peak contribution inside it."""

    source: str | None = None
    score: Number | None = None
    detail: str | None = None


class ClipView(_Out):
    """A clip as a moment shows it: its interval, how it was cut, and links to its files."""

    moment_id: str
    start: Number
    end: Number
    mode: str | None = None
    seconds: Number | None = Field(None, description="how long cutting it took")
    video: str = Field(description="the MP4's path on this server")
    captions: str | None = Field(None, description="the captions' path (WebVTT; ?format=srt), null without captions")
    thumbnail: str | None = Field(None, description="the thumbnail's path, null without one")


class MomentOut(_Out):
    """A highlight moment, with its clip (null before it is cut) and its review (null before one)."""

    id: str
    stream_id: str
    start: Number
    end: Number
    score: Number = Field(description="raw score, 0-1")
    rank: int = Field(description="1 = the show's best, 0 = not ranked")
    confidence: Number = Field(description="0-100, calibrated: how often a moment this strong was right on labelled shows")
    strong: bool = Field(description="at or above the threshold on its own; weak ones are only the show's best few")
    peak: Number | None = None
    reasons: list[Reason] = Field(default_factory=list)
    transcript: str | None = None
    clip: ClipView | None = None
    review: str | None = Field(None, description="approve, reject, or null")


class StreamClip(ClipView):
    """A clip of the stream with its moment's score, rank, confidence, strength and review."""

    score: Number | None = None
    rank: int | None = None
    confidence: Number | None = None
    strong: bool | None = None
    review: str | None = None


class ClipOut(_Out):
    """One clip with its moment's details and links to its files."""

    moment_id: str | None = None
    show_id: str | None = None
    start: Number | None = None
    end: Number | None = None
    mode: str | None = None
    seconds: Number | None = None
    score: Number | None = None
    rank: int | None = None
    confidence: Number | None = None
    strong: bool | None = None
    transcript: str | None = None
    reasons: list[Reason] | None = None
    created_at: str | None = None
    video: str
    captions: str
    thumbnail: str


class ReviewOut(_Out):
    """The review kept for a clip (a later one replaces it)."""

    moment_id: str
    tenant: str | None = None
    verdict: str = Field(description="approve or reject")
    note: str = ""
    updated_at: str | None = None


# -- batch jobs ---------------------------------------------------------------------------------


class JobAccepted(_Out):
    """A submitted job: its id, ``running``, and how many items it has."""

    id: str
    status: str
    items: int


class JobItemOut(_Out):
    """One item of a job (a recorded show ``show_id``), with its result once finished."""

    show_id: str
    source: str | None = Field(None, description="the item's URL (redacted) or file name")
    progress: Number | None = Field(None, description="0-1")
    status: str = Field(description="running, done or failed")
    attempts: int | None = None
    ok: bool | None = None
    error: str | None = None
    moments: int | None = None
    clips: int | None = None
    duration: Number | None = None
    seconds: Number | None = None


class JobOut(_Out):
    """A batch job with its items and progress."""

    id: str
    name: str | None = None
    status: str = Field(description="running, or how it finished")
    progress: Number | None = Field(None, description="0-1, over its items")
    items: list[JobItemOut] = Field(default_factory=list)
    submitted_at: Number | None = Field(None, description="Unix time")
    finished_at: Number | None = Field(None, description="Unix time, null while running")
