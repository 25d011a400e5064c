"""Core value types shared by every part of ACE.

All times are float seconds on the show's (or stream's) media clock. Wall-clock time appears
only at the edges (the store's ``created_at`` columns, the CLI's progress). Every type here is a
frozen dataclass with slots: cheap to create, safe to pass between threads and Ray workers, and
convertible to plain JSON with :func:`to_dict`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

#: A clip's states: published before its moment was final (``provisional``), or final.
CLIP_STATES: tuple[str, ...] = ("provisional", "final")

#: Interaction kinds ACE understands. ``viewers`` carries the concurrent viewer count in ``value``.
EVENT_KINDS: tuple[str, ...] = (
    "chat",
    "like",
    "gift",
    "follow",
    "share",
    "cart",
    "order",
    "viewers",
    # traffic and conversion reported by the platform (the ramp policy's inputs)
    "impression",
    "entry",
    "watch",
    "cancel",
    # a published clip's audience, reported by the platform (the clip's id in ``text``)
    "clip_view",
    "clip_click",
)


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ``ffprobe`` says about a media file or stream."""

    path: str
    duration: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0
    video_codec: str = ""
    audio_codec: str = ""
    #: seconds of the first video frame on the media clock (usually 0 for files)
    start_time: float = 0.0


@dataclass(frozen=True, slots=True)
class Segment:
    """A few seconds of a stream on local disk (the live rolling buffer)."""

    stream_id: str
    seq: int
    start: float
    end: float
    path: str


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word, in show time."""

    start: float
    end: float
    text: str
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class Sentence:
    """A transcript segment as faster-whisper returns it (roughly one sentence), in show time."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    """One audience interaction. ``value`` is 1 for countable kinds, the gift's worth for gifts, the
    viewer count for ``viewers``, the number of impressions for ``impression`` and the seconds
    watched for ``watch`` (sent when a viewer leaves). ``promoted`` marks the platform's
    attribution of the user (or impressions) to promoted traffic; ``trusted`` marks a user the
    platform trusts (history, verified, not flagged). Both only matter to the ramp policy.
    ``clip_view`` and ``clip_click`` report a user watching a published clip of the room and
    clicking through from it to the room; ``text`` carries the clip's id."""

    t: float
    kind: str
    user: str = ""
    value: float = 1.0
    text: str = ""
    promoted: bool = False
    trusted: bool = False
    #: the product a cart or order is for (an id of the stream's product list; "" when untagged)
    product: str = ""


@dataclass(frozen=True, slots=True)
class Product:
    """One item a show sells (see :mod:`ace.products.catalog`). ``id`` is the seller's own id."""

    id: str
    name: str
    aliases: tuple[str, ...] = ()
    price: float | None = None
    sku: str = ""
    image: str = ""


@dataclass(frozen=True, slots=True)
class ProductSegment:
    """The stretch of a show where the host explains one product (a 看点): ``n`` counts the
    product's segments from 1; ``heard`` lists what was recognised as evidence (the product's
    name, the price said aloud, a link call), ``evidence`` what kinds backed it."""

    show_id: str
    product: str  #: the product's id
    name: str  #: the product's name
    n: int
    start: float
    end: float
    confidence: float  #: 0-100
    heard: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()  #: "name", "price", "link", "visual", "cart", "order"

    @property
    def id(self) -> str:
        return moment_id(f"{self.show_id}:product:{self.product}", self.start, self.end)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class AdWordHit:
    """A phrase that advertising rules forbid or platforms flag, heard at ``start``-``end``."""

    phrase: str  #: the listed phrase that matched
    start: float
    end: float
    text: str  #: the sentence it was heard in


@dataclass(frozen=True, slots=True)
class Signal:
    """One detector's evidence at one instant: ``score`` in [0, 1], ``reason`` for humans."""

    source: str
    t: float
    score: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a moment was chosen: one source's peak contribution inside the moment."""

    source: str
    score: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Moment:
    """A highlight: an interval of the show worth re-watching."""

    show_id: str
    start: float
    end: float
    score: float
    peak: float
    reasons: tuple[Reason, ...] = ()
    transcript: str = ""
    #: 1 for the show's best moment, 2 for the next, ... (0: not ranked)
    rank: int = 0
    #: 0-100: how often a moment this strong was right on labelled shows (see models/scorer.py)
    confidence: float = 0.0
    #: at or above the confidence a moment needs on its own; weaker ones are the show's best few
    strong: bool = True
    #: the id a live moment keeps when its edges moved after it was first published (a provisional
    #: clip replaced in place, see :mod:`ace.live.analyzer`); "" derives it from show and interval
    fixed_id: str = ""

    @property
    def id(self) -> str:
        """Stable id: the same show, interval and settings give the same id on every run (a live
        moment whose edges moved once it was published keeps its first id, ``fixed_id``)."""
        return self.fixed_id or moment_id(self.show_id, self.start, self.end)

    @property
    def duration(self) -> float:
        return self.end - self.start


def moment_id(show_id: str, start: float, end: float) -> str:
    key = f"{show_id}:{start:.2f}:{end:.2f}".encode()
    return hashlib.sha1(key).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class ClipPlan:
    """Where to cut: the moment's interval after snapping, and how."""

    moment_id: str
    start: float
    end: float
    mode: str = "exact"  # "fast" (stream copy, keyframe-aligned) or "exact" (frame-accurate)


@dataclass(frozen=True, slots=True)
class Clip:
    """A rendered clip: the actual interval in the source and the files written."""

    moment_id: str
    path: str
    start: float
    end: float
    mode: str
    srt_path: str = ""
    thumb_path: str = ""
    seconds: float = 0.0  # wall time spent cutting
    #: the clip's shape (``source``, ``vertical`` or ``square``) and whether captions are burned in
    format: str = "source"
    burned: bool = False
    #: ``final``, or ``provisional``: a live clip cut before its moment was final with respect to the
    #: audience (it is confirmed or replaced in place, under the same names, once it is)
    state: str = "final"
    #: how often the clip was cut again in place (0: as first cut)
    revision: int = 0


@dataclass(frozen=True, slots=True)
class RampDecision:
    """The promoted-traffic share a room gets next tick, and why."""

    stream_id: str
    t: float
    level: str
    share: float
    reason: str = ""


@dataclass(slots=True)
class ShowResult:
    """What processing one show produced (or why it failed)."""

    show_id: str
    path: str
    ok: bool
    duration: float = 0.0
    seconds: float = 0.0
    moments: list[Moment] = field(default_factory=list)
    clips: list[Clip] = field(default_factory=list)
    error: str = ""
    out_dir: str = ""
    warnings: list[str] = field(default_factory=list)
    #: wall seconds per stage (probe, decode, transcribe, fuse, clip, ...)
    timings: dict[str, float] = field(default_factory=dict)
    #: each product's pitch (when the show was given a product list) and the ad-wording phrases heard
    segments: list[ProductSegment] = field(default_factory=list)
    ad_words: list[AdWordHit] = field(default_factory=list)

    @property
    def realtime(self) -> float:
        return self.duration / self.seconds if self.seconds > 0 else 0.0


def to_dict(obj: Any) -> Any:
    """Plain-JSON view of any ACE dataclass (recursively), with derived ids included."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, (Moment, ProductSegment)):
            out["id"] = obj.id
        if isinstance(obj, Moment):
            del out["fixed_id"]  # the id says it
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
