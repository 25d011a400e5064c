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

#: a JSON number as the backend gives it: an integer stays an integer (``12``, not ``12.0``)
Number = Annotated[float | int, WithJsonSchema({"type": "number"})]

# ----------------------------------------------------------------------------------- requests


class ProductIn(BaseModel):
    """One product the stream sells: ``id`` and ``name`` are required; ``aliases`` are other names
    the host may use; ``price`` is what the host will say aloud."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(max_length=64, description="the seller's own id: 1-64 letters, digits, '.', '-', '_' or ':'")
    name: str = Field(max_length=200)
    aliases: list[str] = Field(default_factory=list, max_length=20, description="other names the host may use")
    price: Number | None = Field(None, description="the price the host will say aloud")
    sku: str = Field("", max_length=200)
    image: str = Field("", max_length=2000, description="an http(s) URL of the product's picture")


class StreamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048, description="http(s) HLS / HTTP-FLV, rtmp(s) or rtsp(s) URL")
    name: str = Field("", max_length=100)
    products: list[str | ProductIn] = Field(default_factory=list, max_length=200,
                                            description="the products the stream sells: product objects, or names")
    events: str | None = Field(None, max_length=2048, description="an http(s) JSONL events source, optional")
    category: str = Field("other", description=f"one of {', '.join(CATEGORIES)}")
    budget: float | None = Field(None, ge=0, strict=True, description="promoted impressions the room may receive in total")
    format: Literal["source", "vertical", "square"] | None = Field(
        None, description="the clips' shape: source (the stream's frame), vertical (9:16) or square, following the "
                          "subject; unset: the server's ACE_CLIP_FORMAT")
    burn_captions: bool | None = Field(None, description="burn word-timed captions into the clips; unset: ACE_BURN_CAPTIONS")

    @field_validator("products", mode="before")
    @classmethod
    def _products(cls, v):
        """Checked as a product list is everywhere (``parse_products``): one message naming the item
        and the field (``products[2]: 'price' must be a number >= 0``), ids made unique."""
        from ace.errors import InputError
        from ace.products.catalog import parse_products, product_to_dict

        if v is None:
            return []
        try:
            return [product_to_dict(p) for p in parse_products(v, "products")]
        except InputError as e:
            raise ValueError(str(e)) from None

    def product_dicts(self) -> list[dict]:
        """The products as the cluster takes them (``product_to_dict``'s form)."""
        return [p if isinstance(p, str) else p.model_dump(exclude_defaults=True) for p in self.products]

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
    format: Literal["source", "vertical", "square"] | None = Field(
        None, description="the clips' shape for every item (see POST /streams); unset: ACE_CLIP_FORMAT")
    burn_captions: bool | None = Field(None, description="burn word-timed captions into the clips; unset: ACE_BURN_CAPTIONS")


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=200)


class AdWordsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ad_words: list = Field(max_length=500, description="the phrases to flag ('phrase!exception' spares a longer word); "
                                                      "an empty list turns the check off")


class PublishSettingsIn(BaseModel):
    """The tenant's publish webhook: where ``POST /clips/{id}/publish`` sends clips, and the secret
    that signs them."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048, description="an http(s) URL whose host is public (or allowlisted)")
    secret: str | None = Field(None, min_length=16, max_length=256,
                               description="the signing secret (16-256 printable ASCII characters); omitted: the one "
                                           "kept before, or a new one (answered once)")
    rotate_secret: bool = Field(False, description="make a new secret (answered once) even if one is kept")


# ----------------------------------------------------------------------------------- answers



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
    (counts so far), clip latencies (``clip_latency_p50_s`` / ``_p95_s`` to a moment's first clip,
    provisional or final; ``final_clip_latency_p50_s`` / ``_p95_s`` to its final clip),
    ``provisional_clips``, ``confirmed_clips`` and ``replaced_clips``, the finality horizon in effect
    (``horizon_s``, ``provisional_horizon_s``, ``audience``, ``event_delay_s``), ``restarts``,
    ``outages``, ``node``, ``epoch``, ``events_received`` and the analyser's timings; a stream run by another controller has
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


class AdWordHitOut(_Out):
    """An ad-wording phrase heard: the listed phrase, when (seconds of the stream) and the sentence."""

    phrase: str
    start: Number
    end: Number
    text: str = ""
    segment_id: str | None = Field(None, description="the product segment it was said in (the products answer only)")
    moment_id: str | None = Field(None, description="the moment whose clip it was said in (the products answer only)")


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
    format: str | None = Field(None, description="the clip's shape: source, vertical or square")
    burned: bool | None = Field(None, description="whether captions are burned into the picture")
    state: str | None = Field(None, description="final, or provisional: a live clip published before its moment was final "
                                                "with respect to the audience; it is confirmed or cut again in place (same "
                                                "id and files) seconds later, and cannot be published until it is final")
    revision: int | None = Field(None, description="how often the clip was cut again in place (0: as first cut)")
    video: str = Field(description="the MP4's path on this server")
    captions: str | None = Field(None, description="the captions' path (WebVTT; ?format=srt), null without captions")
    thumbnail: str | None = Field(None, description="the thumbnail's path, null without one")
    ad_words: list[AdWordHitOut] = Field(default_factory=list, description="ad-wording phrases heard inside the clip")


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
    ad_words: list[AdWordHitOut] = Field(default_factory=list,
                                         description="ad-wording phrases heard inside the clip (inside the moment before it is cut)")


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
    format: str | None = Field(None, description="the clip's shape: source, vertical or square")
    burned: bool | None = Field(None, description="whether captions are burned into the picture")
    state: str | None = Field(None, description="final, or provisional: a live clip published before its moment was final "
                                                "with respect to the audience; it is confirmed or cut again in place (same "
                                                "id and files) seconds later, and cannot be published until it is final")
    revision: int | None = Field(None, description="how often the clip was cut again in place (0: as first cut)")
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
    ad_words: list[AdWordHitOut] = Field(default_factory=list, description="ad-wording phrases heard inside the clip")


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


# -- products and ad-wording --------------------------------------------------------------------


class ProductOut(_Out):
    """One product of the stream's list, as it was given."""

    id: str
    name: str
    aliases: list[str] | None = None
    price: Number | None = None
    sku: str | None = None
    image: str | None = None


class ProductClipView(_Out):
    """A product segment's clip: its interval and links to its files."""

    segment_id: str
    start: Number
    end: Number
    mode: str | None = None
    video: str = Field(description="the MP4's path on this server")
    captions: str | None = Field(None, description="the captions' path (WebVTT; ?format=srt), null without captions")
    thumbnail: str | None = Field(None, description="the thumbnail's path, null without one")


class ProductSegmentOut(_Out):
    """Where the host explains one product (a 看点): its ``n``-th segment, how sure, what was heard."""

    id: str
    stream_id: str
    product: str = Field(description="the product's id")
    name: str
    n: int = Field(description="1 for the product's first segment, 2 for the next, ...")
    start: Number
    end: Number
    confidence: Number = Field(description="0-100")
    heard: list[str] = Field(default_factory=list, description="what was recognised: the name, the price said, a link call")
    evidence: list[str] = Field(default_factory=list, description="kinds of evidence: name, price, link, visual, cart, order")
    ad_words: list[AdWordHitOut] = Field(default_factory=list, description="ad-wording phrases heard inside the segment")
    clip: ProductClipView | None = None


class ProductsOut(_Out):
    """A stream's (or recorded show's) product list, product segments in time order and every
    ad-wording phrase heard."""

    stream_id: str
    products: list[ProductOut] = Field(default_factory=list)
    segments: list[ProductSegmentOut] = Field(default_factory=list)
    ad_words: list[AdWordHitOut] = Field(default_factory=list)


class AdWordsOut(_Out):
    """The tenant's ad-wording list: its own (``source: tenant``) or the server's default."""

    ad_words: list[str]
    source: Literal["tenant", "default"]


# -- publishing ---------------------------------------------------------------------------------


class PublishSettingsOut(_Out):
    """The tenant's publish webhook (``url`` null when none is set); ``secret_set`` says whether a
    secret is kept, never what it is. ``secret`` is there only in the answer to a ``PUT`` that made
    a new one: keep it, it is not shown again."""

    url: str | None = None
    secret_set: bool
    secret: str | None = Field(None, description="a secret just made (only in the answer to PUT)")


class PublicationOut(_Out):
    """A clip's publication to the tenant's webhook: ``pending`` while it is delivered (with
    retries), then ``sent`` or ``failed``; ``viewers`` and ``clickers`` count the distinct users the
    platform reported (``clip_view`` / ``clip_click`` events)."""

    clip_id: str
    stream_id: str
    status: Literal["pending", "sent", "failed"]
    attempts: int = Field(description="delivery attempts so far")
    last_error: str | None = Field(None, description="why the last attempt failed")
    response_status: int | None = Field(None, description="the webhook's last HTTP status")
    remote_id: str | None = Field(None, description="the receiver's id for the clip (its JSON answer's 'id')")
    target: str | None = Field(None, description="the webhook it went to (origin and path)")
    created_at: str | None = None
    updated_at: str | None = None
    sent_at: str | None = None
    viewers: int = 0
    clickers: int = 0
